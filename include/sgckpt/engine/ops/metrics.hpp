// sgckpt/engine/ops/metrics.hpp: top-k accuracy counts.
//
// Sample i counts as correct at k when its label is among the k highest logits: fewer than
// k classes rank above it. A class ranks above the label when its logit is larger, or equal
// with a smaller class index (torch.topk's order for ties on CPU is unspecified; this rule
// is deterministic). Counts (not fractions) so that batches add up exactly.
#pragma once

#include <cstdint>

namespace sgckpt::engine::ops {

inline std::int64_t topk_correct(const float* logits, const std::int64_t* labels, std::int64_t N,
                                 std::int64_t C, std::int64_t k) {
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    const float* l = logits + i * C;
    const std::int64_t y = labels[i];
    if (y < 0 || y >= C) continue;
    std::int64_t above = 0;
    for (std::int64_t c = 0; c < C; ++c) above += (l[c] > l[y]) || (l[c] == l[y] && c < y);
    correct += above < k;
  }
  return correct;
}

}  // namespace sgckpt::engine::ops
