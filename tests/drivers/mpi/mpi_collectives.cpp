// Test driver, run by tests/python/test_mpi.py under `mpirun -np 2`: the MPI Collective
// (include/sgckpt/engine/dist/mpi.hpp) on real Open MPI processes.
//
// Usage: mpi_collectives check          every operation, results compared with the in-process
//                                       ThreadGroup's (the same bits); prints "ok rank R"
//        mpi_collectives hang SECONDS   rank 1 stops answering; rank 0's all_reduce must end
//                                       with a Timeout after SECONDS and abort the job
//        mpi_collectives kill SECONDS   rank 1 dies (SIGKILL) before the all_reduce
//        mpi_collectives dcp DIR GEN    both ranks save one DCP checkpoint into DIR (io/dcp):
//                                       w (7x3 float32, rows split 4/3), v (5 int64, split 3/2),
//                                       b (3 floats, held by both) and step; values from GEN
//        mpi_collectives dcp-kill DIR GEN   the same, but rank 1 dies (SIGKILL) after writing
//                                       its shards, before rank 0 publishes the checkpoint
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/engine/dist/dcp_group.hpp"
#include "sgckpt/engine/dist/launch.hpp"
#include "sgckpt/engine/dist/mpi.hpp"
#include "sgckpt/engine/dist/threads.hpp"

using namespace sgckpt;
using namespace sgckpt::engine::dist;

namespace {

std::vector<float> gradient_of(int rank, std::size_t n) {
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i)
    g[i] = static_cast<float>((i * 2654435761u + rank * 97u) % 1000) * 1e-3f - 0.5f;
  return g;
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorKind::Mismatch, what);
}

// The MPI results against ThreadGroup's on the same inputs (both ranks' inputs are known here).
void check(Collective& comm) {
  const int rank = comm.rank();
  const std::size_t n = 1 << 20;
  std::vector<float> mean = gradient_of(rank, n);
  comm.all_reduce(std::span<float>(mean), ReduceOp::Mean);
  auto reference = ThreadGroup::create(comm.world_size());
  std::vector<std::vector<float>> ref(static_cast<std::size_t>(comm.world_size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < comm.world_size(); ++r)
    threads.emplace_back([&, r] {
      ref[r] = gradient_of(r, n);
      reference[r]->all_reduce(std::span<float>(ref[r]), ReduceOp::Mean);
    });
  for (auto& t : threads) t.join();
  expect(std::memcmp(mean.data(), ref[0].data(), n * sizeof(float)) == 0,
         "all_reduce mean differs from ThreadGroup's");

  std::vector<double> sums{1.0 * rank, 0.25};
  comm.all_reduce(std::span<double>(sums), ReduceOp::Sum);
  expect(sums[0] == comm.world_size() * (comm.world_size() - 1) / 2.0 && sums[1] == 0.25 * comm.world_size(),
         "all_reduce of doubles");

  std::vector<std::byte> bytes(1000, std::byte(rank == 1 ? 42 : 0));
  comm.broadcast(bytes, 1);
  expect(bytes == std::vector<std::byte>(1000, std::byte(42)), "broadcast from rank 1");
  comm.barrier();
  const std::vector<std::byte> mine(static_cast<std::size_t>(rank * 3 + 1), std::byte(rank + 1));
  const auto all = comm.all_gather(mine);
  expect(all.size() == static_cast<std::size_t>(comm.world_size()), "all_gather count");
  for (int r = 0; r < comm.world_size(); ++r)
    expect(all[r] == std::vector<std::byte>(static_cast<std::size_t>(r * 3 + 1), std::byte(r + 1)),
           "all_gather blob");

  const LaunchInfo launch = launch_info_from_env();
  expect(launch.launcher == "openmpi" && launch.rank == rank && launch.world_size == comm.world_size(),
         "the launch environment disagrees with MPI");
  std::printf("ok rank %d\n", rank);
}

// The DCP save of `dcp` / `dcp-kill` (tests/python/test_mpi.py checks it with torch 2.x).
void save_dcp(Collective& comm, const std::string& dir, int gen, bool kill) {
  const int rank = comm.rank();
  std::vector<float> w(21);
  for (int i = 0; i < 21; ++i) w[static_cast<std::size_t>(i)] = static_cast<float>(i + 1000 * gen);
  std::vector<std::int64_t> v(5);
  for (int i = 0; i < 5; ++i) v[static_cast<std::size_t>(i)] = i + gen;
  const auto [wb, we] = dcp::row_block(7, comm.world_size(), rank);
  const auto [vb, ve] = dcp::row_block(5, comm.world_size(), rank);
  Value state = Value::make_dict();
  state["w"] =
      Tensor::from_values(DType::Float32, {we - wb, 3},
                          std::span<const float>(w.data() + wb * 3, static_cast<std::size_t>((we - wb) * 3)));
  state["v"] =
      Tensor::from_values(DType::Int64, {ve - vb},
                          std::span<const std::int64_t>(v.data() + vb, static_cast<std::size_t>(ve - vb)));
  std::vector<float> b(3, static_cast<float>(gen));
  state["b"] = Tensor::from_values(DType::Float32, {3}, std::span<const float>(b));
  state["step"] = gen;
  dcp::Group group = dcp_group(comm);
  if (kill && rank == 1) {  // dies at the second exchange: its shards are written, nothing is published
    auto calls = std::make_shared<int>(0);
    group.all_gather = [inner = group.all_gather, calls](std::string s) {
      if (++*calls == 2) ::raise(SIGKILL);
      return inner(std::move(s));
    };
  }
  dcp::save(state, dir, group, {{"w", {{7, 3}, {wb, 0}}}, {"v", {{5}, {vb}}}});
  std::printf("saved rank %d\n", rank);
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "check";
  const int seconds = argc > 2 && mode.rfind("dcp", 0) != 0 ? std::atoi(argv[2]) : 5;
  MpiCollective comm(session, {.timeout = std::chrono::seconds(seconds)});
  try {
    if (mode == "check") {
      check(comm);
    } else if (mode == "dcp" || mode == "dcp-kill") {
      if (argc < 4) throw Error("usage: mpi_collectives dcp|dcp-kill DIR GEN");
      save_dcp(comm, argv[2], std::atoi(argv[3]), mode == "dcp-kill");
    } else {
      if (comm.rank() == 1) {
        if (mode == "kill") ::raise(SIGKILL);
        std::this_thread::sleep_for(std::chrono::seconds(10 * seconds));  // hung: alive, silent
      }
      std::vector<float> g(1000, 1.0f);
      comm.all_reduce(std::span<float>(g), ReduceOp::Mean);
      std::printf("rank %d: the all_reduce returned although a peer is gone\n", comm.rank());
      return 1;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "mpi_collectives: %s error: %s\n", kind_name(e.kind()), e.what());
    std::fflush(stderr);
    MpiSession::abort(3);
  }
  return 0;
}
