// kernels/conv_cudnn.cu: 2-D convolution forward and both backward passes through cuDNN
// (float32, NCHW). Per shape the algorithms are chosen once among cuDNN's deterministic ones
// (heuristic order, no tensor-op math) and cached; the bias and its gradient are the backend's
// own kernels (elementwise.cu), the bias gradient summed in a fixed order.
#include <string>

#include "context.hpp"
#include "conv_cudnn.hpp"

namespace sgckpt::cuda::detail {

namespace {

bool float32_math(cudnnMathType_t m) {
  return m == CUDNN_DEFAULT_MATH || m == CUDNN_FMA_MATH;
}

template <class Perf>
const Perf* pick(const Perf* results, int count, const char* what) {
  for (int i = 0; i < count; ++i)
    if (results[i].status == CUDNN_STATUS_SUCCESS && results[i].determinism == CUDNN_DETERMINISTIC &&
        float32_math(results[i].mathType))
      return &results[i];
  throw Error(std::string("cuDNN: no deterministic float32 algorithm for the ") + what +
              " of this convolution");
}

void choose(Context& c, ConvPlan& p) {
  if (p.chosen) return;
  constexpr int kMax = 16;
  int n = 0;
  cudnnConvolutionFwdAlgoPerf_t f[kMax];
  SGCKPT_CUDA_CHECK(
      cudnnGetConvolutionForwardAlgorithm_v7(c.cudnn, p.d.x, p.d.w, p.d.conv, p.d.y, kMax, &n, f));
  p.fwd = pick(f, n, "forward")->algo;
  cudnnConvolutionBwdDataAlgoPerf_t bd[kMax];
  SGCKPT_CUDA_CHECK(
      cudnnGetConvolutionBackwardDataAlgorithm_v7(c.cudnn, p.d.w, p.d.y, p.d.conv, p.d.x, kMax, &n, bd));
  p.bwd_data = pick(bd, n, "input gradient")->algo;
  cudnnConvolutionBwdFilterAlgoPerf_t bf[kMax];
  SGCKPT_CUDA_CHECK(
      cudnnGetConvolutionBackwardFilterAlgorithm_v7(c.cudnn, p.d.x, p.d.y, p.d.conv, p.d.w, kMax, &n, bf));
  p.bwd_filter = pick(bf, n, "weight gradient")->algo;
  SGCKPT_CUDA_CHECK(
      cudnnGetConvolutionForwardWorkspaceSize(c.cudnn, p.d.x, p.d.w, p.d.conv, p.d.y, p.fwd, &p.ws_fwd));
  SGCKPT_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(c.cudnn, p.d.w, p.d.y, p.d.conv, p.d.x,
                                                                 p.bwd_data, &p.ws_bwd_data));
  SGCKPT_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(c.cudnn, p.d.x, p.d.y, p.d.conv, p.d.w,
                                                                   p.bwd_filter, &p.ws_bwd_filter));
  p.chosen = true;
}

}  // namespace

void conv2d_forward(Context& c, ConvCache& cache, float* y, const float* x, const float* w, const float* b,
                    const ops::Conv2dShape& s) {
  if (s.N == 0) return;  // nothing to compute (cuDNN refuses empty tensors)
  ConvPlan& p = cache.plan(s);
  choose(c, p);
  const float one = 1.0f, zero = 0.0f;
  void* ws = c.scratch(p.ws_fwd);
  SGCKPT_CUDA_CHECK(cudnnConvolutionForward(c.cudnn, &one, p.d.x, x, p.d.w, w, p.d.conv, p.fwd, ws, p.ws_fwd,
                                            &zero, p.d.y, y));
  c.release(ws);
  if (b != nullptr) add_bias(c, y, b, s.N, s.K, s.P() * s.Q());
  SGCKPT_CUDA_LAUNCHED("conv2d_forward", c.stream);
}

void conv2d_backward(Context& c, ConvCache& cache, float* dx, float* dw, float* db, const float* dy,
                     const float* x, const float* w, const ops::Conv2dShape& s) {
  if (s.N == 0) return;  // no gradient to add
  ConvPlan& p = cache.plan(s);
  choose(c, p);
  const float one = 1.0f, zero = 0.0f;
  if (dx != nullptr) {  // overwritten
    void* ws = c.scratch(p.ws_bwd_data);
    SGCKPT_CUDA_CHECK(cudnnConvolutionBackwardData(c.cudnn, &one, p.d.w, w, p.d.y, dy, p.d.conv, p.bwd_data,
                                                   ws, p.ws_bwd_data, &zero, p.d.x, dx));
    c.release(ws);
  }
  // dw += (beta 1: gradients accumulate, as torch's .grad and the CPU kernel do)
  void* ws = c.scratch(p.ws_bwd_filter);
  SGCKPT_CUDA_CHECK(cudnnConvolutionBackwardFilter(c.cudnn, &one, p.d.x, x, p.d.y, dy, p.d.conv, p.bwd_filter,
                                                   ws, p.ws_bwd_filter, &one, p.d.w, dw));
  c.release(ws);
  if (db != nullptr) bias_grad(c, db, dy, s.N, s.K, s.P() * s.Q());
  SGCKPT_CUDA_LAUNCHED("conv2d_backward", c.stream);
}

}  // namespace sgckpt::cuda::detail
