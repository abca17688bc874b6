// sgckpt/engine/dist/collective.hpp: what data-parallel training asks of a communication library
// (docs/distributed.md).
//
// Four operations, the ones torch's DDP and DCP use: an in-place all-reduce (gradients, metric
// sums), a broadcast (rank 0's parameters at start), a barrier, and an all-gather of small
// byte blobs (shard metadata, a rank's generator state). Implementations: ThreadGroup
// (dist/threads.hpp, ranks as threads of one process, for tests), MpiCollective (dist/mpi.hpp,
// Open MPI), and later NCCL in the CUDA library. None of them is network code of ours.
//
// Every operation is collective: all ranks call it, in the same order, with the same sizes.
// A peer that does not arrive within the timeout ends the operation with an Error of kind
// Timeout on the ranks that wait (never a hang); the run then stops, as torch's process
// groups do after their timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::engine::dist {

enum class ReduceOp { Sum, Mean };  // Mean: the sum divided by the world size, as DDP averages

// torch's default process-group timeout is 30 minutes; a test sets seconds.
inline constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::minutes(30);

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const noexcept = 0;
  virtual int world_size() const noexcept = 0;
  virtual const char* backend() const noexcept = 0;  // "threads", "mpi", "nccl"

  // Elementwise over ranks, in place; every rank gets the same result.
  virtual void all_reduce(std::span<float> data, ReduceOp op) = 0;
  virtual void all_reduce(std::span<double> data, ReduceOp op) = 0;
  // Root's bytes into every rank's `data` (the same size on every rank).
  virtual void broadcast(std::span<std::byte> data, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's blob in rank order; sizes may differ between ranks.
  virtual std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> blob) = 0;
};

// A single process: every operation is the identity (for code written against Collective that
// also runs alone; the Trainer itself needs none: without distribute() it is one process).
class SingleProcess final : public Collective {
 public:
  int rank() const noexcept override { return 0; }
  int world_size() const noexcept override { return 1; }
  const char* backend() const noexcept override { return "single"; }
  void all_reduce(std::span<float>, ReduceOp) override {}
  void all_reduce(std::span<double>, ReduceOp) override {}
  void broadcast(std::span<std::byte>, int root) override { check_root(root); }
  void barrier() override {}
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> blob) override {
    return {std::vector<std::byte>(blob.begin(), blob.end())};
  }

 private:
  static void check_root(int root) {
    if (root != 0)
      throw Error(ErrorKind::Usage, "broadcast from rank " + std::to_string(root) + " in a world of 1");
  }
};

// The timeout message every implementation gives: which operation, which rank waited, how long.
inline Error timeout_error(int rank, std::string_view operation, std::chrono::milliseconds timeout,
                           std::string_view who) {
  return Error(ErrorKind::Timeout, "rank " + std::to_string(rank) + ": " + std::string(operation) +
                                       " did not complete within " + std::to_string(timeout.count()) +
                                       " ms (" + std::string(who) + "); stopping instead of waiting forever");
}

}  // namespace sgckpt::engine::dist
