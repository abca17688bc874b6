// sgckpt/engine/ops/kernel_args.hpp: the arguments of the engine's kernels, shared by the CPU
// kernels (ops/*.hpp) and every device backend (backend.hpp), so both sides of the seam take
// exactly the same description of the work. Pointers are to memory of the device the kernel
// runs on; every tensor is float32, dense, in the layout its op documents (NCHW here).
#pragma once

#include <cstdint>

namespace sgckpt::engine::ops {

// A 2-D convolution (square stride and padding, no dilation, no groups).
struct Conv2dShape {
  std::int64_t N = 1, C = 1, H = 1, W = 1;  // input [N, C, H, W]
  std::int64_t K = 1;                       // output channels
  std::int64_t R = 1, S = 1;                // kernel height and width
  std::int64_t stride = 1, pad = 0;
  std::int64_t images_per_gemm = 0;  // G (CPU); 0: chosen automatically

  std::int64_t P() const { return (H + 2 * pad - R) / stride + 1; }  // output height
  std::int64_t Q() const { return (W + 2 * pad - S) / stride + 1; }  // output width
  std::int64_t CRS() const { return C * R * S; }
  // 1x1, stride 1, no padding: the column matrix of one image is the image itself.
  bool is_pointwise() const { return R == 1 && S == 1 && stride == 1 && pad == 0; }
};

// What follows a BatchNorm in the same kernel: nothing, a ReLU, or the residual add and a
// ReLU of a ResNet block (y = relu(bn(x) + residual)). The GPU fuses them to save memory
// passes; the CPU runs today's op sequence, so both give the same bits.
enum class BnActivation : std::uint8_t { None, Relu, AddRelu };

struct BatchNormForward {
  float* y = nullptr;             // [N, C, HW]
  float* save_mean = nullptr;     // [C]: the statistics the input was normalized with
  float* save_invstd = nullptr;   // [C]
  float* running_mean = nullptr;  // [C], updated in training mode
  float* running_var = nullptr;   // [C], updated in training mode
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  const float* residual = nullptr;  // [N, C, HW], AddRelu only
  std::int64_t N = 0, C = 0, HW = 0;
  double eps = 1e-5, momentum = 0.1;
  bool training = true;
  BnActivation act = BnActivation::None;
};

struct BatchNormBackward {
  float* dx = nullptr;  // null: the input gradient is not needed
  float* dweight = nullptr;
  float* dbias = nullptr;  // accumulated (+=), as the parameters' gradients are
  float* dact =
      nullptr;  // Relu / AddRelu: receives dy masked by y > 0 (for AddRelu, the residual's gradient)
  const float* dy = nullptr;
  const float* y = nullptr;  // the forward's output (the ReLU mask); Relu / AddRelu only
  const float* x = nullptr;  // the forward's input
  const float* weight = nullptr;
  const float* mean = nullptr;  // save_mean / save_invstd of the forward
  const float* invstd = nullptr;
  std::int64_t N = 0, C = 0, HW = 0;
  bool training = true;  // the mode the forward ran in
  BnActivation act = BnActivation::None;
};

// A training batch gathered from a dataset's images (ops/gather.hpp): x[i] = images[index[i]],
// cropped and flipped by draws[i] when draws is not null.
struct GatherBatch {
  float* x = nullptr;                    // [B, C, H, W]
  const float* images = nullptr;         // [N, C, H, W]
  const std::int64_t* index = nullptr;   // [B], each in [0, N)
  const std::uint64_t* draws = nullptr;  // [B]; null: no augmentation
  const float* pad = nullptr;            // [C]: the value of a padding pixel
  std::int64_t B = 0, C = 0, H = 0, W = 0;
  std::int64_t crop_padding = 0;
  bool horizontal_flip = false;
};

// One SGD update of `n` elements (torch 1.13's single-tensor algorithm).
struct SgdStep {
  float* data = nullptr;
  const float* grad = nullptr;
  float* buf = nullptr;  // momentum buffer; null when momentum is 0
  bool first = false;    // the buffer is new and takes d_p, as torch's clone does
  bool nesterov = false, maximize = false;
  float wd = 0, momentum = 0, one_minus_dampening = 1, neg_lr = 0;
};

}  // namespace sgckpt::engine::ops
