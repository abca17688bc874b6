// sgckpt/engine/ops/elementwise.hpp: the residual add, float32.
//
// Forward: out = a + b. Backward: the gradient of a sum flows unchanged to both inputs,
// da = db = dout; where two paths of the graph meet again (a block's input feeds both conv1
// and the shortcut), their gradients are summed with accumulate().
#pragma once

#include <cstdint>

namespace sgckpt::engine::ops {

// out = a + b; out may be a or b.
inline void add_forward(float* out, const float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// The backward of add_forward: da += dout and db += dout (either may be null).
inline void add_backward(float* da, float* db, const float* dout, std::int64_t n) {
  if (da != nullptr)
    for (std::int64_t i = 0; i < n; ++i) da[i] += dout[i];
  if (db != nullptr)
    for (std::int64_t i = 0; i < n; ++i) db[i] += dout[i];
}

// dst += src.
inline void accumulate(float* dst, const float* src, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace sgckpt::engine::ops
