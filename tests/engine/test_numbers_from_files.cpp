// Numbers that do not fit (issue 13, hostile input round 2, class D). Integers in a file are
// Python ints of any size; the engine keeps epochs in int and counters in int64 or float32. A
// cast used to wrap silently: a checkpoint whose epoch is 2^32 + 1 resumed training at epoch
// 1 while the log said 4294967297, a negative Adam step count turned the bias corrections
// into NaN weights, a StepLR step_size of 0 divided by zero. Every such number now goes
// through one checked conversion (sgckpt/ckpt/checked_int.hpp), and what does not fit is an
// Error naming the key (and the checkpoint), before anything is written.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/train/trainer.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
using sgckpt::test::contains;
namespace fs = std::filesystem;

namespace {

// 2^64, one past what any native integer holds.
Value two_to_the_64() {
  const std::uint8_t le[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  return Value(Int::from_le_bytes(le, sizeof le));
}

// Eight random 3x32x32 images of two classes: enough for one tiny epoch.
data::Dataset tiny_images() {
  data::Dataset d;
  d.images = engine::Tensor::empty({8, 3, 32, 32});
  Generator gen(7);
  float* x = d.images.data<float>();
  for (std::size_t i = 0; i < d.images.numel(); ++i) x[i] = static_cast<float>(gen.normal());
  d.labels = engine::Tensor::from_vector<std::int64_t>({8}, {0, 1, 0, 1, 0, 1, 0, 1});
  d.num_classes = 2;
  d.black = {0.0f, 0.0f, 0.0f};
  return d;
}

// A ResNet18 of width 1/16 trained with Adam and mixed precision by the engine's Trainer,
// whose checkpoints go to <root>/exp/RUN_.../.
struct TinyTraining {
  test::TempDir tmp;
  data::Dataset images = tiny_images();

  train::Trainer trainer(int max_epochs) const {
    train::TrainConfig cfg;
    cfg.max_epochs = max_epochs;
    cfg.batch_size = 4;
    cfg.valid_batch_size = 8;
    cfg.optimizer = "Adam";
    cfg.mixed_precision = true;
    CheckpointConfig ckpt;
    ckpt.ckpt_root_dir = tmp.path();
    ckpt.experiment_name = "exp";
    ckpt.async_save = false;
    ckpt.durable = false;
    ckpt.average_best_models = false;
    return train::Trainer(nn::ResNet18Config::cifar(2, 1.0 / 16), cfg, ckpt);
  }

  // Trains one epoch; returns the run directory.
  fs::path first_epoch() {
    return trainer(1).fit(images, images, resolve_resume(tmp.path(), "exp", {})).run_dir;
  }

  // Resumes the latest run up to 2 epochs and returns the refusal's message.
  std::string resume_refusal() {
    ResumeRequest req;
    req.resume = true;
    train::Trainer t = trainer(2);
    return test::error_message([&] { t.fit(images, images, resolve_resume(tmp.path(), "exp", req)); });
  }
};

// Rewrites one entry of a checkpoint file.
template <class Edit>
void edit_checkpoint(const fs::path& file, Edit&& edit) {
  Value ck = load(file);
  edit(ck);
  save(ck, file);
}

// Every file of a directory with its size and modification time.
std::map<std::string, std::pair<std::uintmax_t, fs::file_time_type>> listing(const fs::path& dir) {
  std::map<std::string, std::pair<std::uintmax_t, fs::file_time_type>> out;
  for (const auto& e : fs::directory_iterator(dir))
    out[e.path().filename()] = {e.file_size(), e.last_write_time()};
  return out;
}

}  // namespace

TEST_SUITE("engine/numbers_from_files") {
  TEST_CASE("int_in_range: a file's integer becomes a native one only when it fits, else the key is named") {
    CHECK(int_in_range<int>(Value(Int(41)), "epoch", 0) == 41);
    CHECK(int_in_range<std::int64_t>(Value(Int(-1)), "last_epoch", -1) == -1);

    const Error wide =
        test::error_of([] { int_in_range<int>(Value(Int(std::int64_t{1} << 32 | 1)), "epoch"); });
    CHECK(wide.message() == "'epoch' = 4294967297 does not fit in int");
    CHECK(wide.context().key_path == "epoch");

    const Error huge = test::error_of([] { int_in_range<std::int64_t>(two_to_the_64(), "a/b/steps"); });
    CHECK(huge.message() == "'steps' = 18446744073709551616 does not fit in int64");
    CHECK(huge.context().key_path == "a/b/steps");

    CHECK(test::error_of([] { int_in_range<int>(Value(Int(-2)), "epoch", 0); }).message() ==
          "'epoch' = -2 is out of range [0, 2147483647]");
    CHECK(test::error_of([] { int_in_range<int>(Value(true), "epoch"); }).message() ==
          "'epoch' is a bool, not an int");
    CHECK(test::error_of([] { int_in_range<int>(Value(2.0), "epoch"); }).message() ==
          "'epoch' is a float, not an int");
    CHECK(test::error_of([] { number_in_range(Value(Int(-3)), "state/0/step", 0, 1000); }).message() ==
          "'step' = -3 is out of range [0, 1000]");
  }

  TEST_CASE("a checkpoint whose epoch is 2^32 + 1 is refused, not resumed from epoch 1") {
    TinyTraining t;
    const fs::path run = t.first_epoch();
    const fs::path latest = run / "ckpt_latest.pth";
    edit_checkpoint(latest, [](Value& ck) { ck["epoch"] = Value(Int((std::int64_t{1} << 32) + 1)); });
    const auto before = listing(run);

    const std::string msg = t.resume_refusal();
    CHECK(contains(msg, "'epoch' = 4294967297 does not fit in int"));
    CHECK(contains(msg, "file '" + latest.string() + "'"));
    CHECK(contains(msg, "key path 'epoch'"));
    CHECK(listing(run) == before);  // refused before anything was written

    // Negative, and beyond every native type: refused by the manager, with the key.
    edit_checkpoint(latest, [](Value& ck) { ck["epoch"] = Value(Int(-1)); });
    CHECK(contains(t.resume_refusal(), "'epoch' = -1 is out of range [0, 9223372036854775807]"));
    edit_checkpoint(latest, [](Value& ck) { ck["epoch"] = two_to_the_64(); });
    CHECK(contains(t.resume_refusal(), "'epoch' = 18446744073709551616 does not fit in int64"));
  }

  TEST_CASE("a negative or huge step count is refused, naming its key path in the checkpoint") {
    TinyTraining t;
    const fs::path run = t.first_epoch();
    const fs::path latest = run / "ckpt_latest.pth";
    const Value original = load(latest);
    auto with = [&](const char* part, const std::string& path_in_part, Value v) {
      Value ck = original;
      Value* target = &ck.at(part);
      std::size_t start = 0;
      while (start <= path_in_part.size()) {
        const auto slash = std::min(path_in_part.find('/', start), path_in_part.size());
        const std::string k = path_in_part.substr(start, slash - start);
        const bool numeric = !k.empty() && k.find_first_not_of("0123456789") == std::string::npos;
        target = &target->at(numeric ? Key(std::int64_t{std::stoll(k)}) : Key(k));
        start = slash + 1;
      }
      *target = std::move(v);
      save(ck, latest);
      return t.resume_refusal();
    };

    // Adam's step (a 0-dim float32 tensor since torch 1.12, an int before).
    const std::string negative = with("optimizer_state_dict", "state/0/step", Value(Int(-3)));
    CHECK(contains(negative, "'step' = -3 is out of range [0, 9007199254740992]"));
    CHECK(contains(negative, "key path 'optimizer_state_dict/state/0/step'"));
    CHECK(contains(negative, "file '" + latest.string() + "'"));
    CHECK(contains(with("optimizer_state_dict", "state/0/step", Value(Int(std::int64_t{1} << 60))),
                   "'step' = 1152921504606846976 is out of range"));
    CHECK(contains(with("optimizer_state_dict", "state/0/step", Value(1e30)),
                   "'step' = 1e+30 is out of range"));

    // The GradScaler's counters: torch keeps the tracker in an int32 tensor; ++ on a huge one
    // would overflow, and an interval of 0 would never be reached.
    CHECK(contains(with("scaler_state_dict", "_growth_tracker", Value(Int(std::int64_t{1} << 40))),
                   "'_growth_tracker' = 1099511627776 is out of range [0, 1999]"));
    CHECK(contains(with("scaler_state_dict", "growth_interval", Value(Int(0))),
                   "key path 'scaler_state_dict/growth_interval'"));
    CHECK(contains(with("scaler_state_dict", "scale", Value(1e300)), "'scale' = 1e+300 is out of range"));

    // The data generator's position.
    CHECK(contains(with("rng_state", "data/offset", Value(Int(-5))),
                   "'offset' = -5 is out of range [0, 9223372036854775807]"));
  }

  TEST_CASE("LR schedulers and parameter ids refuse numbers their arithmetic cannot take") {
    std::vector<float> w{1.0f}, g{0.0f};
    Value options = Value::make_dict();
    options["lr"] = 0.1;
    SGD sgd({{"w", w.data(), g.data(), 1, {1}}}, {}, options);

    StepLR step(sgd, 2);
    Value sd = step.state_dict();
    sd["step_size"] = Value(Int(0));  // torch: ZeroDivisionError; a C++ % by zero: a crash
    CHECK(test::error_message([&] { step.load_state_dict(sd); }) ==
          "'step_size' = 0 is out of range [1, 9007199254740992] (key path 'step_size')");
    sd = step.state_dict();
    sd["last_epoch"] = two_to_the_64();
    CHECK(contains(test::error_message([&] { step.load_state_dict(sd); }),
                   "'last_epoch' = 18446744073709551616"));

    CosineAnnealingLR cosine(sgd, 10);
    sd = cosine.state_dict();
    sd["T_max"] = Value(Int(0));
    CHECK(contains(test::error_message([&] { cosine.load_state_dict(sd); }), "'T_max' = 0 is out of range"));

    Value opt = sgd.state_dict();
    opt["param_groups"][0]["params"][0] = two_to_the_64();
    CHECK(test::error_message([&] { sgd.load_state_dict(opt); }) ==
          "'params/0' = 18446744073709551616 does not fit in int64 (key path 'param_groups/0/params/0')");
  }
}
