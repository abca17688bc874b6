// sgckpt/engine/dist/sampler.hpp: each rank's share of an epoch, exactly as torch's
// torch.utils.data.DistributedSampler gives it (same seed and epoch: the same indices), so a
// run can move between torch and this engine with the same data order.
//
// torch's rule: the epoch's order is torch.randperm(n) drawn from a torch.Generator seeded with
// seed + epoch (or 0..n-1 without shuffling); without drop_last it is padded by repeating its
// start up to a multiple of the world size, with drop_last cut down to one; rank r takes every
// world_size-th index from r.
#pragma once

#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::engine::dist {

// torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU: a Fisher-Yates
// pass drawing 32-bit numbers from MT19937 seeded with the seed's low 32 bits (torch's
// CPUGeneratorImpl), z = draw % (n - i). torch draws 64-bit numbers from n >= 2^32 / 20 on;
// such sizes are refused rather than silently differing.
inline std::vector<std::int64_t> torch_randperm(std::int64_t n, std::uint64_t seed) {
  if (n < 0) throw Error(ErrorKind::Usage, "randperm of a negative size");
  if (n >= static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max() / 20))
    throw Error(ErrorKind::Limit, "randperm of " + std::to_string(n) +
                                      " elements: torch draws differently from 214748364 elements on");
  std::vector<std::int64_t> r(static_cast<std::size_t>(n));
  std::iota(r.begin(), r.end(), std::int64_t{0});
  std::mt19937 gen(static_cast<std::uint32_t>(seed));
  for (std::int64_t i = 0; i + 1 < n; ++i) {
    const std::int64_t z = static_cast<std::int64_t>(gen()) % (n - i);
    std::swap(r[static_cast<std::size_t>(i)], r[static_cast<std::size_t>(z + i)]);
  }
  return r;
}

class DistributedSampler {
 public:
  struct Options {
    int num_replicas = 1;
    int rank = 0;
    bool shuffle = true;
    std::uint64_t seed = 0;
    bool drop_last = false;
  };

  DistributedSampler(std::int64_t dataset_size, Options o) : n_(dataset_size), o_(o) {
    if (o.num_replicas < 1 || o.rank < 0 || o.rank >= o.num_replicas)
      throw Error(ErrorKind::Usage, "DistributedSampler: rank " + std::to_string(o.rank) + " of " +
                                        std::to_string(o.num_replicas) + " replicas");
    if (n_ <= 0) throw Error(ErrorKind::Usage, "DistributedSampler: the dataset is empty");
    const std::int64_t r = o.num_replicas;
    // torch: ceil((n - r) / r) with drop_last and a remainder, else ceil(n / r).
    num_samples_ = o.drop_last && n_ % r != 0 ? n_ / r : (n_ + r - 1) / r;
  }

  std::int64_t num_samples() const noexcept { return num_samples_; }  // this rank's share per epoch
  std::int64_t total_size() const noexcept { return num_samples_ * o_.num_replicas; }

  // This rank's indices for `epoch` (torch's set_epoch(epoch) then iter()).
  std::vector<std::int64_t> indices(std::int64_t epoch) const {
    std::vector<std::int64_t> all;
    if (o_.shuffle) {
      all = torch_randperm(n_, o_.seed + static_cast<std::uint64_t>(epoch));
    } else {
      all.resize(static_cast<std::size_t>(n_));
      std::iota(all.begin(), all.end(), std::int64_t{0});
    }
    const auto total = static_cast<std::size_t>(total_size());
    all.reserve(total);
    for (std::size_t i = 0; all.size() < total; ++i) all.push_back(all[i]);  // padding repeats the start
    std::vector<std::int64_t> mine;
    mine.reserve(static_cast<std::size_t>(num_samples_));
    for (std::size_t i = static_cast<std::size_t>(o_.rank); i < total;
         i += static_cast<std::size_t>(o_.num_replicas))
      mine.push_back(all[i]);
    return mine;
  }

 private:
  std::int64_t n_;
  Options o_;
  std::int64_t num_samples_ = 0;
};

}  // namespace sgckpt::engine::dist
