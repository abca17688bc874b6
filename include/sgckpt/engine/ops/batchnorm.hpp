// sgckpt/engine/ops/batchnorm.hpp: 2-D batch normalization over [N, C, HW], forward (training and
// eval) and backward, float32, as torch.nn.BatchNorm2d (affine, track_running_stats).
//
// Per channel c, over its n = N*HW values:
//   training: mean = Σx / n,  var = Σ(x - mean)² / n (biased: used to normalize),
//             invstd = 1 / sqrt(var + eps),
//             running_mean = momentum * mean + (1 - momentum) * running_mean,
//             running_var  = momentum * var * n / (n - 1) + (1 - momentum) * running_var (unbiased);
//   eval:     mean = running_mean, invstd = 1 / sqrt(running_var + eps);
//   both:     y = (x - mean) * invstd * gamma + beta.
// Statistics are accumulated in double. Channels are split over threads.
#pragma once

#include <cstdint>

#include "sgckpt/engine/math.hpp"
#include "sgckpt/engine/parallel.hpp"

namespace sgckpt::engine::ops {

namespace bn_detail {

// The sums below keep 8 partial sums in a fixed interleaved order (lane l takes elements
// i = l mod 8), folded pairwise at the end: one running sum is a chain of dependent double
// additions that ran at one element per add latency and made BatchNorm a tenth of a
// training step; independent lanes pipeline and vectorize. The order is fixed, so results
// are still deterministic.
inline constexpr int kLanes = 8;

inline double fold(const double (&acc)[kLanes]) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// acc[l] += Σ x[i] over the i of lane l.
inline void add_sum(double (&acc)[kLanes], const float* x, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(x[i + l]);
  for (int l = 0; i < n; ++i, ++l) acc[l] += static_cast<double>(x[i]);
}

// acc[l] += Σ (x[i] - mean)².
inline void add_squared_deviation(double (&acc)[kLanes], const float* x, double mean, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double d = static_cast<double>(x[i + l]) - mean;
      acc[l] += d * d;
    }
  for (int l = 0; i < n; ++i, ++l) {
    const double d = static_cast<double>(x[i]) - mean;
    acc[l] += d * d;
  }
}

// sum[l] += Σ dy[i],  dot[l] += Σ dy[i] * (x[i] - mean).
inline void add_dy_sums(double (&sum)[kLanes], double (&dot)[kLanes], const float* dy, const float* x,
                        double mean, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double g = dy[i + l];
      sum[l] += g;
      dot[l] += g * (static_cast<double>(x[i + l]) - mean);
    }
  for (int l = 0; i < n; ++i, ++l) {
    const double g = dy[i];
    sum[l] += g;
    dot[l] += g * (static_cast<double>(x[i]) - mean);
  }
}

}  // namespace bn_detail

// Training forward. Writes y, the batch statistics used (save_mean, save_invstd, [C], kept
// for backward) and updates running_mean / running_var when they are non-null.
inline void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                    float* running_var, const float* x, const float* gamma, const float* beta,
                                    std::int64_t N, std::int64_t C, std::int64_t HW, double eps,
                                    double momentum) {
  const std::int64_t n = N * HW;
  parallel_for(C, [&](std::int64_t c_begin, std::int64_t c_end, int) {
    for (std::int64_t c = c_begin; c < c_end; ++c) {
      // 1. mean, then the sum of squared deviations (two passes, in double)
      double acc[bn_detail::kLanes] = {};
      for (std::int64_t i = 0; i < N; ++i) bn_detail::add_sum(acc, x + (i * C + c) * HW, HW);
      const double mean = bn_detail::fold(acc) / static_cast<double>(n);
      double sq[bn_detail::kLanes] = {};
      for (std::int64_t i = 0; i < N; ++i)
        bn_detail::add_squared_deviation(sq, x + (i * C + c) * HW, mean, HW);
      const double var_sum = bn_detail::fold(sq);
      const double invstd = math::bn_invstd(var_sum / static_cast<double>(n), eps);
      save_mean[c] = static_cast<float>(mean);
      save_invstd[c] = static_cast<float>(invstd);
      // 2. running statistics (unbiased variance)
      if (running_mean != nullptr)
        running_mean[c] = static_cast<float>(math::bn_running_update(running_mean[c], mean, momentum));
      if (running_var != nullptr)
        running_var[c] = static_cast<float>(
            math::bn_running_update(running_var[c], var_sum / static_cast<double>(n - 1), momentum));
      // 3. normalize
      const float scale = math::bn_scale(gamma[c], save_invstd[c]);
      const float shift = math::bn_shift(beta[c], save_mean[c], scale);
      for (std::int64_t i = 0; i < N; ++i) {
        const float* xp = x + (i * C + c) * HW;
        float* yp = y + (i * C + c) * HW;
        for (std::int64_t j = 0; j < HW; ++j) yp[j] = math::bn_apply(xp[j], scale, shift);
      }
    }
  });
}

// 1 / sqrt(running_var + eps) per channel: the invstd of eval mode.
inline void batchnorm_eval_invstd(float* invstd, const float* running_var, std::int64_t C, double eps) {
  for (std::int64_t c = 0; c < C; ++c) invstd[c] = static_cast<float>(math::bn_invstd(running_var[c], eps));
}

// Eval forward with the running statistics (invstd from batchnorm_eval_invstd).
inline void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                                   const float* running_mean, const float* invstd, std::int64_t N,
                                   std::int64_t C, std::int64_t HW) {
  parallel_for(C, [&](std::int64_t c_begin, std::int64_t c_end, int) {
    for (std::int64_t c = c_begin; c < c_end; ++c) {
      const float scale = math::bn_scale(gamma[c], invstd[c]);
      const float shift = math::bn_shift(beta[c], running_mean[c], scale);
      for (std::int64_t i = 0; i < N; ++i) {
        const float* xp = x + (i * C + c) * HW;
        float* yp = y + (i * C + c) * HW;
        for (std::int64_t j = 0; j < HW; ++j) yp[j] = math::bn_apply(xp[j], scale, shift);
      }
    }
  });
}

// Backward, given dy and the forward's x and the mean / invstd it normalized with (batch
// statistics in training mode, running ones in eval mode). With xhat = (x - mean) * invstd:
//   dgamma += Σ dy * xhat,  dbeta += Σ dy                                 (accumulated)
//   training: dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * gamma
//             (the batch statistics depend on x too)
//   eval:     dx = dy * invstd * gamma
// dx is overwritten (skipped when null); dgamma / dbeta may be null.
inline void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                               const float* gamma, const float* mean, const float* invstd, std::int64_t N,
                               std::int64_t C, std::int64_t HW, bool training) {
  const double n = static_cast<double>(N * HW);
  parallel_for(C, [&](std::int64_t c_begin, std::int64_t c_end, int) {
    for (std::int64_t c = c_begin; c < c_end; ++c) {
      const double m = mean[c], is = invstd[c];
      // 1. Σ dy and Σ dy * (x - mean)
      double sums[bn_detail::kLanes] = {}, dots[bn_detail::kLanes] = {};
      for (std::int64_t i = 0; i < N; ++i)
        bn_detail::add_dy_sums(sums, dots, dy + (i * C + c) * HW, x + (i * C + c) * HW, m, HW);
      const double sum_dy = bn_detail::fold(sums), dot = bn_detail::fold(dots);
      if (dgamma != nullptr) dgamma[c] += static_cast<float>(dot * is);
      if (dbeta != nullptr) dbeta[c] += static_cast<float>(sum_dy);
      if (dx == nullptr) continue;
      // 2. dx
      for (std::int64_t i = 0; i < N; ++i) {
        const float* xp = x + (i * C + c) * HW;
        const float* dyp = dy + (i * C + c) * HW;
        float* dxp = dx + (i * C + c) * HW;
        if (training) {
          const double mean_dy = sum_dy / n, k = dot * is * is / n;
          for (std::int64_t j = 0; j < HW; ++j)
            dxp[j] = math::bn_train_dx(dyp[j], xp[j], m, is, gamma[c], mean_dy, k);
        } else {
          const float scale = math::bn_scale(gamma[c], invstd[c]);
          for (std::int64_t j = 0; j < HW; ++j) dxp[j] = dyp[j] * scale;
        }
      }
    }
  });
}

}  // namespace sgckpt::engine::ops
