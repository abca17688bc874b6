// sgckpt/engine/nn/linear.hpp: torch.nn.Linear, parameters `weight` [out, in] and `bias` [out].
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/init.hpp"
#include "sgckpt/engine/nn/module.hpp"

namespace sgckpt::engine::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias, Generator& gen)
      : in_features(in_features), out_features(out_features) {
    weight = Tensor::empty({out_features, in_features});
    weight_grad = Tensor::zeros(weight.shape());
    if (bias) {
      this->bias = Tensor::empty({out_features});
      bias_grad = Tensor::zeros({out_features});
    }
    reset_parameters(gen);
  }

  const char* type_name() const override { return "Linear"; }
  void visit_parameters(const ParameterFn& f) override {
    f("weight", weight, weight_grad);
    if (bias.defined()) f("bias", bias, bias_grad);
  }

  // torch's Linear.reset_parameters.
  void reset_parameters(Generator& gen) {
    init::kaiming_uniform_(weight, std::sqrt(5.0), in_features, gen);
    if (bias.defined()) init::fan_in_uniform_(bias, in_features, gen);
  }

  // y [N, out] from x [N, in].
  Tensor forward(const Tensor& x) {
    if (x.dtype() != DType::Float32 || x.dim() != 2 || x.shape()[1] != in_features)
      throw Error("Linear(" + std::to_string(in_features) + " -> " + std::to_string(out_features) +
                  "): expected a float32 input [N, " + std::to_string(in_features) + "], got " +
                  std::string(sgckpt::name(x.dtype())) + shape_text(x.shape()));
    const std::int64_t N = x.shape()[0];
    Backend& be = backend_for("Linear", {&x, &weight, &bias});
    Tensor y = Tensor::empty({N, out_features}, DType::Float32, x.device());
    be.linear_forward(y.data_ptr<float>(), x.data_ptr<float>(), weight.data_ptr<float>(),
                      bias.defined() ? bias.data_ptr<float>() : nullptr, N, in_features, out_features);
    input_ = grad_enabled() ? x : Tensor();
    return y;
  }

  // dL/dx from dL/dy; accumulates weight_grad and bias_grad.
  Tensor backward(const Tensor& dy, bool need_input_grad = true) {
    if (!input_.defined()) throw Error("Linear.backward without a forward that kept its input");
    const std::int64_t N = input_.shape()[0];
    if (dy.dtype() != DType::Float32 || dy.shape() != Shape{N, out_features})
      throw Error("Linear.backward: gradient of shape " + shape_text(dy.shape()) + ", output was " +
                  shape_text({N, out_features}));
    Backend& be = backend_for("Linear.backward", {&dy, &input_, &weight, &weight_grad});
    Tensor dx = need_input_grad ? Tensor::empty(input_.shape(), DType::Float32, dy.device()) : Tensor();
    be.linear_backward(need_input_grad ? dx.data_ptr<float>() : nullptr, weight_grad.data_ptr<float>(),
                       bias.defined() ? bias_grad.data_ptr<float>() : nullptr, dy.data_ptr<float>(),
                       input_.data_ptr<float>(), weight.data_ptr<float>(), N, in_features, out_features);
    input_ = Tensor();
    return dx;
  }

  std::int64_t in_features, out_features;
  Tensor weight, bias, weight_grad, bias_grad;

 private:
  Tensor input_;
};

}  // namespace sgckpt::engine::nn
