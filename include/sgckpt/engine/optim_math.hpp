// sgckpt/engine/optim_math.hpp: the per-element math of the optimizers and of loss scaling
// (SGD, Adam/AdamW, GradScaler), written once as SGCKPT_HD functions: the CPU loops
// (ops/sgd.hpp, optim/adam.hpp, optim/grad_scaler.hpp) and the fused CUDA kernels
// (ops/multi_tensor.hpp, kernels/) compute the same expressions, so their results agree bit for
// bit when the device code is compiled without contraction (-fmad=false). Pure scalar functions.
#pragma once

#include <math.h>  // fmaf/sqrtf/isfinite in the global namespace: the spelling nvcc's device code knows

#include <cstdint>

#include "sgckpt/detail/host_device.hpp"

namespace sgckpt::engine::optim_math {

// ---- SGD (torch 1.13's single-tensor algorithm) ----------------------------------------------
// d_p = (maximize ? -g : g) + weight_decay * p   (torch: d_p.add(param, alpha=weight_decay))
SGCKPT_HD inline float sgd_direction(float g, float p, float weight_decay, bool maximize) {
  const float d = maximize ? -g : g;
  return weight_decay != 0.0f ? fmaf(p, weight_decay, d) : d;
}
// buf = buf * momentum + (1 - dampening) * d_p   (buf.mul_(momentum).add_(d_p, alpha=1-dampening))
SGCKPT_HD inline float sgd_momentum(float buf, float d, float momentum, float one_minus_dampening) {
  return fmaf(d, one_minus_dampening, buf * momentum);
}
// nesterov: d_p + momentum * buf; else buf
SGCKPT_HD inline float sgd_step_dir(float d, float buf, float momentum, bool nesterov) {
  return nesterov ? fmaf(buf, momentum, d) : buf;
}
// param.add_(d_p, alpha=-lr)
SGCKPT_HD inline float sgd_apply(float p, float d, float neg_lr) {
  return fmaf(d, neg_lr, p);
}

// ---- Adam / AdamW (torch 1.13's single-tensor, non-capturable algorithm) ----------------------
// Adam: grad = (maximize ? -g : g) + weight_decay * p   (AdamW passes weight_decay 0 here)
SGCKPT_HD inline float adam_grad(float g, float p, float weight_decay, bool maximize) {
  const float d = maximize ? -g : g;
  return weight_decay != 0.0f ? fmaf(p, weight_decay, d) : d;
}
// AdamW: param.mul_(1 - lr * weight_decay)
SGCKPT_HD inline float adamw_decay(float p, float one_minus_lr_wd) {
  return p * one_minus_lr_wd;
}
// exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
SGCKPT_HD inline float adam_m(float m, float g, float beta1, float one_minus_beta1) {
  return fmaf(g, one_minus_beta1, m * beta1);
}
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
SGCKPT_HD inline float adam_v(float v, float g, float beta2, float one_minus_beta2) {
  return v * beta2 + one_minus_beta2 * g * g;
}
// denom = (v.sqrt() / sqrt(bias_correction2)).add_(eps); param.addcdiv_(m, denom, value=-step_size)
SGCKPT_HD inline float adam_apply(float p, float m, float v, float bc2_sqrt, float eps, float neg_step_size) {
  const float denom = sqrtf(v) / bc2_sqrt + eps;
  return p + neg_step_size * m / denom;
}

// ---- GradScaler ----------------------------------------------------------------------------------
// g *= inv_scale; returns whether the result is not finite (torch's found_inf).
SGCKPT_HD inline bool unscale_grad(float& g, float inv_scale) {
  g = g * inv_scale;
  return !isfinite(g);
}
// GradScaler.update(): back off after an overflow, grow after `interval` clean steps (a grown
// scale is kept only if finite). The CUDA backend runs it in one device thread.
SGCKPT_HD inline void scaler_update(float& scale, std::int64_t& tracker, bool found_inf, float growth,
                                    float backoff, std::int64_t interval) {
  if (found_inf) {
    scale = scale * backoff;
    tracker = 0;
    return;
  }
  const std::int64_t successful = tracker + 1;
  if (successful == interval) {
    const float grown = scale * growth;
    if (isfinite(grown)) scale = grown;
    tracker = 0;
  } else {
    tracker = successful;
  }
}

}  // namespace sgckpt::engine::optim_math
