// kernels/conv_cudnn.hpp: the cuDNN description of one convolution shape (float32, NCHW, no
// tensor-op math: results within float32 rounding of the CPU's) and the cache of the
// deterministic algorithms chosen for each shape. Building the descriptors needs no device, so
// tests check them on any machine.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "check.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"

namespace sgckpt::cuda::detail {

struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  explicit ConvDescriptors(const engine::ops::Conv2dShape& s) {
    try {
      SGCKPT_CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
      SGCKPT_CUDA_CHECK(cudnnCreateTensorDescriptor(&y));
      SGCKPT_CUDA_CHECK(cudnnCreateFilterDescriptor(&w));
      SGCKPT_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      SGCKPT_CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i32(s.N), i32(s.C),
                                                   i32(s.H), i32(s.W)));
      SGCKPT_CUDA_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, i32(s.K), i32(s.C),
                                                   i32(s.R), i32(s.S)));
      SGCKPT_CUDA_CHECK(cudnnSetConvolution2dDescriptor(conv, i32(s.pad), i32(s.pad), i32(s.stride),
                                                        i32(s.stride), 1, 1, CUDNN_CROSS_CORRELATION,
                                                        CUDNN_DATA_FLOAT));
      // No TF32: float32 convolutions stay float32 (the CPU's answer within 1e-4).
      SGCKPT_CUDA_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
      int n = 0, k = 0, p = 0, q = 0;
      SGCKPT_CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &k, &p, &q));
      if (n != s.N || k != s.K || p != s.P() || q != s.Q())
        throw Error("cuDNN: output shape [" + std::to_string(n) + ", " + std::to_string(k) + ", " +
                    std::to_string(p) + ", " + std::to_string(q) + "] differs from the engine's");
      SGCKPT_CUDA_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, k, p, q));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~ConvDescriptors() { destroy(); }
  ConvDescriptors(const ConvDescriptors&) = delete;
  ConvDescriptors& operator=(const ConvDescriptors&) = delete;

  static int i32(std::int64_t v) {
    if (v < 1 && v != 0) throw Error("cuDNN: negative convolution dimension");
    if (v > INT32_MAX) throw Error("cuDNN: convolution dimension " + std::to_string(v) + " exceeds int32");
    return static_cast<int>(v);
  }

 private:
  void destroy() noexcept {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
    conv = nullptr, w = nullptr, y = nullptr, x = nullptr;
  }
};

// A shape's descriptors and its chosen algorithms (deterministic ones only, found once).
struct ConvPlan {
  explicit ConvPlan(const engine::ops::Conv2dShape& s) : d(s) {}
  ConvDescriptors d;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  std::size_t ws_fwd = 0, ws_bwd_data = 0, ws_bwd_filter = 0;
  bool chosen = false;
};

class ConvCache {
 public:
  ConvPlan& plan(const engine::ops::Conv2dShape& s) {
    const auto key = std::make_tuple(s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.stride, s.pad);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.try_emplace(key, s).first;
    return it->second;
  }

 private:
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                      std::int64_t, std::int64_t, std::int64_t>,
           ConvPlan>
      plans_;
};

}  // namespace sgckpt::cuda::detail
