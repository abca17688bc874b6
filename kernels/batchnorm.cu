// kernels/batchnorm.cu: BatchNorm2d over [N, C, HW] (training and eval) with the activation
// that follows it fused (ops::BnActivation: none, ReLU, residual add + ReLU), forward and
// backward. The per-channel statistics are reduced by one block per channel in double, in a
// fixed order (a strided per-thread sum, then a tree): deterministic, no atomics; they differ
// from the CPU's lane order only by double rounding. Given the statistics, every element is
// the CPU's expression (engine/math.hpp), in the order the CPU ops run it.
#include "context.hpp"
#include "sgckpt/engine/math.hpp"

namespace sgckpt::cuda::detail {

namespace math = ::sgckpt::engine::math;

namespace {

constexpr int kBnThreads = 256;

// The sum over a block of each thread's value, in a fixed tree order; every thread gets it.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kBnThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

__device__ std::int64_t at(std::int64_t j, std::int64_t c, std::int64_t C, std::int64_t HW) {
  return (j / HW * C + c) * HW + j % HW;
}

__global__ void bn_stats_kernel(ops::BatchNormForward a) {
  __shared__ double shared[kBnThreads];
  const std::int64_t c = blockIdx.x, n = a.N * a.HW;
  double s = 0.0;
  for (std::int64_t j = threadIdx.x; j < n; j += kBnThreads)
    s += static_cast<double>(a.x[at(j, c, a.C, a.HW)]);
  const double mean = block_sum(s, shared) / static_cast<double>(n);
  double q = 0.0;
  for (std::int64_t j = threadIdx.x; j < n; j += kBnThreads) {
    const double d = static_cast<double>(a.x[at(j, c, a.C, a.HW)]) - mean;
    q += d * d;
  }
  const double var_sum = block_sum(q, shared);
  if (threadIdx.x != 0) return;
  const double invstd = math::bn_invstd(var_sum / static_cast<double>(n), a.eps);
  a.save_mean[c] = static_cast<float>(mean);
  a.save_invstd[c] = static_cast<float>(invstd);
  if (a.running_mean != nullptr)
    a.running_mean[c] = static_cast<float>(math::bn_running_update(a.running_mean[c], mean, a.momentum));
  if (a.running_var != nullptr)
    a.running_var[c] = static_cast<float>(
        math::bn_running_update(a.running_var[c], var_sum / static_cast<double>(n - 1), a.momentum));
}

__global__ void bn_eval_stats_kernel(ops::BatchNormForward a) {
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < a.C;
       c += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    a.save_mean[c] = a.running_mean[c];
    a.save_invstd[c] = static_cast<float>(math::bn_invstd(a.running_var[c], a.eps));
  }
}

// y = bn_apply(x), then + residual, then ReLU: the CPU's op sequence, element by element.
__global__ void bn_apply_kernel(ops::BatchNormForward a) {
  const std::int64_t total = a.N * a.C * a.HW;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = k / a.HW % a.C;
    const float scale = math::bn_scale(a.weight[c], a.save_invstd[c]);
    const float shift = math::bn_shift(a.bias[c], a.save_mean[c], scale);
    float y = math::bn_apply(a.x[k], scale, shift);
    if (a.act == ops::BnActivation::AddRelu) y = y + a.residual[k];
    if (a.act != ops::BnActivation::None) y = math::relu(y);
    a.y[k] = y;
  }
}

// Per channel: Σ g and Σ g * (x - mean) with g the gradient reaching the BatchNorm (dy through
// the ReLU mask when fused); the parameter gradients accumulate; then dx.
__global__ void bn_backward_kernel(ops::BatchNormBackward a) {
  __shared__ double shared[kBnThreads];
  const std::int64_t c = blockIdx.x, count = a.N * a.HW;
  const float* g = a.act == ops::BnActivation::None ? a.dy : a.dact;
  const double m = a.mean[c], is = a.invstd[c];
  double s = 0.0, d = 0.0;
  for (std::int64_t j = threadIdx.x; j < count; j += kBnThreads) {
    const std::int64_t k = at(j, c, a.C, a.HW);
    const double gk = g[k];
    s += gk;
    d += gk * (static_cast<double>(a.x[k]) - m);
  }
  const double sum_dy = block_sum(s, shared);
  const double dot = block_sum(d, shared);
  if (threadIdx.x == 0) {
    if (a.dweight != nullptr) a.dweight[c] += static_cast<float>(dot * is);
    if (a.dbias != nullptr) a.dbias[c] += static_cast<float>(sum_dy);
  }
  if (a.dx == nullptr) return;
  const double n = static_cast<double>(count);
  const double mean_dy = sum_dy / n, kk = dot * is * is / n;
  const float scale = math::bn_scale(a.weight[c], a.invstd[c]);
  for (std::int64_t j = threadIdx.x; j < count; j += kBnThreads) {
    const std::int64_t k = at(j, c, a.C, a.HW);
    a.dx[k] = a.training ? math::bn_train_dx(g[k], a.x[k], m, is, a.weight[c], mean_dy, kk) : g[k] * scale;
  }
}

}  // namespace

void batchnorm_forward(Context& c, const ops::BatchNormForward& a) {
  if (a.C <= 0 || a.N * a.HW <= 0) return;
  if (a.C > 0x7fffffff) throw Error("batchnorm: too many channels");
  if (a.training) {
    if (a.N * a.HW < 2) throw Error("batchnorm: training needs more than one value per channel");
    bn_stats_kernel<<<static_cast<unsigned>(a.C), kBnThreads, 0, c.stream>>>(a);
  } else {
    bn_eval_stats_kernel<<<blocks_for(a.C), kThreads, 0, c.stream>>>(a);
  }
  SGCKPT_CUDA_LAUNCHED("batchnorm_forward (statistics)", c.stream);
  bn_apply_kernel<<<blocks_for(a.N * a.C * a.HW), kThreads, 0, c.stream>>>(a);
  SGCKPT_CUDA_LAUNCHED("batchnorm_forward", c.stream);
}

void batchnorm_backward(Context& c, const ops::BatchNormBackward& a) {
  if (a.C <= 0 || a.N * a.HW <= 0) return;
  if (a.act != ops::BnActivation::None) relu_backward(c, a.dact, a.dy, a.y, a.N * a.C * a.HW);
  bn_backward_kernel<<<static_cast<unsigned>(a.C), kBnThreads, 0, c.stream>>>(a);
  SGCKPT_CUDA_LAUNCHED("batchnorm_backward", c.stream);
}

}  // namespace sgckpt::cuda::detail
