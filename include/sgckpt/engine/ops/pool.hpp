// sgckpt/engine/ops/pool.hpp: global average pooling (AdaptiveAvgPool2d(1) + flatten), float32.
//
// Forward: y[i] = mean of x[i, :] over the HW pixels of each of the NC (image, channel) rows.
// Backward: every pixel of row i receives dy[i] / HW.
#pragma once

#include <cstdint>

namespace sgckpt::engine::ops {

// y[NC] from x[NC, HW].
inline void global_avgpool_forward(float* y, const float* x, std::int64_t NC, std::int64_t HW) {
  for (std::int64_t i = 0; i < NC; ++i) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < HW; ++j) sum += x[i * HW + j];
    y[i] = static_cast<float>(sum / static_cast<double>(HW));
  }
}

// dx[NC, HW] (overwritten) from dy[NC].
inline void global_avgpool_backward(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) {
  for (std::int64_t i = 0; i < NC; ++i) {
    const float g = dy[i] / static_cast<float>(HW);
    for (std::int64_t j = 0; j < HW; ++j) dx[i * HW + j] = g;
  }
}

}  // namespace sgckpt::engine::ops
