// sgckpt/engine/dist/launch.hpp: who this process is in a distributed run, from the launcher's
// environment, as torch reads it.
//
//   torchrun / torch.distributed.launch: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   Open MPI's mpirun:                   OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK
//   MPICH / Hydra:                       PMI_RANK, PMI_SIZE, MPI_LOCALRANKID
//   none of them:                        a single process (rank 0 of 1)
//
// torchrun's variables come first (torch's env:// rendezvous reads them even under mpirun).
// When some are set and others are not, the error names the missing one: a half-set
// environment is a broken launch script, not a single-process run.
#pragma once

#include <charconv>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "sgckpt/core/error.hpp"

namespace sgckpt::engine::dist {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;  // torchrun only (the NCCL backend's rendezvous)
  int master_port = 0;
  std::string launcher = "none";  // "torchrun", "openmpi", "mpich", "none"
};

// Reads a variable; a function so that tests can pass an environment of their own.
using EnvLookup = std::function<const char*(const char*)>;

namespace launch_detail {

inline std::optional<std::string> get(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

inline int integer(const EnvLookup& env, const char* name, const std::string& launcher, int lo, int hi) {
  const auto v = get(env, name);
  if (!v)
    throw Error(ErrorKind::Usage, launcher + " launch: " + name +
                                      " is not set (the environment sets some of the " +
                                      "launcher's variables but not this one)");
  int x = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
  if (ec != std::errc() || end != v->data() + v->size() || x < lo || x > hi)
    throw Error(ErrorKind::Usage, launcher + " launch: " + name + "='" + *v + "' is not an integer in [" +
                                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

inline LaunchInfo ranks(const EnvLookup& env, const std::string& launcher, const char* rank, const char* size,
                        const char* local) {
  LaunchInfo info;
  info.launcher = launcher;
  info.world_size = integer(env, size, launcher, 1, 1 << 20);
  info.rank = integer(env, rank, launcher, 0, info.world_size - 1);
  info.local_rank = integer(env, local, launcher, 0, info.world_size - 1);
  return info;
}

}  // namespace launch_detail

inline LaunchInfo launch_info_from_env(const EnvLookup& env = [](const char* n) { return std::getenv(n); }) {
  using launch_detail::get;
  if (get(env, "RANK") || get(env, "WORLD_SIZE") || get(env, "LOCAL_RANK") || get(env, "MASTER_ADDR") ||
      get(env, "MASTER_PORT")) {
    LaunchInfo info = launch_detail::ranks(env, "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK");
    const auto addr = get(env, "MASTER_ADDR");
    if (!addr || addr->empty())
      throw Error(ErrorKind::Usage,
                  "torchrun launch: MASTER_ADDR is not set (the environment sets some of the "
                  "launcher's variables but not this one)");
    info.master_addr = *addr;
    info.master_port = launch_detail::integer(env, "MASTER_PORT", "torchrun", 1, 65535);
    return info;
  }
  if (get(env, "OMPI_COMM_WORLD_RANK") || get(env, "OMPI_COMM_WORLD_SIZE"))
    return launch_detail::ranks(env, "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                "OMPI_COMM_WORLD_LOCAL_RANK");
  if (get(env, "PMI_RANK") || get(env, "PMI_SIZE"))
    return launch_detail::ranks(env, "mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID");
  return {};
}

}  // namespace sgckpt::engine::dist
