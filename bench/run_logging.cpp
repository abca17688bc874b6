// bench/run_logging: what the run's TensorBoard events and text log cost a training loop, next
// to what SuperGradients' logger (torch.utils.tensorboard.SummaryWriter) pays for the same events.
//
// Rows, in microseconds per call (medians over rounds; each round runs both sides, interleaved):
//   step loss scalar   RunLogger::step with step_loss_every=1 (one write() per scalar) against
//                      SummaryWriter.add_scalar; the peer's call only enqueues, so its cost
//                      "through flush" (all records handed to the OS) is shown too;
//   epoch              an epoch's seven scalars (train/valid loss, accuracy, top-5, lr) and the
//                      flush; ours also fdatasyncs the event file and writes SG's text lines;
//   log line           RunLogger::note (a line in the experiment log, flushed).
// A training step of ResNet18 on these CPUs takes tens to hundreds of milliseconds
// (bench/train_step_cpu), so what matters is the per-step row's size against that.
//
// Usage: run_logging [--dir DIR] [--steps N] [--epochs N] [--rounds N] [--skip-peer]
// Env:   SGCKPT_PYPI_PYTHON: the Python with tensorboard (default the PyPI oracles' venv).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sgckpt/engine/train/run_logger.hpp"

namespace fs = std::filesystem;
namespace train = sgckpt::engine::train;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

struct Options {
  fs::path dir = fs::temp_directory_path();
  int steps = 20000, epochs = 20, rounds = 5;
  bool peer = true;
};

using Row = std::map<std::string, double>;  // row name -> microseconds per call

// One round of ours, in a fresh run directory (a warm-up run first, as the peer does).
Row run_ours(const Options& o, const fs::path& run_dir) {
  const sgckpt::Metrics m{{{"CrossEntropyLoss", 0.5}, {"Accuracy", 0.8}, {"Top5", 0.99}},
                          {{"CrossEntropyLoss", 0.6}, {"Accuracy", 0.7}, {"Top5", 0.98}}};
  const train::RunLogger::Options opts{.tensorboard = true, .step_loss_every = 1};
  Row r;
  for (const bool timed : {false, true}) {
    fs::remove_all(run_dir);
    fs::create_directories(run_dir);
    train::RunLogger logger(run_dir, o.epochs, "bench: true\n", opts);
    auto t0 = std::chrono::steady_clock::now();
    for (int s = 1; s <= o.steps; ++s) logger.step(s, "CrossEntropyLoss", 2.0 / s);
    if (!timed) continue;
    r["step loss scalar"] = seconds_since(t0) / o.steps * 1e6;
    t0 = std::chrono::steady_clock::now();
    for (int e = 0; e < o.epochs; ++e) logger.epoch(e, m, 0.1);
    r["epoch (7 scalars + flush)"] = seconds_since(t0) / o.epochs * 1e6;
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.steps / 10; ++i) logger.note("Checkpoint saved in /runs/x/ckpt_latest.pth");
    r["log line"] = seconds_since(t0) / (o.steps / 10) * 1e6;
  }
  fs::remove_all(run_dir);
  return r;
}

// One round of the peer (bench/run_logging_tensorboard.py); empty when it could not run.
Row run_peer(const Options& o, const std::string& python) {
  const fs::path script = fs::path(SGCKPT_SOURCE_DIR) / "bench" / "run_logging_tensorboard.py";
  const fs::path out = o.dir / ("sgckpt-run-logging-" + std::to_string(::getpid()) + ".txt");
  std::ostringstream cmd;
  cmd << python << " " << script << " " << o.dir << " " << o.steps << " " << o.epochs << " > " << out;
  Row r;
  if (std::system(cmd.str().c_str()) != 0) return r;
  std::ifstream in(out);
  std::string key;
  double v;
  while (in >> key >> v) {
    if (key == "step_call") r["step loss scalar"] = v;
    if (key == "step_flushed") r["step loss scalar, through flush"] = v;
    if (key == "epoch") r["epoch (7 scalars + flush)"] = v;
  }
  fs::remove(out);
  return r;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--dir" && has_value)
      o.dir = argv[++i];
    else if (a == "--steps" && has_value)
      o.steps = std::max(10, std::atoi(argv[++i]));
    else if (a == "--epochs" && has_value)
      o.epochs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--rounds" && has_value)
      o.rounds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--skip-peer")
      o.peer = false;
    else {
      std::fprintf(stderr,
                   "usage: run_logging [--dir DIR] [--steps N] [--epochs N] [--rounds N] [--skip-peer]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const char* env = std::getenv("SGCKPT_PYPI_PYTHON");
  const std::string python = env && *env ? env : "/var/cache/sgckpt/pypi-venv/bin/python";
  const bool with_peer = o.peer && fs::exists(python);
  if (o.peer && !with_peer)
    std::printf("(no SummaryWriter peer: %s missing; run scripts/install-pypi-oracle.sh)\n", python.c_str());
  std::map<std::string, std::vector<double>> ours, peer;
  const fs::path run_dir = o.dir / ("sgckpt-run-logging-" + std::to_string(::getpid()));
  for (int round = 0; round < o.rounds; ++round) {
    for (const auto& [k, v] : run_ours(o, run_dir)) ours[k].push_back(v);
    if (with_peer)
      for (const auto& [k, v] : run_peer(o, python)) peer[k].push_back(v);
  }
  std::printf("run logging: %d step scalars, %d epochs, %d rounds, in %s\n", o.steps, o.epochs, o.rounds,
              o.dir.c_str());
  std::printf("%-34s %14s %16s %8s\n", "us per call (median)", "sgckpt", "SummaryWriter", "ratio");
  const std::vector<std::string> rows = {"step loss scalar", "step loss scalar, through flush",
                                         "epoch (7 scalars + flush)", "log line"};
  for (const auto& row : rows) {
    const double a = ours.count(row) ? median(ours[row]) : 0.0;
    const double b = peer.count(row) ? median(peer[row]) : 0.0;
    char sa[32] = "-", sb[32] = "-", ratio[32] = "-";
    if (a > 0) std::snprintf(sa, sizeof sa, "%.2f", a);
    if (b > 0) std::snprintf(sb, sizeof sb, "%.2f", b);
    if (a > 0 && b > 0) std::snprintf(ratio, sizeof ratio, "%.2f", b / a);
    std::printf("%-34s %14s %16s %8s\n", row.c_str(), sa, sb, ratio);
  }
  std::printf(
      "ratio: SummaryWriter / sgckpt (above 1: ours costs less). Ours writes each scalar\n"
      "synchronously, so its step row is already \"through flush\".\n");
  return 0;
}
