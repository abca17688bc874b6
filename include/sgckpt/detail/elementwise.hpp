// sgckpt/detail/elementwise.hpp: the per-element math of EMA and weight averaging, written once
// for the host loops (ema.hpp, averaging.hpp) and the CUDA kernels (kernels/ema_average.cu).
//
// Every function here is SGCKPT_HD: plain inline on the host, __host__ __device__ under nvcc,
// so the CPU loop and the GPU kernel compute bit-identical results (docs/engine.md, "Bit parity").
// Only scalar math lives here; loops, threads, dtype dispatch and vectorization stay with the
// callers.
#pragma once

#include <math.h>  // fma/fmaf in the global namespace: the spelling nvcc's device code knows

#include "sgckpt/detail/host_device.hpp"

namespace sgckpt::detail::ew {

// ---- EMA: ema = d * ema + (1 - d) * w -----------------------------------------------------
//
// The form is torch's `e.mul_(d); e.add_(w, alpha=1-d)` (what SG's per-tensor loop, NeMo and
// timm's fallback run, and what `_foreach_mul_` + `_foreach_add_` compute): the product e*d
// is rounded to the tensor's type when mul_ stores it, then add_ evaluates t + alpha*w with
// one fused multiply-add (ATen's vectorized add kernel is `vec::fmadd(b, alpha, a)`; on CUDA
// nvcc contracts `a + alpha * b` to an FMA). The scalars are torch's too: d and alpha = 1 - d
// are computed in double by Python, then cast to the tensor's type. Checked bit for bit
// against torch 1.13 (AVX2 CPU build) in tests/ckpt/test_ema.cpp.
//
// Not chosen:
//  - the lerp form e + (1-d)*(w-e) (torch's _foreach_lerp_ in torch >= 2.0; 1.13 has none):
//    one op fewer, but differs from torch 1.13 in about 30% of the elements;
//  - SG's literal `ema * d + (1 - d) * model`: three roundings, not two; it differs from the
//    fused form in the last bit of some elements (and costs a temporary per tensor in torch).

// The two coefficients of an update, each rounded once to the tensor's element type.
struct EmaCoefficients {
  float d32, a32;   // float32, float16, bfloat16 tensors (half types compute in float)
  double d64, a64;  // float64 tensors
};

// Host side: from the decay in double (d in [0, 1]).
inline EmaCoefficients ema_coefficients(double decay) {
  const double a = 1.0 - decay;
  return {static_cast<float>(decay), static_cast<float>(a), decay, a};
}

SGCKPT_HD inline float ema_blend(float e, float w, float d, float a) {
  return fmaf(w, a, e * d);
}
SGCKPT_HD inline double ema_blend(double e, double w, double d, double a) {
  return fma(w, a, e * d);
}

// ---- Averaging: the plain mean over k snapshots -------------------------------------------
//
// Each element is summed in double over the snapshots (exact for up to 2^29 float32 terms of
// one binade, and far better than SG's float32 running mean (avg*k + s)/(k+1), which rounds
// twice per snapshot), then divided once and rounded once to the element type.

SGCKPT_HD inline double mean_accumulate(double sum, double x) {
  return sum + x;
}
SGCKPT_HD inline double mean_finish(double sum, double count) {
  return sum / count;
}

}  // namespace sgckpt::detail::ew
