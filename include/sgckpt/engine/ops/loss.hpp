// sgckpt/engine/ops/loss.hpp: softmax cross-entropy with label smoothing, mean over the batch,
// as torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps) (no class weights,
// no ignore_index):
//   logp[i,c] = logits[i,c] - logsumexp(logits[i,:])
//   loss      = mean_i [ (1 - eps) * (-logp[i, y_i]) + eps / C * Σ_c (-logp[i,c]) ]
// which is the cross-entropy against the target q = (1 - eps) * onehot(y) + eps / C. Hence
//   dloss/dlogits[i,c] = (softmax[i,c] - q[i,c]) / N.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "sgckpt/engine/math.hpp"

namespace sgckpt::engine::ops {

// Writes probs[N,C] = softmax(logits) (for backward) and returns the mean loss. The labels
// must lie in [0, C) (the caller checks).
inline float cross_entropy_forward(float* probs, const float* logits, const std::int64_t* labels,
                                   std::int64_t N, std::int64_t C, float label_smoothing) {
  const double eps = label_smoothing;
  double total = 0.0;
  for (std::int64_t i = 0; i < N; ++i) {
    const float* l = logits + i * C;
    const float mx = *std::max_element(l, l + C);
    double sum_exp = 0.0;
    for (std::int64_t c = 0; c < C; ++c) sum_exp += std::exp(static_cast<double>(l[c]) - mx);
    const double lse = mx + std::log(sum_exp);
    double sum_logp = 0.0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double logp = l[c] - lse;
      sum_logp += logp;
      probs[i * C + c] = static_cast<float>(std::exp(logp));
    }
    const double logp_label = l[labels[i]] - lse;
    total += -(1.0 - eps) * logp_label - eps / static_cast<double>(C) * sum_logp;
  }
  return static_cast<float>(total / static_cast<double>(N));
}

// dlogits[N,C] = dloss * (probs - q) / N. dlogits may be probs (in place).
inline void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* labels,
                                   std::int64_t N, std::int64_t C, float label_smoothing, float dloss) {
  const double scale = static_cast<double>(dloss) / static_cast<double>(N);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t c = 0; c < C; ++c) {
      const double q = math::smoothed_target(c == labels[i], label_smoothing, static_cast<double>(C));
      dlogits[i * C + c] = math::ce_dlogit(probs[i * C + c], q, scale);
    }
}

}  // namespace sgckpt::engine::ops
