// sgckpt/engine/ops/activation.hpp: ReLU, forward and backward, float32, elementwise.
#pragma once

#include <cstdint>

#include "sgckpt/engine/math.hpp"

namespace sgckpt::engine::ops {

// y = max(x, 0). y may be x (in place).
inline void relu_forward(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = math::relu(x[i]);
}

// dx = dy where y > 0, else 0, from the forward's output y (which is all the mask needs).
// dx may be dy (in place).
inline void relu_backward(float* dx, const float* dy, const float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) dx[i] = math::relu_backward(y[i], dy[i]);
}

}  // namespace sgckpt::engine::ops
