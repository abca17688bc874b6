// Test driver: each rank's indices from engine::dist::DistributedSampler, for
// tests/python/test_dist_sampler.py to compare with torch's DistributedSampler.
//
// Usage: dist_sampler N REPLICAS SEED EPOCH SHUFFLE(0|1) DROP_LAST(0|1)
// Prints one line per rank: "rank R: i i i ...".
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sgckpt/engine/dist/sampler.hpp"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: dist_sampler N REPLICAS SEED EPOCH SHUFFLE DROP_LAST\n");
    return 2;
  }
  using sgckpt::engine::dist::DistributedSampler;
  const std::int64_t n = std::atoll(argv[1]);
  const int replicas = std::atoi(argv[2]);
  try {
    for (int r = 0; r < replicas; ++r) {
      const DistributedSampler s(n, {.num_replicas = replicas,
                                     .rank = r,
                                     .shuffle = std::atoi(argv[5]) != 0,
                                     .seed = std::strtoull(argv[3], nullptr, 10),
                                     .drop_last = std::atoi(argv[6]) != 0});
      std::string line = "rank " + std::to_string(r) + ":";
      for (const auto i : s.indices(std::atoll(argv[4]))) line += " " + std::to_string(i);
      std::puts(line.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_sampler: %s\n", e.what());
    return 1;
  }
  return 0;
}
