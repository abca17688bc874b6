// bench/dcp_save: a torch.distributed.checkpoint save of a large state, by one rank or by
// several (threads of this process, each writing its own file, as ranks on one machine do);
// bench/dcp_save.sh runs it next to torch's dcp.save (one process and 2 gloo processes) and
// prints the ratios.
//
// The state: --mib MiB of float32 in 64 tensors of equal size (rows of 1024 floats), each split
// along its first dimension among the ranks (io/dcp/save.hpp, save_split), saved durably
// (fsync of every file, atomic publication). Every timed save replaces the previous one;
// the first --warmup saves are not counted.
//
// Usage: dcp_save --dir DIR [--mib N] [--ranks N] [--iters N] [--warmup N]
// Prints: "save_ms <median>" and "save_GBs <state bytes / median>".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sgckpt/io/dcp.hpp"

using namespace sgckpt;

int main(int argc, char** argv) {
  std::string dir;
  std::int64_t mib = 1024;
  int ranks = 1, iters = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--mib") mib = std::atoll(argv[i + 1]);
    if (a == "--ranks") ranks = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--iters") iters = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--warmup") warmup = std::max(0, std::atoi(argv[i + 1]));
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: dcp_save --dir DIR [--mib N] [--ranks N] [--iters N] [--warmup N]\n");
    return 2;
  }
  constexpr int kTensors = 64;
  const std::int64_t rows = mib * 1024 * 1024 / 4 / 1024 / kTensors;
  Value state = Value::make_dict();
  for (int t = 0; t < kTensors; ++t) {
    Tensor x = Tensor::empty(DType::Float32, {rows, 1024});
    float* p = x.mutable_data<float>();
    for (std::size_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>((i + t) % 977);
    state["model"]["layer" + std::to_string(t) + ".weight"] = x;
  }
  state["step"] = 1000;
  std::vector<double> ms;
  for (int it = 0; it < warmup + iters; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    dcp::save_split(state, dir, ranks);
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  const double bytes = static_cast<double>(rows) * 1024 * 4 * kTensors;
  std::printf("save_ms %.1f\nsave_GBs %.2f\n", median, bytes / median / 1e6);
  return 0;
}
