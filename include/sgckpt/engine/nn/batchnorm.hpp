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

#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/init.hpp"
#include "sgckpt/engine/nn/module.hpp"
#include "sgckpt/engine/ops/batchnorm.hpp"

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

  Tensor forward(const Tensor& x) {
    check_input(x);
    const std::int64_t N = x.shape()[0], C = num_features, HW = x.shape()[2] * x.shape()[3];
    Tensor y = Tensor::empty(x.shape());
    mean_ = Tensor::empty({C});
    invstd_ = Tensor::empty({C});
    if (training()) {
      if (N * HW <= 1)
        throw Error("BatchNorm2d: expected more than 1 value per channel when training, got input " +
                    shape_text(x.shape()));
      ops::batchnorm_forward_train(y.data<float>(), mean_.data<float>(), invstd_.data<float>(),
                                   running_mean.data<float>(), running_var.data<float>(), x.data<float>(),
                                   weight.data<float>(), bias.data<float>(), N, C, HW, eps, momentum);
      // Wraps at 2^63 as torch's int64 tensor does; a signed += 1 on INT64_MAX (loaded from a
      // file) would be undefined behaviour.
      auto& tracked = *num_batches_tracked.data<std::int64_t>();
      tracked = static_cast<std::int64_t>(static_cast<std::uint64_t>(tracked) + 1);
    } else {
      mean_.copy_(running_mean);
      ops::batchnorm_eval_invstd(invstd_.data<float>(), running_var.data<float>(), C, eps);
      ops::batchnorm_forward_eval(y.data<float>(), x.data<float>(), weight.data<float>(), bias.data<float>(),
                                  mean_.data<float>(), invstd_.data<float>(), N, C, HW);
    }
    forward_training_ = training();
    input_ = grad_enabled() ? x : Tensor();
    return y;
  }

  // dL/dx from dL/dy; accumulates weight_grad and bias_grad. Differentiates the mode the
  // forward ran in (batch statistics in training mode, constants in eval mode).
  Tensor backward(const Tensor& dy, bool need_input_grad = true) {
    if (!input_.defined()) throw Error("BatchNorm2d.backward without a forward that kept its input");
    if (dy.dtype() != DType::Float32 || dy.shape() != input_.shape())
      throw Error("BatchNorm2d.backward: gradient of shape " + shape_text(dy.shape()) + ", output was " +
                  shape_text(input_.shape()));
    const std::int64_t N = input_.shape()[0], C = num_features, HW = input_.shape()[2] * input_.shape()[3];
    Tensor dx = need_input_grad ? Tensor::empty(input_.shape()) : Tensor();
    ops::batchnorm_backward(need_input_grad ? dx.data<float>() : nullptr, weight_grad.data<float>(),
                            bias_grad.data<float>(), dy.data<float>(), input_.data<float>(),
                            weight.data<float>(), mean_.data<float>(), invstd_.data<float>(), N, C, HW,
                            forward_training_);
    input_ = Tensor();
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

  // Kept by forward for backward: the input and the statistics it was normalized with.
  Tensor input_, mean_, invstd_;
  bool forward_training_ = true;
};

}  // namespace sgckpt::engine::nn
