// sgckpt/engine/nn/init.hpp: torch's default parameter initialization.
//
// Conv2d and Linear call kaiming_uniform_(weight, a=sqrt(5)), which draws from U(-b, b) with
//   gain = sqrt(2 / (1 + a^2)) = sqrt(1/3),  b = sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in),
// and their bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = in_channels * kernel area
// (Conv2d) or in_features (Linear). The distributions are torch's; the values are the engine
// generator's, not torch's.
#pragma once

#include <cmath>
#include <cstdint>

#include "sgckpt/engine/random.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::nn::init {

inline void uniform_(Tensor& t, float lo, float hi, Generator& gen) {
  float* p = t.data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = gen.uniform(lo, hi);
}

inline void constant_(Tensor& t, float value) {
  float* p = t.data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = value;
}

// kaiming_uniform_(t, a, mode='fan_in', nonlinearity='leaky_relu').
inline void kaiming_uniform_(Tensor& t, double a, std::int64_t fan_in, Generator& gen) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(fan_in));
  uniform_(t, static_cast<float>(-bound), static_cast<float>(bound), gen);
}

// The bias rule of Conv2d / Linear.reset_parameters.
inline void fan_in_uniform_(Tensor& t, std::int64_t fan_in, Generator& gen) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  uniform_(t, static_cast<float>(-bound), static_cast<float>(bound), gen);
}

}  // namespace sgckpt::engine::nn::init
