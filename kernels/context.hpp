// kernels/context.hpp: what every op of the CUDA backend works with (the streams, the library
// handles, the memory pool) and the launchers each kernels/*.cu file defines. Private to
// kernels/.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "check.hpp"
#include "sgckpt/engine/backend.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"

namespace sgckpt::cuda::detail {

namespace ops = ::sgckpt::engine::ops;

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;  // compute: every kernel and copy of the engine, in order
  cudaMemPool_t pool = nullptr;   // stream-ordered; keeps what it got (release threshold: max)
  cudnnHandle_t cudnn = nullptr;
  cublasLtHandle_t lt = nullptr;
  bool poison = false;

  // Stream-ordered scratch memory (workspaces), freed in stream order.
  void* scratch(std::size_t n) {
    void* p = nullptr;
    if (n == 0) return nullptr;
    SGCKPT_CUDA_CHECK(cudaMallocFromPoolAsync(&p, n, pool, stream));
    return p;
  }
  void release(void* p) {
    if (p != nullptr) SGCKPT_CUDA_CHECK(cudaFreeAsync(p, stream));
  }
};

// Threads per block of the elementwise kernels, and a grid covering n elements (grid-stride
// loops take the rest).
inline constexpr int kThreads = 256;
inline unsigned blocks_for(std::int64_t n) {
  const std::int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// The context of a backend of this library (backend.cu); throws for any other backend.
Context& context_of(engine::Backend& b);

// ---- multi_tensor.cu ----
// The table keeps its backend alive (it frees its device memory there).
std::unique_ptr<engine::FusedTable> make_fused_table(std::shared_ptr<engine::Backend> backend,
                                                     const engine::ops::mt::Table& table);

// ---- elementwise.cu ----
void relu_forward(Context& c, float* y, const float* x, std::int64_t n);
void relu_backward(Context& c, float* dx, const float* dy, const float* y, std::int64_t n);
void add(Context& c, float* out, const float* a, const float* b, std::int64_t n);
void avgpool_forward(Context& c, float* y, const float* x, std::int64_t NC, std::int64_t HW);
void avgpool_backward(Context& c, float* dx, const float* dy, std::int64_t NC, std::int64_t HW);
void sgd_step(Context& c, const ops::SgdStep& a, std::int64_t n);
void gather_batch(Context& c, const ops::GatherBatch& g);
void add_bias(Context& c, float* y, const float* b, std::int64_t outer, std::int64_t channels,
              std::int64_t inner);  // y[o, k, i] += b[k]
void bias_grad(Context& c, float* db, const float* dy, std::int64_t outer, std::int64_t channels,
               std::int64_t inner);  // db[k] += Σ dy[o, k, i] (double, fixed order)
void fill_bytes(Context& c, void* p, int value, std::size_t n);

// ---- loss.cu (each returns after the host has the value: a synchronization) ----
float cross_entropy_forward(Context& c, float* probs, const float* logits, const std::int64_t* labels,
                            std::int64_t N, std::int64_t C, float label_smoothing);
void cross_entropy_backward(Context& c, float* dlogits, const float* probs, const std::int64_t* labels,
                            std::int64_t N, std::int64_t C, float label_smoothing, float dloss);
std::int64_t topk_correct(Context& c, const float* logits, const std::int64_t* labels, std::int64_t N,
                          std::int64_t C, std::int64_t k);
// ... and the same without synchronization, the result written to device memory.
void cross_entropy_forward_to(Context& c, float* loss, float* probs, const float* logits,
                              const std::int64_t* labels, std::int64_t N, std::int64_t C,
                              float label_smoothing);
void topk_correct_to(Context& c, std::int64_t* correct, const float* logits, const std::int64_t* labels,
                     std::int64_t N, std::int64_t C, std::int64_t k);

// ---- batchnorm.cu ----
void batchnorm_forward(Context& c, const ops::BatchNormForward& a);
void batchnorm_backward(Context& c, const ops::BatchNormBackward& a);

// ---- conv_cudnn.cu ----
class ConvCache;
void conv2d_forward(Context& c, ConvCache& cache, float* y, const float* x, const float* w, const float* b,
                    const ops::Conv2dShape& s);
void conv2d_backward(Context& c, ConvCache& cache, float* dx, float* dw, float* db, const float* dy,
                     const float* x, const float* w, const ops::Conv2dShape& s);

// ---- linear_cublaslt.cu ----
void linear_forward(Context& c, float* y, const float* x, const float* w, const float* b, std::int64_t N,
                    std::int64_t in, std::int64_t out);
void linear_backward(Context& c, float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, std::int64_t N, std::int64_t in, std::int64_t out);

}  // namespace sgckpt::cuda::detail
