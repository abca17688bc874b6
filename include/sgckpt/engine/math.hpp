// sgckpt/engine/math.hpp: the per-element math of the engine's ops, written once as SGCKPT_HD
// functions so that the CPU loops (ops/*.hpp) and the CUDA kernels (kernels/*.cu) compute
// exactly the same expressions. Everything here is a pure function of scalars.
#pragma once

#include <cmath>
#include <cstdint>

#include "sgckpt/detail/host_device.hpp"

namespace sgckpt::engine::math {

// ---- ReLU ------------------------------------------------------------------------------
SGCKPT_HD inline float relu(float x) {
  return x > 0.0f ? x : 0.0f;
}
// dL/dx given the ReLU's output y and dL/dy (torch: grad where result > 0, else 0).
SGCKPT_HD inline float relu_backward(float y, float dy) {
  return y > 0.0f ? dy : 0.0f;
}

// ---- BatchNorm ---------------------------------------------------------------------------
// 1 / sqrt(var + eps), in double as torch's CPU kernel does.
SGCKPT_HD inline double bn_invstd(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}

// y = x * scale + shift with scale = gamma * invstd and shift = beta - mean * scale (torch's
// fused form of (x - mean) * invstd * gamma + beta).
SGCKPT_HD inline float bn_scale(float gamma, float invstd) {
  return gamma * invstd;
}
SGCKPT_HD inline float bn_shift(float beta, float mean, float scale) {
  return beta - mean * scale;
}
SGCKPT_HD inline float bn_apply(float x, float scale, float shift) {
  return x * scale + shift;
}

// Running statistics: torch's  running = momentum * batch + (1 - momentum) * running,
// with the unbiased variance var * n / (n - 1) for running_var.
SGCKPT_HD inline double bn_running_update(double running, double batch, double momentum) {
  return momentum * batch + (1.0 - momentum) * running;
}

// dL/dx of training-mode BatchNorm for one element. With n elements per channel,
//   mean_dy = sum(dy) / n,  k = sum(dy * (x - mean)) * invstd^2 / n,
//   dx = (dy - mean_dy - (x - mean) * k) * invstd * gamma.
SGCKPT_HD inline float bn_train_dx(float dy, float x, double mean, double invstd, double gamma,
                                   double mean_dy, double k) {
  return static_cast<float>((dy - mean_dy - (x - mean) * k) * invstd * gamma);
}

// ---- Softmax cross-entropy ------------------------------------------------------------
// Target distribution with label smoothing eps over C classes: (1 - eps) * onehot + eps / C.
SGCKPT_HD inline double smoothed_target(bool is_label, double eps, double num_classes) {
  return (is_label ? 1.0 - eps : 0.0) + eps / num_classes;
}
// d(mean loss)/d(logit) = (softmax - target) / N, times the upstream gradient.
SGCKPT_HD inline float ce_dlogit(double prob, double target, double scale) {
  return static_cast<float>((prob - target) * scale);
}

// ---- Counter-based random numbers ---------------------------------------------------------
// SplitMix64's finalizer: a bijective 64-bit mix with good avalanche.
SGCKPT_HD inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// The n-th 64-bit number of the stream with this key (key = mix64(seed)). Any thread or
// CUDA thread can compute draw n directly, without a shared state.
SGCKPT_HD inline std::uint64_t random_u64(std::uint64_t key, std::uint64_t n) {
  return mix64(key + (n + 1) * 0x9E3779B97F4A7C15ull);
}
// Uniform float in [0, 1) from the top 24 bits.
SGCKPT_HD inline float u64_to_unit_float(std::uint64_t r) {
  return static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
}
// Uniform double in [0, 1) from the top 53 bits.
SGCKPT_HD inline double u64_to_unit_double(std::uint64_t r) {
  return static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace sgckpt::engine::math
