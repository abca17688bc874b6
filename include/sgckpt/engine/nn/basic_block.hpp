// sgckpt/engine/nn/basic_block.hpp: SuperGradients' BasicResNetBlock (expansion 1):
//
//   out = relu( bn2(conv2( relu(bn1(conv1(x))) )) + shortcut(x) )
//
// conv1: 3x3, the block's stride, padding 1, no bias; conv2: 3x3, stride 1, padding 1, no
// bias; `drop_path` is DropPath(p = 0), the identity (a module without tensors: it appears
// only in the state_dict's _metadata); `shortcut` is an empty nn.Sequential (identity), or
// Sequential(`0`: 1x1 conv with the stride, no bias; `1`: BatchNorm2d) when the stride is not 1
// or the width changes. Registration order: conv1, bn1, conv2, bn2, drop_path, shortcut.
#pragma once

#include <cstdint>
#include <optional>

#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/batchnorm.hpp"
#include "sgckpt/engine/nn/conv2d.hpp"
#include "sgckpt/engine/nn/functional.hpp"
#include "sgckpt/engine/nn/module.hpp"

namespace sgckpt::engine::nn {

class Shortcut : public Module {
 public:
  Shortcut(std::int64_t in_planes, std::int64_t planes, std::int64_t stride, Generator& gen) {
    if (stride != 1 || in_planes != planes) {
      conv.emplace(in_planes, planes, 1, stride, 0, false, gen);
      bn.emplace(planes);
    }
  }
  const char* type_name() const override { return "Sequential"; }
  void visit_children(const ChildFn& f) override {
    if (conv) f("0", *conv);
    if (bn) f("1", *bn);
  }
  bool is_identity() const { return !conv.has_value(); }

  Tensor forward(const Tensor& x) { return is_identity() ? x : bn->forward(conv->forward(x)); }
  Tensor backward(const Tensor& dy) { return is_identity() ? dy : conv->backward(bn->backward(dy)); }

  std::optional<Conv2d> conv;     // "0"
  std::optional<BatchNorm2d> bn;  // "1"
};

class BasicBlock : public Module {
 public:
  BasicBlock(std::int64_t in_planes, std::int64_t planes, std::int64_t stride, Generator& gen)
      : conv1(in_planes, planes, 3, stride, 1, false, gen),
        bn1(planes),
        conv2(planes, planes, 3, 1, 1, false, gen),
        bn2(planes),
        drop_path("DropPath"),
        shortcut(in_planes, planes, stride, gen) {}

  const char* type_name() const override { return "BasicResNetBlock"; }
  void visit_children(const ChildFn& f) override {
    f("conv1", conv1);
    f("bn1", bn1);
    f("conv2", conv2);
    f("bn2", bn2);
    f("drop_path", drop_path);
    f("shortcut", shortcut);
  }

  // The main path conv1 -> bn1+relu -> conv2 -> bn2 (-> drop_path, the identity) ends in one
  // fused op with the residual: relu(bn2(.) + shortcut(x)).
  Tensor forward(const Tensor& x) {
    const Tensor h = bn1.forward(conv1.forward(x), ops::BnActivation::Relu);
    return bn2.forward(conv2.forward(h), ops::BnActivation::AddRelu, shortcut.forward(x));
  }

  // dL/dx from dL/dout; accumulates the gradients of every parameter of the block.
  Tensor backward(const Tensor& dout) {
    // main path, in reverse: bn2 (+ add + relu) -> conv2 -> bn1 (+ relu) -> conv1; the fused
    // bn2 backward also gives the residual's gradient d, which the shortcut receives.
    Tensor d;
    const Tensor dh = conv2.backward(bn2.backward(dout, true, &d));
    Tensor dx = conv1.backward(bn1.backward(dh));
    // x fed both paths, so their gradients add up
    functional::add_(dx, shortcut.backward(d));
    return dx;
  }

  Conv2d conv1;
  BatchNorm2d bn1;
  Conv2d conv2;
  BatchNorm2d bn2;
  Placeholder drop_path;
  Shortcut shortcut;
};

}  // namespace sgckpt::engine::nn
