// sgckpt/engine/nn/conv2d.hpp: torch.nn.Conv2d (square kernel, stride and padding; no
// dilation, no groups), parameters `weight` [out, in, k, k] and `bias` [out] (optional).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/init.hpp"
#include "sgckpt/engine/nn/module.hpp"

namespace sgckpt::engine::nn {

class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, std::int64_t stride,
         std::int64_t padding, bool bias, Generator& gen)
      : in_channels(in_channels),
        out_channels(out_channels),
        kernel_size(kernel_size),
        stride(stride),
        padding(padding) {
    weight = Tensor::empty({out_channels, in_channels, kernel_size, kernel_size});
    weight_grad = Tensor::zeros(weight.shape());
    if (bias) {
      this->bias = Tensor::empty({out_channels});
      bias_grad = Tensor::zeros({out_channels});
    }
    reset_parameters(gen);
  }

  const char* type_name() const override { return "Conv2d"; }
  void visit_parameters(const ParameterFn& f) override {
    f("weight", weight, weight_grad);
    if (bias.defined()) f("bias", bias, bias_grad);
  }

  // torch's Conv2d.reset_parameters.
  void reset_parameters(Generator& gen) {
    const std::int64_t fan_in = in_channels * kernel_size * kernel_size;
    init::kaiming_uniform_(weight, std::sqrt(5.0), fan_in, gen);
    if (bias.defined()) init::fan_in_uniform_(bias, fan_in, gen);
  }

  // y [N, out, P, Q] from x [N, in, H, W]. Keeps x for backward (unless grad is disabled).
  Tensor forward(const Tensor& x) {
    const ops::Conv2dShape s = shape_of(x);
    Backend& be = backend_for("Conv2d", {&x, &weight, &bias});
    Tensor y = Tensor::empty({s.N, s.K, s.P(), s.Q()}, DType::Float32, x.device());
    be.conv2d_forward(y.data_ptr<float>(), x.data_ptr<float>(), weight.data_ptr<float>(),
                      bias.defined() ? bias.data_ptr<float>() : nullptr, s);
    input_ = grad_enabled() ? x : Tensor();
    return y;
  }

  // dL/dx from dL/dy; accumulates dL/dweight into weight_grad (and bias_grad). Skips dL/dx
  // (returns an undefined tensor) when need_input_grad is false, as for the network's input.
  Tensor backward(const Tensor& dy, bool need_input_grad = true) {
    if (!input_.defined()) throw Error("Conv2d.backward without a forward that kept its input");
    const ops::Conv2dShape s = shape_of(input_);
    if (dy.dtype() != DType::Float32 || dy.shape() != Shape{s.N, s.K, s.P(), s.Q()})
      throw Error("Conv2d.backward: gradient of shape " + shape_text(dy.shape()) + ", output was " +
                  shape_text({s.N, s.K, s.P(), s.Q()}));
    Backend& be = backend_for("Conv2d.backward", {&dy, &input_, &weight, &weight_grad});
    Tensor dx = need_input_grad ? Tensor::empty(input_.shape(), DType::Float32, dy.device()) : Tensor();
    be.conv2d_backward(need_input_grad ? dx.data_ptr<float>() : nullptr, weight_grad.data_ptr<float>(),
                       bias.defined() ? bias_grad.data_ptr<float>() : nullptr, dy.data_ptr<float>(),
                       input_.data_ptr<float>(), weight.data_ptr<float>(), s);
    input_ = Tensor();
    return dx;
  }

  std::int64_t in_channels, out_channels, kernel_size, stride, padding;
  Tensor weight, bias;            // bias undefined when the layer has none
  Tensor weight_grad, bias_grad;  // dL/dweight, dL/dbias, accumulated by backward

 private:
  ops::Conv2dShape shape_of(const Tensor& x) const {
    if (x.dtype() != DType::Float32 || x.dim() != 4 || x.shape()[1] != in_channels)
      throw Error("Conv2d(" + std::to_string(in_channels) + " -> " + std::to_string(out_channels) +
                  "): expected a float32 input [N, " + std::to_string(in_channels) + ", H, W], got " +
                  std::string(sgckpt::name(x.dtype())) + shape_text(x.shape()));
    ops::Conv2dShape s;
    s.N = x.shape()[0], s.C = in_channels, s.H = x.shape()[2], s.W = x.shape()[3];
    s.K = out_channels, s.R = s.S = kernel_size, s.stride = stride, s.pad = padding;
    if (s.H + 2 * s.pad < s.R || s.W + 2 * s.pad < s.S)
      throw Error("Conv2d: input " + shape_text(x.shape()) + " is smaller than the kernel");
    return s;
  }

  Tensor input_;  // kept by forward for backward
};

}  // namespace sgckpt::engine::nn
