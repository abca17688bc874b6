// kernels/loss.cu: softmax cross-entropy with label smoothing (the mean loss written to device
// memory, or returned to the host) and top-k correct counts, as engine/ops/loss.hpp and ops/metrics.hpp
// compute them: one thread per sample runs the CPU's row loop; the batch sums run in one thread in the CPU's
// order (N is a batch size: a few hundred terms).
#include <cmath>

#include "context.hpp"
#include "sgckpt/engine/math.hpp"

namespace sgckpt::cuda::detail {

namespace math = ::sgckpt::engine::math;

namespace {

__global__ void ce_rows_kernel(double* row_loss, float* probs, const float* logits,
                               const std::int64_t* labels, std::int64_t N, std::int64_t C, double eps) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float* l = logits + i * C;
  float mx = l[0];
  for (std::int64_t c = 1; c < C; ++c) mx = l[c] > mx ? l[c] : mx;  // std::max_element: first maximum
  double sum_exp = 0.0;
  for (std::int64_t c = 0; c < C; ++c) sum_exp += exp(static_cast<double>(l[c]) - mx);
  const double lse = mx + log(sum_exp);
  double sum_logp = 0.0;
  for (std::int64_t c = 0; c < C; ++c) {
    const double logp = l[c] - lse;
    sum_logp += logp;
    probs[i * C + c] = static_cast<float>(exp(logp));
  }
  const double logp_label = l[labels[i]] - lse;
  row_loss[i] = -(1.0 - eps) * logp_label - eps / static_cast<double>(C) * sum_logp;
}

__global__ void mean_kernel(float* out, const double* rows, std::int64_t N) {
  double total = 0.0;
  for (std::int64_t i = 0; i < N; ++i) total += rows[i];
  *out = static_cast<float>(total / static_cast<double>(N));
}

__global__ void ce_backward_kernel(float* dlogits, const float* probs, const std::int64_t* labels,
                                   std::int64_t N, std::int64_t C, double eps, double scale) {
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < N * C;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = k / C, c = k % C;
    const double q = math::smoothed_target(c == labels[i], eps, static_cast<double>(C));
    dlogits[k] = math::ce_dlogit(probs[k], q, scale);
  }
}

__global__ void topk_rows_kernel(std::int64_t* hit, const float* logits, const std::int64_t* labels,
                                 std::int64_t N, std::int64_t C, std::int64_t k) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float* l = logits + i * C;
  const std::int64_t y = labels[i];
  if (y < 0 || y >= C) {
    hit[i] = 0;
    return;
  }
  std::int64_t above = 0;
  for (std::int64_t c = 0; c < C; ++c) above += (l[c] > l[y]) || (l[c] == l[y] && c < y);
  hit[i] = above < k;
}

__global__ void count_kernel(std::int64_t* out, const std::int64_t* hit, std::int64_t N) {
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < N; ++i) total += hit[i];
  *out = total;
}

unsigned row_blocks(std::int64_t N) {
  return static_cast<unsigned>((N + kThreads - 1) / kThreads);
}

}  // namespace

void cross_entropy_forward_to(Context& c, float* loss, float* probs, const float* logits,
                              const std::int64_t* labels, std::int64_t N, std::int64_t C,
                              float label_smoothing) {
  if (N <= 0 || C <= 0) throw Error("cross_entropy_forward: empty batch");
  auto* rows = static_cast<double*>(c.scratch(static_cast<std::size_t>(N) * sizeof(double)));
  ce_rows_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(rows, probs, logits, labels, N, C,
                                                           label_smoothing);
  SGCKPT_CUDA_LAUNCHED("cross_entropy_forward", c.stream);
  mean_kernel<<<1, 1, 0, c.stream>>>(loss, rows, N);
  SGCKPT_CUDA_LAUNCHED("cross_entropy_forward (mean)", c.stream);
  c.release(rows);
}

float cross_entropy_forward(Context& c, float* probs, const float* logits, const std::int64_t* labels,
                            std::int64_t N, std::int64_t C, float label_smoothing) {
  auto* out = static_cast<float*>(c.scratch(sizeof(float)));
  cross_entropy_forward_to(c, out, probs, logits, labels, N, C, label_smoothing);
  float loss = 0;
  SGCKPT_CUDA_CHECK(cudaMemcpyAsync(&loss, out, sizeof(float), cudaMemcpyDeviceToHost, c.stream));
  c.release(out);
  SGCKPT_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  return loss;
}

void cross_entropy_backward(Context& c, float* dlogits, const float* probs, const std::int64_t* labels,
                            std::int64_t N, std::int64_t C, float label_smoothing, float dloss) {
  if (N <= 0 || C <= 0) return;
  const double scale = static_cast<double>(dloss) / static_cast<double>(N);
  ce_backward_kernel<<<blocks_for(N * C), kThreads, 0, c.stream>>>(dlogits, probs, labels, N, C,
                                                                   label_smoothing, scale);
  SGCKPT_CUDA_LAUNCHED("cross_entropy_backward", c.stream);
}

void topk_correct_to(Context& c, std::int64_t* correct, const float* logits, const std::int64_t* labels,
                     std::int64_t N, std::int64_t C, std::int64_t k) {
  if (N <= 0) {
    fill_bytes(c, correct, 0, sizeof(std::int64_t));
    return;
  }
  auto* hit = static_cast<std::int64_t*>(c.scratch(static_cast<std::size_t>(N) * sizeof(std::int64_t)));
  topk_rows_kernel<<<row_blocks(N), kThreads, 0, c.stream>>>(hit, logits, labels, N, C, k);
  SGCKPT_CUDA_LAUNCHED("topk_correct", c.stream);
  count_kernel<<<1, 1, 0, c.stream>>>(correct, hit, N);
  SGCKPT_CUDA_LAUNCHED("topk_correct (count)", c.stream);
  c.release(hit);
}

std::int64_t topk_correct(Context& c, const float* logits, const std::int64_t* labels, std::int64_t N,
                          std::int64_t C, std::int64_t k) {
  auto* out = static_cast<std::int64_t*>(c.scratch(sizeof(std::int64_t)));
  topk_correct_to(c, out, logits, labels, N, C, k);
  std::int64_t correct = 0;
  SGCKPT_CUDA_CHECK(cudaMemcpyAsync(&correct, out, sizeof(correct), cudaMemcpyDeviceToHost, c.stream));
  c.release(out);
  SGCKPT_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  return correct;
}

}  // namespace sgckpt::cuda::detail
