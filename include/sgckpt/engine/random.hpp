// sgckpt/engine/random.hpp: the engine's random number generator.
//
// Counter-based: draw n of a stream is a pure function of (seed, n) (math::random_u64), so the
// whole state is two integers, {seed, offset}, trivially saved in a checkpoint and restored
// bit-exactly, and a CUDA kernel can compute draw offset + i in thread i. Streams of different
// seeds are unrelated (the seed is hashed into the key).
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "sgckpt/engine/math.hpp"

namespace sgckpt::engine {

class Generator {
 public:
  struct State {
    std::uint64_t seed = 0;
    std::uint64_t offset = 0;  // number of 64-bit draws consumed so far
    friend bool operator==(const State&, const State&) = default;
  };

  explicit Generator(std::uint64_t seed = 0) { manual_seed(seed); }

  void manual_seed(std::uint64_t seed) {
    state_ = {seed, 0};
    key_ = math::mix64(seed);
  }
  State state() const noexcept { return state_; }
  void set_state(const State& s) {
    state_ = s;
    key_ = math::mix64(s.seed);
  }
  std::uint64_t seed() const noexcept { return state_.seed; }
  std::uint64_t key() const noexcept { return key_; }

  // Reserves n consecutive draws and returns the first one's index (for kernels that compute
  // draws offset..offset+n-1 in parallel).
  std::uint64_t reserve(std::uint64_t n) {
    const std::uint64_t first = state_.offset;
    state_.offset += n;
    return first;
  }

  std::uint64_t next_u64() { return math::random_u64(key_, state_.offset++); }
  // Uniform in [0, 1).
  float uniform() { return math::u64_to_unit_float(next_u64()); }
  // Uniform in [lo, hi), computed as torch does: lo + (hi - lo) * u.
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal (Box-Muller; one value per two draws).
  double normal() {
    const double u1 = 1.0 - math::u64_to_unit_double(next_u64());  // (0, 1]
    const double u2 = math::u64_to_unit_double(next_u64());
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  // Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject). n > 0.
  std::uint64_t below(std::uint64_t n) {
    for (;;) {
      const unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
      const auto low = static_cast<std::uint64_t>(m);
      if (low >= n || low >= (0 - n) % n) return static_cast<std::uint64_t>(m >> 64);
    }
  }

 private:
  State state_;
  std::uint64_t key_ = 0;
};

}  // namespace sgckpt::engine
