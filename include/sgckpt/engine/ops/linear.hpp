// sgckpt/engine/ops/linear.hpp: fully connected layer, forward and backward, float32, as
// torch.nn.functional.linear: y[N,O] = x[N,I] · W[O,I]ᵀ + b[O].
//   dx  = dy · W        (overwritten; skipped when null)
//   dW += dyᵀ · x       (accumulated)
//   db += Σ_n dy[n, :]  (accumulated; skipped when null)
#pragma once

#include <cstdint>

#include "sgckpt/engine/ops/gemm.hpp"

namespace sgckpt::engine::ops {

inline void linear_forward(float* y, const float* x, const float* w, const float* b, std::int64_t N,
                           std::int64_t I, std::int64_t O) {
  sgemm(false, true, N, O, I, 1.0f, x, I, w, I, 0.0f, y, O);
  if (b != nullptr)
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t o = 0; o < O; ++o) y[n * O + o] += b[o];
}

inline void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                            std::int64_t N, std::int64_t I, std::int64_t O) {
  if (dx != nullptr) sgemm(false, false, N, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
  sgemm(true, false, O, I, N, 1.0f, dy, O, x, I, 1.0f, dw, I);
  if (db != nullptr)
    for (std::int64_t o = 0; o < O; ++o) {
      double acc = 0.0;
      for (std::int64_t n = 0; n < N; ++n) acc += dy[n * O + o];
      db[o] += static_cast<float>(acc);
    }
}

}  // namespace sgckpt::engine::ops
