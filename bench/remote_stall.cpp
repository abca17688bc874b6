// bench/remote_stall: what remote copies cost the training loop. A CheckpointManager (background
// saving, durable files, SG's defaults) saves a --mib MiB state after each simulated epoch (one
// thread busy computing for --train-ms), once without a remote store and once with one
// (--store URL: s3://bucket/prefix or a directory), interleaved --rounds times. The stall is
// how long on_epoch_end() holds the loop; finish() then waits for the last write (and, with
// the store, for the uploads). bench/remote_s3.sh runs it against a local S3-compatible server.
//
// Usage: remote_stall --dir DIR --store URL [--endpoint E] [--mib N] [--epochs N] [--train-ms N] [--rounds N]
// Prints per mode: "stall_ms_median", "stall_ms_max", "finish_ms" (medians over rounds), and
// for the store "uploaded_MBs" (the bytes uploaded per second of the run's wall time).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "sgckpt/lifecycle.hpp"
#include "sgckpt/remote.hpp"

using namespace sgckpt;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Stands in for an epoch of training: one thread busy for `ms` (the uploader competes for the cores).
void train_for(double ms) {
  const auto t0 = Clock::now();
  volatile double x = 1;
  while (ms_since(t0) < ms)
    for (int i = 0; i < 10000; ++i) x = std::sqrt(x + i);
}

Value make_net(std::int64_t mib, int epoch) {
  constexpr int kTensors = 32;
  const std::int64_t rows = std::max<std::int64_t>(1, mib * 1024 * 1024 / 4 / 1024 / kTensors);
  Value net = Value::make_ordered_dict();
  for (int t = 0; t < kTensors; ++t) {
    Tensor x = Tensor::empty(DType::Float32, {rows, 1024});
    float* p = x.mutable_data<float>();
    for (std::size_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>((i + t + epoch) % 977);
    net["layer" + std::to_string(t) + ".weight"] = x;
  }
  return net;
}

struct RunResult {
  std::vector<double> stalls;
  double finish_ms = 0;
  double wall_ms = 0;
  std::uint64_t uploaded = 0;
};

RunResult run_once(const std::filesystem::path& root, std::shared_ptr<remote::Store> store, std::int64_t mib,
                   int epochs, double train_ms) {
  CheckpointConfig c;
  c.ckpt_root_dir = root;
  c.experiment_name = "stall";
  c.average_best_models = false;  // the stall of the checkpoint files themselves
  c.remote = std::move(store);
  std::uint64_t uploaded = 0;
  c.log = [&](std::string_view line) {
    if (line.find("NOT uploaded") != std::string_view::npos || line.find("failed") != std::string_view::npos)
      std::fprintf(stderr, "remote_stall: %.*s\n", static_cast<int>(line.size()), line.data());
    const auto p = line.find(" uploads (");
    if (p != std::string_view::npos)
      uploaded = std::strtoull(std::string(line.substr(p + 10)).c_str(), nullptr, 10);
  };
  RunResult r;
  const auto start = Clock::now();
  CheckpointManager m(c);
  m.start_run();
  Value net = make_net(mib, 0);
  for (int e = 1; e <= epochs; ++e) {
    train_for(train_ms);
    TrainingState s;
    s.net = net;  // the loop's live tensors: the manager snapshots them
    s.optimizer = Value::make_dict();
    const auto t0 = Clock::now();
    m.on_epoch_end(e, {.valid = {{"Accuracy", 0.1 * e}}, .train = {}}, std::move(s));
    r.stalls.push_back(ms_since(t0));
  }
  const auto t0 = Clock::now();
  m.finish();
  r.finish_ms = ms_since(t0);
  r.wall_ms = ms_since(start);
  r.uploaded = uploaded;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, url, endpoint;
  std::int64_t mib = 256;
  int epochs = 5, rounds = 3;
  double train_ms = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--store") url = argv[i + 1];
    if (a == "--endpoint") endpoint = argv[i + 1];
    if (a == "--mib") mib = std::atoll(argv[i + 1]);
    if (a == "--epochs") epochs = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--train-ms") train_ms = std::atof(argv[i + 1]);
    if (a == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  if (dir.empty() || url.empty()) {
    std::fprintf(
        stderr,
        "usage: remote_stall --dir DIR --store URL [--endpoint E] [--mib N] [--epochs N] [--train-ms N] "
        "[--rounds N]\n");
    return 2;
  }
  try {
    std::vector<double> off_med, off_max, off_fin, on_med, on_max, on_fin, on_rate;
    for (int r = 0; r < rounds; ++r) {
      const std::filesystem::path base = std::filesystem::path(dir) / ("round" + std::to_string(r));
      const RunResult off = run_once(base / "off", nullptr, mib, epochs, train_ms);
      const RunResult on = run_once(base / "on", remote::open_store(url, endpoint), mib, epochs, train_ms);
      off_med.push_back(median(off.stalls));
      off_max.push_back(*std::max_element(off.stalls.begin(), off.stalls.end()));
      off_fin.push_back(off.finish_ms);
      on_med.push_back(median(on.stalls));
      on_max.push_back(*std::max_element(on.stalls.begin(), on.stalls.end()));
      on_fin.push_back(on.finish_ms);
      on_rate.push_back(static_cast<double>(on.uploaded) / 1e3 / on.wall_ms);
      std::filesystem::remove_all(base);
      std::fprintf(stderr,
                   "round %d: stall median off %.1f ms, on %.1f ms; max off %.1f, on %.1f; finish off %.0f, "
                   "on %.0f ms\n",
                   r + 1, off_med.back(), on_med.back(), off_max.back(), on_max.back(), off.finish_ms,
                   on.finish_ms);
    }
    std::printf("off stall_ms_median %.2f\noff stall_ms_max %.2f\noff finish_ms %.1f\n", median(off_med),
                median(off_max), median(off_fin));
    std::printf("on stall_ms_median %.2f\non stall_ms_max %.2f\non finish_ms %.1f\non uploaded_MBs %.1f\n",
                median(on_med), median(on_max), median(on_fin), median(on_rate));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "remote_stall: %s\n", e.what());
    return 1;
  }
  return 0;
}
