// bench/train_step_cpu: one ResNet18-CIFAR training step on the CPU, the engine next to torch.
//
// A step is what a training loop does per batch: zero_grad, forward (train mode), softmax
// cross-entropy, backward, and an SGD step (momentum 0.9, weight decay 5e-4, torch 1.13's
// algorithm via engine::SGD). The torch peer (bench/train_step_cpu_torch.py, run by
// $SGCKPT_PYTHON, default Debian's /usr/bin/python3) times the same step on the same model
// shape with the same number of threads, in the same run, so both see the same machine load.
// Times are per-step medians: the machine is usually shared, and a median shrugs off the
// steps another process stole time from.
//
// Usage: train_step_cpu [--steps N] [--warmup N] [--threads N] [--batch N] [--width W]
//                       [--skip-torch]
// Env:   SGCKPT_PYTHON: the Python with torch (default /usr/bin/python3).
//        OMP_WAIT_POLICY: passed on to the peer; PASSIVE when unset (see run_torch).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/optim/sgd.hpp"

namespace fs = std::filesystem;
namespace eng = sgckpt::engine;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// The 1-minute load average (/proc/loadavg), "?" where there is none: other work on the
// machine slows both sides, torch's OpenMP threads most (they spin-wait for each other).
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string first;
  return in >> first ? first : "?";
}

struct Options {
  int steps = 10, warmup = 2, threads = 0, batch = 32;
  double width = 1.0;
  bool torch = true;
};

struct Times {  // seconds per step, one entry per timed step
  std::vector<double> step, forward, backward, optimizer;
};

Times run_engine(const Options& o) {
  constexpr std::int64_t kClasses = 10;
  eng::nn::ResNet18 model(eng::nn::ResNet18Config::cifar(kClasses, o.width, 3), /*seed=*/0);
  model.train();
  eng::nn::CrossEntropyLoss criterion;

  // Fixed random inputs: the values do not change the work done.
  eng::Generator gen(1);
  eng::Tensor x = eng::Tensor::empty({o.batch, 3, 32, 32});
  float* xp = x.data<float>();
  for (std::size_t i = 0; i < x.numel(); ++i) xp[i] = gen.uniform(-1.0f, 1.0f);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(o.batch));
  for (auto& l : labels) l = static_cast<std::int64_t>(gen.below(kClasses));
  const eng::Tensor y = eng::Tensor::from_vector({o.batch}, labels);

  std::vector<eng::ParamRef> refs;
  for (auto& p : model.named_parameters())
    refs.push_back({p.name, p.value.data<float>(), p.grad.data<float>(), p.value.numel(), p.value.shape()});
  sgckpt::Value sgd_options = sgckpt::Value::make_dict();
  sgd_options["lr"] = 0.01;
  sgd_options["momentum"] = 0.9;
  sgd_options["weight_decay"] = 5e-4;
  eng::SGD sgd(std::move(refs), sgd_options);

  Times t;
  for (int i = 0; i < o.warmup + o.steps; ++i) {
    const double t0 = now();
    model.zero_grad();
    eng::Tensor logits = model.forward(x);
    criterion.forward(logits, y);
    const double t1 = now();
    model.backward(criterion.backward());
    const double t2 = now();
    sgd.step();
    const double t3 = now();
    if (i < o.warmup) continue;
    t.step.push_back(t3 - t0);
    t.forward.push_back(t1 - t0);
    t.backward.push_back(t2 - t1);
    t.optimizer.push_back(t3 - t2);
  }
  return t;
}

std::string torch_version(const std::map<std::string, double>& r) {
  if (!r.count("version_major")) return "?";
  return std::to_string(static_cast<int>(r.at("version_major"))) + "." +
         std::to_string(static_cast<int>(r.at("version_minor")));
}

// Runs the peer; it prints "key value" lines (medians in ms).
std::map<std::string, double> run_torch(const Options& o, int threads) {
  const char* py = std::getenv("SGCKPT_PYTHON");
  const std::string python = py && *py ? py : "/usr/bin/python3";
  const fs::path script = fs::path(SGCKPT_SOURCE_DIR) / "bench" / "train_step_cpu_torch.py";
  const fs::path out =
      fs::temp_directory_path() / ("sgckpt-train-step-" + std::to_string(::getpid()) + ".txt");
  std::ostringstream cmd;
  // torch's OpenMP threads spin while they wait for each other; on a machine with other work
  // they spin through each other's time slices (steps 50x slower with 2 threads on a busy
  // 2-core machine). Waiting passively, as the engine's threads do, unless the caller chose.
  if (!std::getenv("OMP_WAIT_POLICY")) cmd << "OMP_WAIT_POLICY=PASSIVE ";
  cmd << python << " " << script << " --steps " << o.steps << " --warmup " << o.warmup << " --threads "
      << threads << " --batch " << o.batch << " --width " << o.width << " > " << out;
  const int rc = std::system(cmd.str().c_str());
  std::map<std::string, double> r;
  std::ifstream in(out);
  std::string k;
  double v;
  while (in >> k >> v) r[k] = v;
  fs::remove(out);
  if (rc != 0 || !r.count("step_ms")) throw std::runtime_error("the torch peer failed: " + cmd.str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--steps" && has_value)
      o.steps = std::atoi(argv[++i]);
    else if (a == "--warmup" && has_value)
      o.warmup = std::atoi(argv[++i]);
    else if (a == "--threads" && has_value)
      o.threads = std::atoi(argv[++i]);
    else if (a == "--batch" && has_value)
      o.batch = std::atoi(argv[++i]);
    else if (a == "--width" && has_value)
      o.width = std::atof(argv[++i]);
    else if (a == "--skip-torch")
      o.torch = false;
    else {
      std::fprintf(stderr,
                   "usage: train_step_cpu [--steps N] [--warmup N] [--threads N] [--batch N] [--width W] "
                   "[--skip-torch]\n");
      return 2;
    }
  }
  if (o.steps < 1 || o.warmup < 0 || o.batch < 1 || !(o.width > 0)) {
    std::fprintf(stderr, "train_step_cpu: need --steps >= 1, --warmup >= 0, --batch >= 1, --width > 0\n");
    return 2;
  }
  if (o.threads > 0) eng::set_num_threads(o.threads);
  const int threads = eng::num_threads();

  std::printf(
      "ResNet18-CIFAR training step: batch %d, 3x32x32, width %.3g, 10 classes, SGD(momentum 0.9, "
      "wd 5e-4)\n",
      o.batch, o.width);
  std::printf("threads %d, %d warm-up + %d timed steps, medians in ms; load average %s over %u cores\n",
              threads, o.warmup, o.steps, load_average().c_str(), std::thread::hardware_concurrency());
  try {
    const Times t = run_engine(o);
    const double engine_ms = median(t.step) * 1e3;
    std::printf("%-8s %10s %10s %10s %10s %10s %10s\n", "", "step", "min", "max", "fwd+loss", "backward",
                "sgd");
    std::printf("%-8s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f\n", "engine", engine_ms,
                *std::min_element(t.step.begin(), t.step.end()) * 1e3,
                *std::max_element(t.step.begin(), t.step.end()) * 1e3, median(t.forward) * 1e3,
                median(t.backward) * 1e3, median(t.optimizer) * 1e3);
    if (!o.torch) {
      std::printf("summary: engine %.1f ms/step (torch skipped), %d threads, batch %d\n", engine_ms, threads,
                  o.batch);
      return 0;
    }
    const auto r = run_torch(o, threads);
    const double torch_ms = r.at("step_ms");
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    std::printf(
        "%-8s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f   (torch %s, %d threads, OMP_WAIT_POLICY=%s)\n",
        "torch", torch_ms, r.at("min_ms"), r.at("max_ms"), r.at("forward_ms"), r.at("backward_ms"),
        r.at("sgd_ms"), torch_version(r).c_str(), static_cast<int>(r.at("threads")), wait ? wait : "PASSIVE");
    std::printf("speed relative to torch (torch_time / engine_time): %.2fx  (target >= 0.5)\n",
                torch_ms / engine_ms);
    std::printf("summary: engine %.1f ms/step, torch %.1f ms/step, ratio %.2fx, %d threads, batch %d\n",
                engine_ms, torch_ms, torch_ms / engine_ms, threads, o.batch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step_cpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
