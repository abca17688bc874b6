// The checkpoint manager (sgckpt/ckpt/manager.hpp): which files are written when, with which
// keys, "best" semantics, background saving, and restore. No neural network: states of random
// tensors, shaped like a small MLP with BatchNorm and an SGD optimizer, stand in for a model.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/core/identical.hpp"

using namespace sgckpt;
namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sgckpt_mgr_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Tensor random_tensor(std::mt19937& rng, Shape shape) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  std::normal_distribution<float> dist;
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

Tensor int64_scalar(std::int64_t v) {
  return Tensor::from_values<std::int64_t>(DType::Int64, {}, std::span<const std::int64_t>(&v, 1));
}

// model.state_dict() of Sequential(Linear(4, 8), BatchNorm1d(8), ReLU(), Linear(8, 3)).
Value make_net(std::mt19937& rng, std::int64_t batches) {
  Value net = Value::make_ordered_dict();
  net["0.weight"] = random_tensor(rng, {8, 4});
  net["0.bias"] = random_tensor(rng, {8});
  net["1.weight"] = random_tensor(rng, {8});
  net["1.bias"] = random_tensor(rng, {8});
  net["1.running_mean"] = random_tensor(rng, {8});
  net["1.running_var"] = random_tensor(rng, {8});
  net["1.num_batches_tracked"] = int64_scalar(batches);
  net["3.weight"] = random_tensor(rng, {3, 8});
  net["3.bias"] = random_tensor(rng, {3});
  return net;
}

// torch.optim.SGD(momentum=0.9).state_dict() after some steps.
Value make_sgd(std::mt19937& rng) {
  const std::vector<Shape> shapes = {{8, 4}, {8}, {8}, {8}, {3, 8}, {3}};
  Value state = Value::make_dict();
  Value params = Value::make_list();
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    Value s = Value::make_dict();
    s["momentum_buffer"] = random_tensor(rng, shapes[i]);
    state.dict().set(Key(static_cast<std::int64_t>(i)), s);
    params.items().push_back(Value(Int(static_cast<std::int64_t>(i))));
  }
  Value group = Value::make_dict();
  group["lr"] = 0.1;
  group["momentum"] = 0.9;
  group["dampening"] = 0;
  group["weight_decay"] = 0;
  group["nesterov"] = false;
  group["maximize"] = false;
  group["foreach"] = Value();
  group["differentiable"] = false;
  group["params"] = params;
  Value opt = Value::make_dict();
  opt["state"] = state;
  opt["param_groups"] = Value::make_list({group});
  return opt;
}

Value make_scheduler(std::int64_t epoch) {
  Value s = Value::make_dict();
  Value milestones = Value::make_dict(DictKind::Counter);
  milestones.dict().set(Key(std::int64_t{3}), Value(1));
  s["milestones"] = milestones;
  s["gamma"] = 0.1;
  s["base_lrs"] = Value::make_list({Value(0.1)});
  s["last_epoch"] = Value(Int(epoch));
  s["_step_count"] = Value(Int(epoch + 1));
  s["verbose"] = false;
  s["_get_lr_called_within_step"] = false;
  s["_last_lr"] = Value::make_list({Value(epoch >= 3 ? 0.01 : 0.1)});
  return s;
}

struct StateOptions {
  bool ema = false;
  bool scheduler = false;
  bool extra = false;
};

TrainingState make_state(unsigned seed, std::int64_t epoch, StateOptions o = {}) {
  std::mt19937 rng(seed);
  TrainingState s;
  s.net = make_net(rng, 10 * epoch);
  s.optimizer = make_sgd(rng);
  if (o.ema) s.ema = make_net(rng, 10 * epoch);
  if (o.scheduler) s.scheduler = make_scheduler(epoch);
  if (o.extra) {
    Tensor rng_state = Tensor::empty(DType::UInt8, {16});
    for (int i = 0; i < 16; ++i)
      rng_state.mutable_data<std::uint8_t>()[i] = static_cast<std::uint8_t>(seed + i);
    s.extra.emplace_back("rng_state", Value(rng_state));
    s.extra.emplace_back("data_order", Value::make_list({Value(3), Value(1), Value(2)}));
  }
  return s;
}

// Overwrites every tensor element of the tree in place, as a training step would.
void scribble(const Value& v, float value) {
  v.visit_tensors([&](const std::string&, const TensorValue<Tensor>& tv) {
    Tensor t = tv.tensor;  // shares the storage
    std::byte* p = t.mutable_raw_data();
    for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<std::byte>(static_cast<int>(value) + i);
  });
}

void scribble(const TrainingState& s) {
  scribble(s.net, 7);
  scribble(s.optimizer, 9);
  if (s.ema) scribble(*s.ema, 11);
  for (const auto& [k, v] : s.extra) scribble(v, 13);
}

// Exact equality of two trees (sgckpt::first_difference); the first difference is shown.
#define CHECK_DEEP_EQUAL(a, b)                                        \
  do {                                                                \
    const auto diff_ = sgckpt::first_difference(a, b);                \
    INFO((diff_ ? diff_->path + ": " + diff_->what : std::string())); \
    CHECK_FALSE(diff_);                                               \
  } while (0)

std::vector<std::string> keys_of(const Value& v) {
  std::vector<std::string> out;
  for (const auto& [k, e] : v.dict()) out.push_back(k.to_string());
  return out;
}

Metrics acc_metrics(double acc) {
  Metrics m;
  m.valid = {{"Accuracy", acc}, {"Top5", 0.99}};
  m.train = {{"Accuracy", 0.5}, {"Top5", 0.9}};
  return m;
}

CheckpointConfig base_config(const fs::path& root, const std::string& exp) {
  CheckpointConfig c;
  c.ckpt_root_dir = root;
  c.experiment_name = exp;
  c.durable = false;  // the tests do not survive power losses anyway; fsync only costs time
  c.architecture = "mlp_test";
  c.num_classes = 3;
  c.in_channels = 4;
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_SUITE("ckpt/manager") {
  TEST_CASE("files on the right epochs, with SG's keys, types and write order") {
    TempDir tmp;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.save_ckpt_epoch_list = {2, 4};
    cfg.async_save = false;
    CheckpointManager m(cfg);
    const fs::path run = m.start_run();
    CHECK(is_run_dir_name(run.filename().string()));
    CHECK(run.parent_path() == tmp.path / "exp");
    const double accs[] = {0.1, 0.3, 0.2, 0.4, 0.5};
    for (int epoch = 1; epoch <= 5; ++epoch) {
      const EpochResult r = m.on_epoch_end(epoch, acc_metrics(accs[epoch - 1]), make_state(epoch, epoch));
      std::vector<fs::path> expect = {run / "ckpt_latest.pth"};
      if (epoch == 2 || epoch == 4) expect.push_back(run / ("ckpt_epoch_" + std::to_string(epoch) + ".pth"));
      if (epoch != 3) expect.push_back(run / "ckpt_best.pth");
      expect.push_back(run / "average_model.pth");
      CHECK(r.files == expect);
      CHECK(r.best == (epoch != 3));
      for (int n = 1; n <= 5; ++n)
        CHECK(fs::exists(run / ("ckpt_epoch_" + std::to_string(n) + ".pth")) ==
              ((n == 2 && epoch >= 2) || (n == 4 && epoch >= 4)));
      CHECK(load(run / "ckpt_latest.pth").at("epoch").as_int() == epoch);
    }
    CHECK(load(run / "ckpt_epoch_2.pth").at("epoch").as_int() == 2);
    CHECK(load(run / "ckpt_epoch_4.pth").at("epoch").as_int() == 4);

    const Value latest = load(run / "ckpt_latest.pth");
    CHECK(keys_of(latest) == std::vector<std::string>{"net", "acc", "epoch", "metrics", "_best_ckpt_metrics",
                                                      "optimizer_state_dict", "scaler_state_dict",
                                                      "best_metric_name", "best_metric_value", "architecture",
                                                      "num_classes", "in_channels", "sgckpt_schema_version"});
    CHECK(latest.at("acc").is_float());
    CHECK(latest.at("acc").as_float() == 0.5);
    CHECK(latest.at("epoch").is_int());
    const Value& metrics = latest.at("metrics");
    CHECK(keys_of(metrics) == std::vector<std::string>{"tracked_metric_name", "valid", "train"});
    CHECK(metrics.at("tracked_metric_name").as_str() == "Accuracy");
    CHECK(keys_of(metrics.at("valid")) == std::vector<std::string>{"Accuracy", "Top5"});
    CHECK(metrics.at("valid").at("Accuracy").as_float() == 0.5);
    CHECK(metrics.at("train").at("Top5").as_float() == 0.9);
    CHECK(latest.at("scaler_state_dict").is_dict());
    CHECK(latest.at("scaler_state_dict").size() == 0);  // always present, {} when AMP is off
    CHECK(latest.at("best_metric_name").as_str() == "Accuracy");
    CHECK(latest.at("best_metric_value").as_float() == 0.5);
    CHECK(latest.at("architecture").as_str() == "mlp_test");
    CHECK(latest.at("num_classes").as_int() == 3);
    CHECK(latest.at("in_channels").as_int() == 4);
    CHECK(latest.at("sgckpt_schema_version").as_int() == 1);
    const TrainingState s5 = make_state(5, 5);
    CHECK_DEEP_EQUAL(latest.at("net"), s5.net);
    CHECK_DEEP_EQUAL(latest.at("optimizer_state_dict"), s5.optimizer);
    CHECK(latest.at("net").dict().kind() == DictKind::OrderedDict);

    // average_model.pth: SG's dict without the training state (PR #1718).
    const Value avg = load(run / "average_model.pth");
    CHECK(keys_of(avg) == std::vector<std::string>{"net", "acc", "epoch", "metrics", "_best_ckpt_metrics",
                                                   "best_metric_name", "best_metric_value", "architecture",
                                                   "num_classes", "in_channels", "sgckpt_schema_version"});
    CHECK(avg.at("epoch").as_int() == 5);
    CHECK(keys_of(avg.at("net")) == keys_of(s5.net));
  }

  TEST_CASE("best only on strict improvement: greater / lower is better, ties, NaN") {
    struct Case {
      bool greater;
      std::vector<double> values;
      std::vector<bool> best;
    };
    const Case cases[] = {
        {true, {0.5, 0.5, 0.7, kNaN, 0.6, 0.7, 0.8}, {true, false, true, false, false, false, true}},
        {false, {1.0, 1.0, 0.8, kNaN, 0.9, 0.8, 0.5}, {true, false, true, false, false, false, true}},
        {true, {kNaN, 0.3, 0.3, kNaN, 0.31}, {false, true, false, false, true}},
        {false, {kNaN, kNaN, 2.0, 2.0}, {false, false, true, false}},
    };
    for (const Case& c : cases) {
      CAPTURE(c.greater);
      TempDir tmp;
      CheckpointConfig cfg = base_config(tmp.path, "exp");
      cfg.metric_to_watch = c.greater ? "Accuracy" : "Loss";
      cfg.greater_metric_to_watch_is_better = c.greater;
      cfg.async_save = (c.values.size() % 2) == 1;  // both modes
      CheckpointManager m(cfg);
      const fs::path run = m.start_run();
      int last_best = 0;
      for (std::size_t i = 0; i < c.values.size(); ++i) {
        const int epoch = static_cast<int>(i) + 1;
        CAPTURE(epoch);
        Metrics metrics;
        metrics.valid = {{"Accuracy", c.values[i]}, {"Loss", c.values[i]}};
        const EpochResult r = m.on_epoch_end(epoch, metrics, make_state(epoch, epoch));
        CHECK(r.best == c.best[i]);
        if (r.best) last_best = epoch;
        m.flush();
        const Value latest = load(run / "ckpt_latest.pth");
        if (last_best == 0) {
          CHECK_FALSE(fs::exists(run / "ckpt_best.pth"));
          CHECK(latest.at("_best_ckpt_metrics").is_none());
          CHECK(std::isinf(latest.at("best_metric_value").as_float()));
          CHECK((latest.at("best_metric_value").as_float() < 0) == c.greater);
          CHECK_FALSE(fs::exists(run / "average_model.pth"));  // nothing averaged yet: not written
          continue;
        }
        const Value best = load(run / "ckpt_best.pth");
        CHECK(best.at("epoch").as_int() == last_best);
        CHECK(best.at("acc").as_float() == c.values[static_cast<std::size_t>(last_best - 1)]);
        // The best file holds itself as best (SG PR #2007), and so does every later latest.
        CHECK_DEEP_EQUAL(best.at("_best_ckpt_metrics"), best.at("metrics"));
        CHECK_DEEP_EQUAL(latest.at("_best_ckpt_metrics"), best.at("metrics"));
        CHECK(latest.at("best_metric_value").as_float() == best.at("acc").as_float());
        CHECK(m.best_metric_value() == best.at("acc").as_float());
        CHECK(fs::exists(run / "average_model.pth"));
      }
    }
  }

  TEST_CASE("EMA: ema_net is stored, and the averaging uses the EMA weights; scheduler and extras kept") {
    TempDir tmp;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.ema = true;
    CheckpointManager m(cfg);
    const fs::path run = m.start_run();
    const StateOptions all{true, true, true};
    m.on_epoch_end(1, acc_metrics(0.5), make_state(1, 1, all));
    m.flush();
    const TrainingState s = make_state(1, 1, all);
    const Value latest = load(run / "ckpt_latest.pth");
    CHECK(keys_of(latest) == std::vector<std::string>{"net", "acc", "epoch", "metrics", "_best_ckpt_metrics",
                                                      "optimizer_state_dict", "scaler_state_dict", "ema_net",
                                                      "torch_scheduler_state_dict", "best_metric_name",
                                                      "best_metric_value", "architecture", "num_classes",
                                                      "in_channels", "sgckpt_schema_version", "rng_state",
                                                      "data_order"});
    CHECK_DEEP_EQUAL(latest.at("net"), s.net);
    CHECK_DEEP_EQUAL(latest.at("ema_net"), *s.ema);
    CHECK_DEEP_EQUAL(latest.at("torch_scheduler_state_dict"), *s.scheduler);
    CHECK_DEEP_EQUAL(latest.at("rng_state"), s.extra[0].second);
    CHECK_DEEP_EQUAL(latest.at("data_order"), s.extra[1].second);
    // One snapshot: its average is the snapshot itself, i.e. the EMA weights, not the net.
    const Value avg = load(run / "average_model.pth");
    CHECK_DEEP_EQUAL(avg.at("net"), *s.ema);
    CHECK_FALSE(avg.contains("ema_net"));
    CHECK_FALSE(avg.contains("optimizer_state_dict"));
    CHECK_FALSE(avg.contains("scaler_state_dict"));
    CHECK(avg.contains("torch_scheduler_state_dict"));  // SG keeps it in average_model.pth
    CHECK(avg.contains("rng_state"));

    TrainingState bad = make_state(2, 2);
    bad.extra.emplace_back("net", Value(1));
    CHECK(error_of([&] { m.on_epoch_end(2, acc_metrics(0.6), bad); }).find("collides") != std::string::npos);
  }

  TEST_CASE("background save equals sync save, although the loop mutates its tensors right away") {
    TempDir tmp;
    CheckpointConfig sync_cfg = base_config(tmp.path, "sync");
    sync_cfg.async_save = false;
    sync_cfg.save_ckpt_epoch_list = {3};
    sync_cfg.ema = true;
    CheckpointConfig async_cfg = sync_cfg;
    async_cfg.experiment_name = "async";
    async_cfg.async_save = true;
    CheckpointManager ms(sync_cfg), ma(async_cfg);
    const fs::path rs = ms.start_run(), ra = ma.start_run();
    const double accs[] = {0.2, 0.4, 0.3, 0.6};
    for (int epoch = 1; epoch <= 4; ++epoch) {
      const StateOptions all{true, true, true};
      // One state object per manager, sharing nothing; each is scribbled over as soon as the
      // call returns, as the training loop's next step would.
      TrainingState a = make_state(100 + epoch, epoch, all), b = make_state(100 + epoch, epoch, all);
      // A view sharing a storage with another entry stays a view in both files.
      a.extra.emplace_back("view", Value(a.net.at("0.weight").tensor().reshape({32})));
      b.extra.emplace_back("view", Value(b.net.at("0.weight").tensor().reshape({32})));
      ms.on_epoch_end(epoch, acc_metrics(accs[epoch - 1]), a);
      ma.on_epoch_end(epoch, acc_metrics(accs[epoch - 1]), b);
      scribble(a);
      scribble(b);
    }
    ms.finish();
    ma.finish();
    for (const char* name : {"ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_3.pth", "average_model.pth",
                             "averaging_snapshots.pkl"}) {
      CAPTURE(name);
      REQUIRE(fs::exists(rs / name));
      REQUIRE(fs::exists(ra / name));
      CHECK_DEEP_EQUAL(load(rs / name), load(ra / name));
    }
    const Value latest = load(ra / "ckpt_latest.pth");
    CHECK_DEEP_EQUAL(latest.at("net"), make_state(104, 4, {true, true, true}).net);
    CHECK(latest.at("view").tensor().storage() == latest.at("net").at("0.weight").tensor().storage());
    CHECK(load(ra / "ckpt_best.pth").at("epoch").as_int() == 4);
  }

  TEST_CASE("a failing background save surfaces its error, and best is written again later") {
    TempDir tmp;
    std::vector<std::string> logs;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.average_best_models = false;
    cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
    {
      CheckpointManager m(cfg);
      const fs::path run = m.start_run();
      m.on_epoch_end(1, acc_metrics(0.5), make_state(1, 1));
      m.flush();
      fs::remove_all(run);                                    // every write of the next save fails
      m.on_epoch_end(2, acc_metrics(0.9), make_state(2, 2));  // returns: the write is in the background
      const std::string msg = error_of([&] { m.on_epoch_end(3, acc_metrics(0.8), make_state(3, 3)); });
      CHECK(msg.find("epoch 2") != std::string::npos);
      CHECK(msg.find("ckpt_latest.pth") != std::string::npos);
      CHECK(error_of([&] { m.flush(); }) == "(no error)");  // reported once, not lost, not repeated
      fs::create_directories(run);
      // Epoch 2's best was never written, so 0.8 beats the remembered best (0.5) again.
      const EpochResult r = m.on_epoch_end(3, acc_metrics(0.8), make_state(3, 3));
      CHECK(r.best);
      m.flush();
      CHECK(load(run / "ckpt_best.pth").at("epoch").as_int() == 3);

      // flush() rethrows too.
      fs::remove_all(run);
      m.on_epoch_end(4, acc_metrics(0.1), make_state(4, 4));
      CHECK(error_of([&] { m.flush(); }).find("epoch 4") != std::string::npos);
      fs::create_directories(run);

      // A failure still pending at destruction goes to the log hook.
      fs::remove_all(run);
      m.on_epoch_end(5, acc_metrics(0.1), make_state(5, 5));
    }
    bool reported = false;
    for (const auto& l : logs) reported |= l.find("epoch 5") != std::string::npos;
    CHECK(reported);

    // Without async_save the error comes straight from on_epoch_end.
    cfg.async_save = false;
    CheckpointManager m(cfg);
    const fs::path run = m.start_run();
    fs::remove_all(run);
    CHECK(error_of([&] { m.on_epoch_end(1, acc_metrics(0.5), make_state(1, 1)); }).find("epoch 1") !=
          std::string::npos);
  }

  TEST_CASE("restore returns every field; best and averaging continue across the resume") {
    TempDir tmp;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.ema = true;
    cfg.scheduler = true;
    const StateOptions all{true, true, true};
    fs::path run;
    {
      CheckpointManager m(cfg);
      run = m.start_run();
      m.on_epoch_end(1, acc_metrics(0.4), make_state(1, 1, all));
      m.on_epoch_end(2, acc_metrics(0.7), make_state(2, 2, all));
      TrainingState s3 = make_state(3, 3, all);
      s3.scaler = Value::make_dict();
      s3.scaler["scale"] = 65536.0;
      s3.scaler["_growth_tracker"] = 5;
      m.on_epoch_end(3, acc_metrics(0.6), s3);
      m.finish();
      CHECK(m.averaging()->size() == 3);
    }  // the process "dies" here

    ResumeRequest req;
    req.resume = true;
    const ResumePlan plan = resolve_resume(tmp.path, "exp", req);
    CHECK(plan.run_dir == run);
    std::vector<std::string> logs;
    cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
    CheckpointManager m(cfg);
    const ResumeState rs = m.restore(plan);
    CHECK(rs.resumed);
    CHECK(*rs.checkpoint == run / "ckpt_latest.pth");
    CHECK(rs.start_epoch == 3);
    REQUIRE(rs.best_metric);
    CHECK(*rs.best_metric == 0.7);  // the best, not the latest acc (0.6)
    CHECK(rs.best_metric_name == "Accuracy");
    CHECK(rs.best_metrics.at("valid").at("Accuracy").as_float() == 0.7);
    const TrainingState s3 = make_state(3, 3, all);
    CHECK_DEEP_EQUAL(rs.net, s3.net);
    // restore() maps the file: the weights are read-only views, copied once by the loop.
    rs.net.visit_tensors([](const std::string&, const auto& tv) { CHECK(tv.tensor.storage()->read_only()); });
    CHECK_DEEP_EQUAL(rs.optimizer, s3.optimizer);
    CHECK(rs.scaler.at("scale").as_float() == 65536.0);
    CHECK(rs.scaler.at("_growth_tracker").as_int() == 5);
    REQUIRE(rs.ema);
    CHECK_DEEP_EQUAL(*rs.ema, *s3.ema);
    REQUIRE(rs.scheduler);
    CHECK_DEEP_EQUAL(*rs.scheduler, *s3.scheduler);
    CHECK(rs.scheduler->at("milestones").dict().kind() == DictKind::Counter);
    CHECK_FALSE(rs.ema_missing);
    REQUIRE(rs.extra.size() == 2);
    CHECK(rs.extra[0].first == "rng_state");
    CHECK_DEEP_EQUAL(rs.extra[0].second, s3.extra[0].second);
    CHECK(rs.extra[1].first == "data_order");
    CHECK_DEEP_EQUAL(rs.extra[1].second, s3.extra[1].second);
    CHECK(rs.warnings.empty());
    CHECK(m.best_metric_value() == 0.7);

    m.start_run(plan);
    CHECK(m.run_dir() == run);
    REQUIRE(m.averaging() != nullptr);
    CHECK(m.averaging()->size() == 3);  // the snapshots continue in the same run directory
    // 0.65 < 0.7: not best (SG restores +inf or the latest acc and gets this wrong).
    CHECK_FALSE(m.on_epoch_end(4, acc_metrics(0.65), make_state(4, 4, all)).best);
    CHECK(m.on_epoch_end(5, acc_metrics(0.75), make_state(5, 5, all)).best);
    m.finish();
    CHECK(load(run / "ckpt_best.pth").at("epoch").as_int() == 5);
    CHECK(m.averaging()->size() == 5);
    bool logged_plan = false;
    for (const auto& l : logs) logged_plan |= l == plan.log_line();
    CHECK(logged_plan);

    // A Fresh plan restores nothing.
    CheckpointManager fresh(cfg);
    const ResumeState none = fresh.restore(resolve_resume(tmp.path, "exp", {}));
    CHECK_FALSE(none.resumed);
    CHECK(none.start_epoch == 0);
    CHECK_FALSE(none.best_metric);
  }

  TEST_CASE("restore of SG-written files: best from _best_ckpt_metrics; EMA missing; required keys") {
    TempDir tmp;
    const fs::path run = tmp.path / "exp" / "RUN_20240101_000000_000000";
    fs::create_directories(run);
    std::mt19937 rng(1);
    // What SG 3.7 writes (no best_metric_value: SG loses the best on resume).
    Value sg = Value::make_dict();
    sg["net"] = make_net(rng, 5);
    sg["acc"] = 0.61;
    sg["epoch"] = 7;
    Value metrics = Value::make_dict();
    metrics["tracked_metric_name"] = "Accuracy";
    metrics["valid"] = Value::make_dict();
    metrics["valid"]["Accuracy"] = 0.61;
    sg["metrics"] = metrics;
    sg["packages"] = Value::make_dict();
    Value best = metrics;
    best["valid"]["Accuracy"] = 0.83;
    sg["_best_ckpt_metrics"] = best;
    sg["optimizer_state_dict"] = make_sgd(rng);
    sg["scaler_state_dict"] = Value::make_dict();
    sg["processing_params"] = Value::make_dict();
    save(sg, run / "ckpt_latest.pth");

    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.ema = true;
    ResumeRequest req;
    req.resume = true;
    const ResumePlan plan = resolve_resume(tmp.path, "exp", req);
    {
      CheckpointManager m(cfg);
      const ResumeState rs = m.restore(plan);
      CHECK(rs.start_epoch == 7);
      REQUIRE(rs.best_metric);
      CHECK(*rs.best_metric == 0.83);
      CHECK(rs.ema_missing);
      CHECK_FALSE(rs.ema);
      CHECK(std::find(rs.warnings.begin(), rs.warnings.end(),
                      "Checkpoint does not include EMA weights, continuing training without EMA.") !=
            rs.warnings.end());
      REQUIRE(rs.extra.size() == 1);  // `packages` is SG metadata, not an extra entry
      CHECK(rs.extra[0].first == "processing_params");
    }
    {
      // Watching another metric than the file tracked: the best starts over, with a warning.
      CheckpointConfig other = cfg;
      other.metric_to_watch = "Top5";
      CheckpointManager m(other);
      const ResumeState rs = m.restore(plan);
      CHECK_FALSE(rs.best_metric);
      CHECK(std::isinf(m.best_metric_value()));
      CHECK_FALSE(rs.warnings.empty());
    }
    for (const char* key : {"net", "epoch", "optimizer_state_dict"}) {
      Value broken = sg;
      broken.dict().erase(key);
      save(broken, run / "ckpt_latest.pth");
      CheckpointManager m(cfg);
      const std::string msg = error_of([&] { m.restore(plan); });
      CHECK(msg.find(std::string("'") + key + "'") != std::string::npos);
      CHECK(msg.find((run / "ckpt_latest.pth").string()) != std::string::npos);
    }
    {
      CheckpointConfig with_sched = cfg;
      with_sched.scheduler = true;
      save(sg, run / "ckpt_latest.pth");
      CheckpointManager m(with_sched);
      CHECK(error_of([&] { m.restore(plan); }).find("torch_scheduler_state_dict") != std::string::npos);
    }
    {
      Value ours = sg;
      ours["architecture"] = "resnet18_cifar";
      ours["num_classes"] = 10;
      save(ours, run / "ckpt_latest.pth");
      CheckpointManager m(cfg);  // configured as mlp_test
      const std::string msg = error_of([&] { m.restore(plan); });
      CHECK(msg.find("architecture=resnet18_cifar") != std::string::npos);
      CheckpointConfig same = cfg;
      same.architecture = "resnet18_cifar";
      same.num_classes = 100;
      CheckpointManager m2(same);
      CHECK(error_of([&] { m2.restore(plan); }).find("num_classes=10") != std::string::npos);
    }
  }

  TEST_CASE("resume_path branches into a new run; the original run is left untouched") {
    TempDir tmp;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.async_save = false;
    fs::path original;
    {
      CheckpointManager m(cfg);
      original = m.start_run();
      m.on_epoch_end(1, acc_metrics(0.3), make_state(1, 1));
      m.on_epoch_end(2, acc_metrics(0.5), make_state(2, 2));
    }
    const auto before = fs::last_write_time(original / "ckpt_latest.pth");
    ResumeRequest req;
    req.resume_path = original / "ckpt_best.pth";
    const ResumePlan plan = resolve_resume(tmp.path, "exp", req);
    CheckpointManager m(cfg);
    const ResumeState rs = m.restore(plan);
    CHECK(rs.start_epoch == 2);
    const fs::path branch = m.start_run(plan);
    CHECK(branch != original);
    CHECK(branch == plan.run_dir);
    CHECK(m.averaging()->size() == 0);                      // a new directory: averaging starts fresh (SG)
    m.on_epoch_end(3, acc_metrics(0.4), make_state(3, 3));  // below the restored best 0.5
    CHECK(fs::exists(branch / "ckpt_latest.pth"));
    CHECK_FALSE(fs::exists(branch / "ckpt_best.pth"));
    CHECK(load(original / "ckpt_latest.pth").at("epoch").as_int() == 2);
    CHECK(fs::last_write_time(original / "ckpt_latest.pth") == before);
    CHECK(list_runs(tmp.path, "exp").size() == 2);
    CHECK(list_runs(tmp.path, "exp").front() == branch);
  }

  TEST_CASE("the recipe is stored verbatim at start and read back by resume_experiment") {
    TempDir tmp;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    const std::string recipe = "training_hyperparams:\n  max_epochs: 250\n  initial_lr: 0.1\n# ünïcode\n";
    fs::path run;
    {
      CheckpointManager m(cfg);
      run = m.start_run(recipe);
      m.on_epoch_end(1, acc_metrics(0.3), make_state(1, 1));
    }
    std::ifstream in(run / "recipe.yaml", std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == recipe);
    const ExperimentResume er = resume_experiment(tmp.path, "exp");
    CHECK(er.recipe_text == recipe);
    CHECK(er.plan.mode == ResumePlan::Resume);
    CHECK(er.plan.run_dir == run);
    const ExperimentResume by_id = resume_experiment(tmp.path, "exp", run.filename().string());
    CHECK(by_id.plan.mode == ResumePlan::RunId);

    // Continuing the run in place with another recipe (an override on resume) stores it, so
    // that the next resume runs with it too, and keeps the earlier one beside it.
    std::vector<std::string> logs;
    cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
    CheckpointManager m(cfg);
    m.start_run(er.plan, std::string_view("something else"));
    auto text_of = [](const fs::path& p) {
      std::ifstream in(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    CHECK(text_of(run / "recipe.yaml") == "something else");
    CHECK(text_of(run / "recipe.yaml.1") == recipe);
    CHECK(resume_experiment(tmp.path, "exp").recipe_text == "something else");
    bool said = false;
    for (const auto& l : logs)
      said |= l.find("the earlier one is kept as \"recipe.yaml.1\"") != std::string::npos;
    CHECK(said);
    CHECK(error_of([&] { m.start_run(); }).find("twice") != std::string::npos);
  }

  TEST_CASE("metric_to_watch: exact, then ignoring case and symbols, else an error listing the names") {
    TempDir tmp;
    std::vector<std::string> logs;
    CheckpointConfig cfg = base_config(tmp.path, "exp");
    cfg.metric_to_watch = "accuracy";
    cfg.average_best_models = false;
    cfg.log = [&](std::string_view s) { logs.emplace_back(s); };
    {
      CheckpointManager m(cfg);
      m.start_run();
      m.on_epoch_end(1, acc_metrics(0.3), make_state(1, 1));
      m.flush();
      CHECK(load(m.run_dir() / "ckpt_latest.pth").at("metrics").at("tracked_metric_name").as_str() ==
            "Accuracy");
      bool warned = false;
      for (const auto& l : logs) warned |= l.find("watching Accuracy") != std::string::npos;
      CHECK(warned);
    }
    cfg.metric_to_watch = "mAP@0.50";
    CheckpointManager m(cfg);
    m.start_run();
    const std::string msg = error_of([&] { m.on_epoch_end(1, acc_metrics(0.3), make_state(1, 1)); });
    CHECK(msg.find("No match found for metric_to_watch=mAP@0.50") != std::string::npos);
    CHECK(msg.find("Accuracy, Top5") != std::string::npos);
    CheckpointManager not_started(cfg);
    CHECK(error_of([&] {
            not_started.on_epoch_end(1, acc_metrics(0.3), make_state(1, 1));
          }).find("start_run") != std::string::npos);
  }

  TEST_CASE("a background save copies only what the loop still holds") {
    Tensor live = Tensor::zeros(DType::Float32, {4});    // the loop keeps this one
    Tensor handed = Tensor::zeros(DType::Float32, {8});  // a state_dict() snapshot, moved in
    float engine_buffer[2] = {1.0f, 2.0f};               // an engine's live memory, borrowed
    Value ck = Value::make_dict();
    ck["live"] = live;
    ck["handed"] = std::move(handed);
    ck["handed_view"] = Tensor::view_of(ck.at("handed").tensor().storage(), DType::Float32, 2, {2}, {1});
    ck["borrowed"] = Tensor::view_of(
        Storage::borrow(nullptr, reinterpret_cast<std::byte*>(engine_buffer), sizeof engine_buffer),
        DType::Float32, 0, {2}, {1});
    const Storage* handed_storage = ck.at("handed").tensor().storage().get();
    CHECK(detail::snapshot_tensors(ck) == 4 * 4 + 2 * 4);  // live and borrowed copied
    CHECK(ck.at("live").tensor().storage() != live.storage());
    CHECK(ck.at("handed").tensor().storage().get() == handed_storage);  // not copied again
    CHECK(ck.at("handed_view").tensor().storage().get() == handed_storage);
    engine_buffer[0] = 9.0f;
    CHECK(ck.at("borrowed").tensor().data<float>()[0] == 1.0f);
    CHECK(detail::snapshot_tensors(ck) == 0);  // now everything is ck's own
  }
}
