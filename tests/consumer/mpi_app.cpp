// Links the engine's MPI collective through sgckpt::engine_mpi, as a user's data-parallel
// program would (built by the consumer test where sgckpt has MPI; run it under mpirun).
#include <cstdio>
#include <vector>

#include <sgckpt/engine/dist/mpi.hpp>

int main(int argc, char** argv) {
  sgckpt::engine::dist::MpiSession session(&argc, &argv);
  sgckpt::engine::dist::MpiCollective comm(session);
  std::vector<float> x(4, static_cast<float>(comm.rank()));
  comm.all_reduce(std::span<float>(x), sgckpt::engine::dist::ReduceOp::Sum);
  std::printf("rank %d of %d: %g\n", comm.rank(), comm.world_size(), static_cast<double>(x[0]));
  return 0;
}
