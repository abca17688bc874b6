// sgckpt/engine/nn/batchnorm.hpp: torch.nn.BatchNorm2d (affine, track_running_stats), with
// parameters `weight`, `bias` and buffers `running_mean`, `running_var`,
// `num_batches_tracked` (int64, 0-dim). torch's _version 2.
//
// Training mode normalizes with the batch statistics and updates the running ones
// (momentum 0.1, unbiased variance; num_batches_tracked += 1), even under NoGradGuard, as
// torch does. Eval mode normalizes with the running statistics.
#pragma once

#include <cstdint>
#include <string>

#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/init.hpp"
#include "sgckpt/engine/nn/module.hpp"

namespace sgckpt::engine::nn {

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(std::int64_t num_features, double eps = 1e-5, double momentum = 0.1)
      : num_features(num_features), eps(eps), momentum(momentum) {
    weight = Tensor::empty({num_features});
    bias = Tensor::empty({num_features});
    weight_grad = Tensor::zeros({num_features});
    bias_grad = Tensor::zeros({num_features});
    running_mean = Tensor::empty({num_features});
    running_var = Tensor::empty({num_features});
    num_batches_tracked = Tensor::scalar_int64(0);
    reset_parameters();
  }

  const char* type_name() const override { return "BatchNorm2d"; }
  int version() const override { return 2; }
  void visit_parameters(const ParameterFn& f) override {
    f("weight", weight, weight_grad);
    f("bias", bias, bias_grad);
  }
  void visit_buffers(const BufferFn& f) override {
    f("running_mean", running_mean);
    f("running_var", running_var);
    f("num_batches_tracked", num_batches_tracked);
  }

  // weight 1, bias 0, running mean 0, running var 1, num_batches_tracked 0.
  void reset_parameters() {
    init::constant_(weight, 1.0f);
    init::constant_(bias, 0.0f);
    init::constant_(running_mean, 0.0f);
    init::constant_(running_var, 1.0f);
    *num_batches_tracked.data<std::int64_t>() = 0;
  }

  Tensor forward(const Tensor& x) { return forward(x, ops::BnActivation::None); }

  // The fused forms: relu(bn(x)) (act Relu) and relu(bn(x) + residual) (act AddRelu, the end
  // of a ResNet block). One op on a device; on the CPU the sequence bn, add, relu.
  Tensor forward(const Tensor& x, ops::BnActivation act, const Tensor& residual = {}) {
    check_input(x);
    if (act == ops::BnActivation::AddRelu &&
        (!residual.defined() || residual.shape() != x.shape() || residual.dtype() != DType::Float32))
      throw Error("BatchNorm2d: the residual of add+relu must be a float32 tensor of shape " +
                  shape_text(x.shape()));
    const std::int64_t N = x.shape()[0], C = num_features, HW = x.shape()[2] * x.shape()[3];
    if (training() && N * HW <= 1)
      throw Error("BatchNorm2d: expected more than 1 value per channel when training, got input " +
                  shape_text(x.shape()));
    Backend& be = backend_for("BatchNorm2d", {&x, &weight, &running_mean, &residual});
    const Device dev = x.device();
    Tensor y = Tensor::empty(x.shape(), DType::Float32, dev);
    mean_ = Tensor::empty({C}, DType::Float32, dev);
    invstd_ = Tensor::empty({C}, DType::Float32, dev);
    be.batchnorm_forward(
        {.y = y.data_ptr<float>(),
         .save_mean = mean_.data_ptr<float>(),
         .save_invstd = invstd_.data_ptr<float>(),
         .running_mean = running_mean.data_ptr<float>(),
         .running_var = running_var.data_ptr<float>(),
         .x = x.data_ptr<float>(),
         .weight = weight.data_ptr<float>(),
         .bias = bias.data_ptr<float>(),
         .residual = act == ops::BnActivation::AddRelu ? residual.data_ptr<float>() : nullptr,
         .N = N,
         .C = C,
         .HW = HW,
         .eps = eps,
         .momentum = momentum,
         .training = training(),
         .act = act});
    if (training()) {
      // Wraps at 2^63 as torch's int64 tensor does; a signed += 1 on INT64_MAX (loaded from a
      // file) would be undefined behaviour. A host counter on every device (Module::to).
      auto& tracked = *num_batches_tracked.data<std::int64_t>();
      tracked = static_cast<std::int64_t>(static_cast<std::uint64_t>(tracked) + 1);
    }
    forward_training_ = training();
    act_ = act;
    input_ = grad_enabled() ? x : Tensor();
    output_ = grad_enabled() && act != ops::BnActivation::None ? y : Tensor();
    return y;
  }

  // dL/dx from dL/dy (the gradient of the fused output); accumulates weight_grad and
  // bias_grad. Differentiates the mode the forward ran in (batch statistics in training mode,
  // constants in eval mode). After an AddRelu forward, *residual_grad receives dL/d(residual).
  Tensor backward(const Tensor& dy, bool need_input_grad = true, Tensor* residual_grad = nullptr) {
    if (!input_.defined()) throw Error("BatchNorm2d.backward without a forward that kept its input");
    if (dy.dtype() != DType::Float32 || dy.shape() != input_.shape())
      throw Error("BatchNorm2d.backward: gradient of shape " + shape_text(dy.shape()) + ", output was " +
                  shape_text(input_.shape()));
    if ((act_ == ops::BnActivation::AddRelu) != (residual_grad != nullptr))
      throw Error(
          "BatchNorm2d.backward: the residual's gradient is returned exactly when the forward added one");
    Backend& be = backend_for("BatchNorm2d.backward", {&dy, &input_, &weight_grad});
    const std::int64_t N = input_.shape()[0], C = num_features, HW = input_.shape()[2] * input_.shape()[3];
    const Device dev = dy.device();
    Tensor dx = need_input_grad ? Tensor::empty(input_.shape(), DType::Float32, dev) : Tensor();
    // The ReLU's gradient (dy masked by the output): the residual's gradient for AddRelu.
    Tensor dact =
        act_ != ops::BnActivation::None ? Tensor::empty(input_.shape(), DType::Float32, dev) : Tensor();
    be.batchnorm_backward({.dx = need_input_grad ? dx.data_ptr<float>() : nullptr,
                           .dweight = weight_grad.data_ptr<float>(),
                           .dbias = bias_grad.data_ptr<float>(),
                           .dact = dact.defined() ? dact.data_ptr<float>() : nullptr,
                           .dy = dy.data_ptr<float>(),
                           .y = output_.defined() ? output_.data_ptr<float>() : nullptr,
                           .x = input_.data_ptr<float>(),
                           .weight = weight.data_ptr<float>(),
                           .mean = mean_.data_ptr<float>(),
                           .invstd = invstd_.data_ptr<float>(),
                           .N = N,
                           .C = C,
                           .HW = HW,
                           .training = forward_training_,
                           .act = act_});
    if (residual_grad != nullptr) *residual_grad = dact;
    input_ = output_ = Tensor();
    return dx;
  }

  std::int64_t num_features;
  double eps, momentum;
  Tensor weight, bias, weight_grad, bias_grad;
  Tensor running_mean, running_var, num_batches_tracked;

 private:
  void check_input(const Tensor& x) const {
    if (x.dtype() != DType::Float32 || x.dim() != 4 || x.shape()[1] != num_features)
      throw Error("BatchNorm2d(" + std::to_string(num_features) + "): expected a float32 input [N, " +
                  std::to_string(num_features) + ", H, W], got " + std::string(sgckpt::name(x.dtype())) +
                  shape_text(x.shape()));
  }

  // Kept by forward for backward: the input, the statistics it was normalized with and, for
  // the fused forms, the output (the ReLU's mask).
  Tensor input_, output_, mean_, invstd_;
  bool forward_training_ = true;
  ops::BnActivation act_ = ops::BnActivation::None;
};

}  // namespace sgckpt::engine::nn
