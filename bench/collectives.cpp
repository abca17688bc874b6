// bench/collectives: the all-reduce a data-parallel step waits for, on MPI (run under mpirun;
// bench/collectives.sh runs it next to torch.distributed's gloo backend and prints the ratio).
//
// The buffer is a ResNet18-CIFAR gradient (11,173,962 floats, 44.7 MB) averaged across ranks,
// as DDP averages gradients after backward. Times are medians over iterations, each started
// after a barrier; rank 0 prints them. Bus bandwidth is NCCL's measure: algorithm bandwidth
// (bytes / time) times 2 (n - 1) / n, what each link carries in a ring all-reduce.
//
// Usage: mpirun -np N collectives [--floats N] [--iters N] [--warmup N]
// Prints: "allreduce_ms <median>", "busbw_GBs <bus bandwidth>" (rank 0).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sgckpt/engine/dist/mpi.hpp"

using namespace sgckpt::engine::dist;

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);
  std::size_t floats = 11173962;
  int iters = 20, warmup = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--floats") floats = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--iters") iters = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--warmup") warmup = std::max(0, std::atoi(argv[i + 1]));
  }
  MpiCollective comm(session);
  std::vector<float> grad(floats);
  for (std::size_t i = 0; i < floats; ++i) grad[i] = static_cast<float>(i % 1000) * 1e-3f;
  std::vector<double> ms;
  for (int it = 0; it < warmup + iters; ++it) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    comm.all_reduce(std::span<float>(grad), ReduceOp::Mean);
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  const double n = comm.world_size();
  const double busbw = static_cast<double>(floats * sizeof(float)) / (median * 1e-3) * 2 * (n - 1) / n / 1e9;
  if (comm.rank() == 0) std::printf("allreduce_ms %.3f\nbusbw_GBs %.3f\n", median, busbw);
  return 0;
}
