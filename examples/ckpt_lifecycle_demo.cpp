// examples/ckpt_lifecycle_demo.cpp: SuperGradients' checkpoint lifecycle, driven by a toy
// "training loop" that needs no neural network library.
//
//   ckpt_lifecycle_demo ROOT [EXPERIMENT]      (EXPERIMENT defaults to "lifecycle_demo")
//
// The model is the state_dict of torch's
//   Sequential(Linear(4, 8), BatchNorm1d(8), ReLU(), Linear(8, 3))
// trained for 5 epochs of 4 steps with torch.optim.SGD(lr=0.1, momentum=0.9), a MultiStepLR
// (milestones [3], gamma 0.1) stepped per epoch and an EMA (decay 0.9). The "gradient" of
// every parameter is the parameter itself, so the updates follow torch's SGD formulas exactly
// and a torch script can replay them (tests/python/test_ckpt_resume_torch.py does). Each
// step also moves the BatchNorm buffers (running_mean *= 0.9, running_var = 0.9 var + 0.1,
// num_batches_tracked += 1).
//
// Lifecycle shown:
//   1. a fresh run with its recipe (start_run), epochs 1-3, then the process "stops";
//   2. resume_experiment(): the latest run and its stored recipe; restore() gives back the
//      net, optimizer, scheduler, EMA, RNG state and the best metric; epochs 4-5 continue in
//      the same run directory.
// Accuracy is made up: 0.30, 0.62, 0.50, 0.58, 0.61, so ckpt_best.pth must stay at epoch 2
// across the resume (SG before PR #1932 restored the best from the latest acc, 0.50, and
// would have taken epoch 4 as best; SG today restores +inf and never writes best again).
// Files: ckpt_latest.pth, ckpt_best.pth, ckpt_epoch_2.pth, ckpt_epoch_5.pth,
// average_model.pth, averaging_snapshots.pkl, recipe.yaml. The last output line is
// "run_dir=<path>".
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/lifecycle.hpp"

namespace {

using sgckpt::DType;
using sgckpt::Int;
using sgckpt::Key;
using sgckpt::Tensor;
using sgckpt::Value;

constexpr int kEpochs = 5;
constexpr int kStepsPerEpoch = 4;
constexpr int kStopAfter = 3;  // the first process "dies" after this many epochs
constexpr double kBaseLr = 0.1;
constexpr double kMomentum = 0.9;
constexpr double kGamma = 0.1;
constexpr std::int64_t kMilestone = 3;
constexpr float kEmaDecay = 0.9f;
constexpr double kAccuracy[kEpochs] = {0.30, 0.62, 0.50, 0.58, 0.61};
// model.parameters() order: what the optimizer's integer ids 0..5 refer to.
const std::vector<std::string> kParams = {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"};

const char* const kRecipe =
    "# ckpt_lifecycle_demo\n"
    "architecture: mlp_4_8_3\n"
    "training_hyperparams:\n"
    "  max_epochs: 5\n"
    "  initial_lr: 0.1\n"
    "  optimizer: SGD\n"
    "  optimizer_params: {momentum: 0.9}\n"
    "  lr_mode: MultiStepLR\n"
    "  lr_updates: [3]\n"
    "  ema: true\n"
    "  metric_to_watch: Accuracy\n"
    "  save_ckpt_epoch_list: [2, 5]\n";

void say(std::string_view line) {
  std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
}

Tensor randn(std::mt19937& rng, sgckpt::Shape shape) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  std::normal_distribution<float> dist(0.0f, 0.5f);
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

Tensor filled(sgckpt::Shape shape, float v) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = v;
  return t;
}

float* floats(Value& v) {
  return v.tensor().mutable_data<float>();
}

// Everything the toy loop trains, as sgckpt values (the "engine" state).
struct Training {
  Value net = Value::make_ordered_dict();
  Value ema = Value::make_ordered_dict();
  Value optimizer = Value::make_dict();
  Value scheduler = Value::make_dict();
  Tensor rng_state;
};

Training initial_state() {
  std::mt19937 rng(42);
  Training t;
  t.net["0.weight"] = randn(rng, {8, 4});
  t.net["0.bias"] = randn(rng, {8});
  t.net["1.weight"] = filled({8}, 1.0f);
  t.net["1.bias"] = filled({8}, 0.0f);
  t.net["1.running_mean"] = filled({8}, 0.0f);
  t.net["1.running_var"] = filled({8}, 1.0f);
  const std::int64_t zero = 0;
  t.net["1.num_batches_tracked"] =
      Tensor::from_values<std::int64_t>(DType::Int64, {}, std::span<const std::int64_t>(&zero, 1));
  t.net["3.weight"] = randn(rng, {3, 8});
  t.net["3.bias"] = randn(rng, {3});
  // The EMA starts as a deep copy of the model (SG's ModelEMA).
  for (const auto& [k, v] : t.net.dict()) t.ema[k] = v.tensor().clone();

  // torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict() once a
  // scheduler has been attached (it adds initial_lr); no momentum buffers before step 1.
  Value group = Value::make_dict();
  group["lr"] = kBaseLr;
  group["momentum"] = kMomentum;
  group["dampening"] = 0;
  group["weight_decay"] = 0;
  group["nesterov"] = false;
  group["maximize"] = false;
  group["foreach"] = Value();
  group["differentiable"] = false;
  group["initial_lr"] = kBaseLr;
  Value ids = Value::make_list();
  for (std::size_t i = 0; i < kParams.size(); ++i)
    ids.items().emplace_back(Int(static_cast<std::int64_t>(i)));
  group["params"] = ids;
  t.optimizer["state"] = Value::make_dict();
  t.optimizer["param_groups"] = Value::make_list({group});

  // MultiStepLR(optimizer, milestones=[3], gamma=0.1).state_dict() right after construction.
  Value milestones = Value::make_dict(sgckpt::DictKind::Counter);
  milestones.dict().set(Key(kMilestone), Value(1));
  t.scheduler["milestones"] = milestones;
  t.scheduler["gamma"] = kGamma;
  t.scheduler["base_lrs"] = Value::make_list({Value(kBaseLr)});
  t.scheduler["last_epoch"] = 0;
  t.scheduler["verbose"] = false;
  t.scheduler["_step_count"] = 1;
  t.scheduler["_get_lr_called_within_step"] = false;
  t.scheduler["_last_lr"] = Value::make_list({Value(kBaseLr)});

  t.rng_state = Tensor::zeros(DType::UInt8, {16});
  return t;
}

// One optimizer step with gradient = parameter, exactly as torch's SGD (momentum, no
// dampening): buf = grad (first step) or buf * momentum + grad; p += (-lr) * buf. Scalars are
// rounded to float first, as torch does for float32 tensors.
void sgd_step(Training& t) {
  const double lr = t.optimizer["param_groups"][0]["lr"].as_float();
  const float alpha = static_cast<float>(-lr);
  const float momentum = static_cast<float>(kMomentum);
  Value& state = t.optimizer["state"];
  for (std::size_t i = 0; i < kParams.size(); ++i) {
    Value& w = t.net[kParams[i]];
    const Key id(static_cast<std::int64_t>(i));
    float* p = floats(w);
    const std::size_t n = w.tensor().numel();
    if (!state.contains(id)) {
      Value slot = Value::make_dict();
      slot["momentum_buffer"] = w.tensor().clone();  // torch.clone(grad)
      state.dict().set(id, slot);
    } else {
      float* buf = floats(state.dict().at(id)["momentum_buffer"]);
      for (std::size_t k = 0; k < n; ++k) buf[k] = buf[k] * momentum + p[k];
    }
    const float* buf = floats(state.dict().at(id)["momentum_buffer"]);
    for (std::size_t k = 0; k < n; ++k) p[k] = p[k] + alpha * buf[k];
  }
  float* mean = floats(t.net["1.running_mean"]);
  float* var = floats(t.net["1.running_var"]);
  for (int k = 0; k < 8; ++k) {
    mean[k] = mean[k] * 0.9f;
    var[k] = var[k] * 0.9f + 0.1f;
  }
  ++t.net["1.num_batches_tracked"].tensor().mutable_data<std::int64_t>()[0];
  // EMA on floating tensors only; integer buffers keep their value (SG's ModelEMA).
  for (auto& [k, e] : t.ema.dict()) {
    if (e.tensor().dtype() != DType::Float32) continue;
    float* ep = floats(e);
    const float* wp = t.net.at(k).tensor().data<float>();
    for (std::size_t j = 0; j < e.tensor().numel(); ++j)
      ep[j] = ep[j] * kEmaDecay + (1.0f - kEmaDecay) * wp[j];
  }
}

// MultiStepLR.step(): last_epoch += 1; at a milestone lr *= gamma (in double, like Python).
void scheduler_step(Training& t) {
  const std::int64_t last = t.scheduler["last_epoch"].as_int() + 1;
  t.scheduler["last_epoch"] = Value(Int(last));
  t.scheduler["_step_count"] = Value(Int(t.scheduler["_step_count"].as_int() + 1));
  Value& lr = t.optimizer["param_groups"][0]["lr"];
  if (last == kMilestone) lr = lr.as_float() * kGamma;
  t.scheduler["_last_lr"] = Value::make_list({Value(lr.as_float())});
}

sgckpt::TrainingState snapshot_for_manager(const Training& t, int epoch) {
  sgckpt::TrainingState s;
  s.net = t.net;  // shares the tensors; the manager deep-copies before writing in the background
  s.optimizer = t.optimizer;
  s.ema = t.ema;
  s.scheduler = t.scheduler;
  s.extra.emplace_back("rng_state", Value(t.rng_state));
  // The order the data loader will visit the next epoch in (a stand-in for a sampler state).
  Value order = Value::make_list();
  for (int i = 0; i < 6; ++i) order.items().emplace_back((i * 5 + epoch) % 6);
  s.extra.emplace_back("data_order", order);
  return s;
}

void train_epochs(sgckpt::CheckpointManager& m, Training& t, int first_epoch, int end_epoch) {
  std::mt19937 rng(1000 + first_epoch);
  for (int e = first_epoch; e < end_epoch; ++e) {  // e is 0-based, as in SG's loop
    for (int s = 0; s < kStepsPerEpoch; ++s) sgd_step(t);
    scheduler_step(t);  // SG steps epoch-based schedulers before validation and saving
    std::uint8_t* r = t.rng_state.mutable_data<std::uint8_t>();
    for (int i = 0; i < 16; ++i) r[i] = static_cast<std::uint8_t>(rng());
    sgckpt::Metrics metrics;
    metrics.valid = {{"Accuracy", kAccuracy[e]}, {"Top5", 0.99}};
    metrics.train = {{"Accuracy", kAccuracy[e] - 0.05}};
    const sgckpt::EpochResult r2 = m.on_epoch_end(e + 1, metrics, snapshot_for_manager(t, e + 1));
    say("epoch " + std::to_string(e + 1) + ": Accuracy " + std::to_string(kAccuracy[e]) +
        (r2.best ? " (best)" : "") + ", " + std::to_string(r2.files.size()) + " file(s)");
  }
}

sgckpt::CheckpointConfig make_config(const std::string& root, const std::string& experiment) {
  sgckpt::CheckpointConfig c;
  c.ckpt_root_dir = root;
  c.experiment_name = experiment;
  c.metric_to_watch = "Accuracy";
  c.save_ckpt_epoch_list = {2, 5};
  c.ema = true;
  c.scheduler = true;
  c.architecture = "mlp_4_8_3";
  c.num_classes = 3;
  c.in_channels = 4;
  c.log = [](std::string_view line) { say("[sgckpt] " + std::string(line)); };
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s ROOT [EXPERIMENT]\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1];
  const std::string experiment = argc > 2 ? argv[2] : "lifecycle_demo";
  try {
    // ---- process 1: a fresh run, stopped after 3 epochs
    {
      Training t = initial_state();
      sgckpt::CheckpointManager m(make_config(root, experiment));
      m.start_run(kRecipe);
      train_epochs(m, t, 0, kStopAfter);
      m.finish();  // waits for the last background write; rethrows its error
      say("-- stopped after epoch " + std::to_string(kStopAfter));
    }

    // ---- process 2: resume the experiment from its stored recipe
    const sgckpt::ExperimentResume er = sgckpt::resume_experiment(root, experiment);
    sgckpt::CheckpointManager m(make_config(root, experiment));
    sgckpt::ResumeState rs = m.restore(er.plan);
    m.start_run(er.plan, er.recipe_text);
    // restore() maps the file: its tensors are read-only views. This loop trains on the
    // value tree itself, so it takes owned copies (an engine copies into its own buffers).
    Training t;
    t.net = sgckpt::clone_state(rs.net);
    t.optimizer = sgckpt::clone_state(rs.optimizer);
    t.scheduler = std::move(*rs.scheduler);
    t.ema = sgckpt::clone_state(*rs.ema);
    for (auto& [key, value] : rs.extra)
      if (key == "rng_state") t.rng_state = value.tensor().clone();
    train_epochs(m, t, sgckpt::int_in_range<int>(rs.start_epoch, "epoch", 0), kEpochs);
    m.finish();
    say("run_dir=" + m.run_dir().string());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckpt_lifecycle_demo: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
