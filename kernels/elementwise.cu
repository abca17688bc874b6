// kernels/elementwise.cu: ReLU, add, global average pooling, bias and its gradient, the
// single-tensor SGD step. Each element computes the CPU kernel's expression (engine/math.hpp,
// engine/optim_math.hpp; no contraction: -fmad=false), and every sum runs in double in the CPU
// loop's order, so these kernels give the CPU's bits.
#include "context.hpp"
#include "sgckpt/engine/math.hpp"
#include "sgckpt/engine/ops/gather.hpp"
#include "sgckpt/engine/optim_math.hpp"

namespace sgckpt::cuda::detail {

namespace math = ::sgckpt::engine::math;
namespace om = ::sgckpt::engine::optim_math;

namespace {

#define SGCKPT_GRID_STRIDE(i, n)                                                                   \
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

__global__ void relu_forward_kernel(float* y, const float* x, std::int64_t n) {
  SGCKPT_GRID_STRIDE(i, n) y[i] = math::relu(x[i]);
}
__global__ void relu_backward_kernel(float* dx, const float* dy, const float* y, std::int64_t n) {
  SGCKPT_GRID_STRIDE(i, n) dx[i] = math::relu_backward(y[i], dy[i]);
}
__global__ void add_kernel(float* out, const float* a, const float* b, std::int64_t n) {
  SGCKPT_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
// One thread per (image, channel) row: the CPU's sequential double sum over the row.
__global__ void avgpool_forward_kernel(float* y, const float* x, std::int64_t NC, std::int64_t HW) {
  SGCKPT_GRID_STRIDE(r, NC) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < HW; ++j) sum += x[r * HW + j];
    y[r] = static_cast<float>(sum / static_cast<double>(HW));
  }
}
__global__ void avgpool_backward_kernel(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) {
  SGCKPT_GRID_STRIDE(i, NC * HW) dx[i] = dy[i / HW] / static_cast<float>(HW);
}
__global__ void add_bias_kernel(float* y, const float* b, std::int64_t channels, std::int64_t inner,
                                std::int64_t n) {
  SGCKPT_GRID_STRIDE(i, n) y[i] += b[(i / inner) % channels];
}
// One thread per channel, summing over (outer, inner) in the CPU's order.
__global__ void bias_grad_kernel(float* db, const float* dy, std::int64_t outer, std::int64_t channels,
                                 std::int64_t inner) {
  SGCKPT_GRID_STRIDE(k, channels) {
    double acc = 0.0;
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t i = 0; i < inner; ++i) acc += dy[(o * channels + k) * inner + i];
    db[k] += static_cast<float>(acc);
  }
}
__global__ void sgd_kernel(ops::SgdStep a, std::int64_t n) {
  SGCKPT_GRID_STRIDE(k, n) {
    const float d = om::sgd_direction(a.grad[k], a.data[k], a.wd, a.maximize);
    if (a.buf == nullptr) {
      a.data[k] = om::sgd_apply(a.data[k], d, a.neg_lr);
    } else {
      const float b = a.first ? d : om::sgd_momentum(a.buf[k], d, a.momentum, a.one_minus_dampening);
      a.buf[k] = b;
      a.data[k] = om::sgd_apply(a.data[k], om::sgd_step_dir(d, b, a.momentum, a.nesterov), a.neg_lr);
    }
  }
}

// One thread per output pixel of the batch; ops::gather_pixel is the CPU loop's expression.
__global__ void gather_kernel(ops::GatherBatch g) {
  const std::int64_t HW = g.H * g.W, sample = g.C * HW;
  SGCKPT_GRID_STRIDE(k, g.B * sample) {
    const std::int64_t i = k / sample, c = k % sample / HW, yy = k % HW / g.W, xx = k % g.W;
    const float* src = g.images + g.index[i] * sample;
    g.x[k] =
        g.draws == nullptr
            ? src[k % sample]
            : ops::gather_pixel(src, g.pad, ops::crop_flip(g.draws[i], g.crop_padding, g.horizontal_flip), c,
                                yy, xx, g.H, g.W);
  }
}

}  // namespace

void gather_batch(Context& c, const ops::GatherBatch& g) {
  const std::int64_t n = g.B * g.C * g.H * g.W;
  if (n <= 0) return;
  gather_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(g);
  SGCKPT_CUDA_LAUNCHED("gather_batch", c.stream);
}

void relu_forward(Context& c, float* y, const float* x, std::int64_t n) {
  if (n <= 0) return;
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(y, x, n);
  SGCKPT_CUDA_LAUNCHED("relu_forward", c.stream);
}
void relu_backward(Context& c, float* dx, const float* dy, const float* y, std::int64_t n) {
  if (n <= 0) return;
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(dx, dy, y, n);
  SGCKPT_CUDA_LAUNCHED("relu_backward", c.stream);
}
void add(Context& c, float* out, const float* a, const float* b, std::int64_t n) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(out, a, b, n);
  SGCKPT_CUDA_LAUNCHED("add", c.stream);
}
void avgpool_forward(Context& c, float* y, const float* x, std::int64_t NC, std::int64_t HW) {
  if (NC <= 0) return;
  avgpool_forward_kernel<<<blocks_for(NC), kThreads, 0, c.stream>>>(y, x, NC, HW);
  SGCKPT_CUDA_LAUNCHED("global_avgpool_forward", c.stream);
}
void avgpool_backward(Context& c, float* dx, const float* dy, std::int64_t NC, std::int64_t HW) {
  if (NC * HW <= 0) return;
  avgpool_backward_kernel<<<blocks_for(NC * HW), kThreads, 0, c.stream>>>(dx, dy, NC, HW);
  SGCKPT_CUDA_LAUNCHED("global_avgpool_backward", c.stream);
}
void add_bias(Context& c, float* y, const float* b, std::int64_t outer, std::int64_t channels,
              std::int64_t inner) {
  const std::int64_t n = outer * channels * inner;
  if (n <= 0) return;
  add_bias_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(y, b, channels, inner, n);
  SGCKPT_CUDA_LAUNCHED("add_bias", c.stream);
}
void bias_grad(Context& c, float* db, const float* dy, std::int64_t outer, std::int64_t channels,
               std::int64_t inner) {
  if (channels <= 0) return;
  bias_grad_kernel<<<blocks_for(channels), kThreads, 0, c.stream>>>(db, dy, outer, channels, inner);
  SGCKPT_CUDA_LAUNCHED("bias_grad", c.stream);
}
void sgd_step(Context& c, const ops::SgdStep& a, std::int64_t n) {
  if (n <= 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, c.stream>>>(a, n);
  SGCKPT_CUDA_LAUNCHED("sgd_step", c.stream);
}
void fill_bytes(Context& c, void* p, int value, std::size_t n) {
  if (n > 0) SGCKPT_CUDA_CHECK(cudaMemsetAsync(p, value, n, c.stream));
}

}  // namespace sgckpt::cuda::detail
