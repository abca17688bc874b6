// sgckpt/engine/nn/resnet.hpp: ResNet18 for CIFAR exactly as SuperGradients builds it
// (ResNet18Cifar -> CifarResNet with BasicResNetBlock, blocks [2, 2, 2, 2]):
//
//   conv1 (3x3, stride 1, padding 1, no bias) -> bn1 -> relu       (no max-pool)
//   layer1 .. layer4: 2 BasicBlocks each, planes P1..P4 = 64, 128, 256, 512 x width
//                     (SG's width_multiplier: int(base * width)), first strides 1, 2, 2, 2
//   avgpool (AdaptiveAvgPool2d(1)) -> flatten -> linear (P4 -> num_classes, with bias)
//
// Its state_dict has torch's 122 entries (10 classes) in registration order, and the
// _metadata of the module tree (avgpool and each block's drop_path included).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/nn/basic_block.hpp"
#include "sgckpt/engine/nn/functional.hpp"
#include "sgckpt/engine/nn/linear.hpp"
#include "sgckpt/engine/nn/module.hpp"

namespace sgckpt::engine::nn {

struct ResNet18Config {
  std::int64_t num_classes = 10;
  std::int64_t in_channels = 3;
  std::array<std::int64_t, 4> planes{64, 128, 256, 512};  // layer1..4; the stem has planes[0]

  // SuperGradients' width_multiplier(base, width) = int(base * width).
  static std::int64_t width_multiplier(std::int64_t base, double width) {
    return static_cast<std::int64_t>(static_cast<double>(base) * width);
  }
  static ResNet18Config cifar(std::int64_t num_classes = 10, double width = 1.0,
                              std::int64_t in_channels = 3) {
    ResNet18Config c;
    c.num_classes = num_classes;
    c.in_channels = in_channels;
    for (std::size_t i = 0; i < 4; ++i) c.planes[i] = width_multiplier(std::int64_t{64} << i, width);
    return c;
  }
  // The configuration whose state_dict has these shapes (classes, input channels and each
  // layer's width). Other keys are checked by load_state_dict.
  static ResNet18Config from_state_dict(const sgckpt::Value& sd) {
    if (!sd.is_dict()) throw Error(ErrorKind::Schema, "ResNet18Config.from_state_dict: expected a dict");
    auto shape = [&](const std::string& key, std::size_t dims) -> const Shape& {
      const sgckpt::Value* v = sd.dict().find(key);
      if (v == nullptr || !v->is_tensor())
        throw Error(ErrorKind::Schema, "not a ResNet18 state_dict: no tensor '" + key + "'");
      const Shape& s = v->tensor().shape();
      // No empty dimension: then every size taken from here is backed by that many weights
      // in the file, and the model built from them is no larger than the file allows (a
      // [2^40, 0] linear.weight would otherwise ask for a terabyte-sized classifier).
      if (s.size() != dims || v->tensor().numel() == 0)
        throw Error(ErrorKind::Schema, "not a ResNet18 state_dict: '" + key + "' has shape " + shape_text(s));
      return s;
    };
    ResNet18Config c;
    c.in_channels = shape("conv1.weight", 4)[1];
    for (std::size_t i = 0; i < 4; ++i)
      c.planes[i] = shape("layer" + std::to_string(i + 1) + ".0.conv1.weight", 4)[0];
    c.num_classes = shape("linear.weight", 2)[0];
    return c;
  }
};

// layer1..layer4: torch's nn.Sequential of BasicBlocks (children "0", "1", ...).
class ResNetLayer : public Module {
 public:
  ResNetLayer(std::int64_t in_planes, std::int64_t planes, std::int64_t num_blocks, std::int64_t stride,
              Generator& gen) {
    blocks.reserve(static_cast<std::size_t>(num_blocks));
    for (std::int64_t i = 0; i < num_blocks; ++i)
      blocks.emplace_back(i == 0 ? in_planes : planes, planes, i == 0 ? stride : 1, gen);
  }
  const char* type_name() const override { return "Sequential"; }
  void visit_children(const ChildFn& f) override {
    for (std::size_t i = 0; i < blocks.size(); ++i) f(std::to_string(i), blocks[i]);
  }
  Tensor forward(const Tensor& x) {
    Tensor h = x;
    for (auto& b : blocks) h = b.forward(h);
    return h;
  }
  Tensor backward(const Tensor& dy) {
    Tensor d = dy;
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) d = it->backward(d);
    return d;
  }

  std::vector<BasicBlock> blocks;
};

class ResNet18 : public Module {
 public:
  // Parameters are initialized as torch initializes a new module (nn/init.hpp), drawing from
  // gen in registration order.
  ResNet18(const ResNet18Config& config, Generator& gen)
      : config(validated(config)),
        conv1(config.in_channels, config.planes[0], 3, 1, 1, false, gen),
        bn1(config.planes[0]),
        layer1(config.planes[0], config.planes[0], 2, 1, gen),
        layer2(config.planes[0], config.planes[1], 2, 2, gen),
        layer3(config.planes[1], config.planes[2], 2, 2, gen),
        layer4(config.planes[2], config.planes[3], 2, 2, gen),
        avgpool("AdaptiveAvgPool2d"),
        linear(config.planes[3], config.num_classes, true, gen) {}
  ResNet18(const ResNet18Config& config, std::uint64_t seed) : ResNet18(config, as_lvalue(Generator(seed))) {}

  const char* type_name() const override { return "ResNet18Cifar"; }
  void visit_children(const ChildFn& f) override {
    f("conv1", conv1);
    f("bn1", bn1);
    f("layer1", layer1);
    f("layer2", layer2);
    f("layer3", layer3);
    f("layer4", layer4);
    f("avgpool", avgpool);
    f("linear", linear);
  }

  // logits [N, num_classes] from images [N, in_channels, H, W] (32x32 for CIFAR).
  Tensor forward(const Tensor& x) {
    // stem: conv1 -> bn1 -> relu
    Tensor h = bn1.forward(conv1.forward(x), ops::BnActivation::Relu);
    stem_kept_ = grad_enabled();
    // the four stages
    h = layer1.forward(h);
    h = layer2.forward(h);
    h = layer3.forward(h);
    h = layer4.forward(h);
    // head: global average pool -> linear
    features_shape_ = h.shape();
    return linear.forward(functional::global_avgpool(h));
  }

  // Backpropagates dL/dlogits through the network, accumulating every parameter's gradient
  // (call zero_grad() first). Returns dL/dx when need_input_grad, else an undefined tensor.
  Tensor backward(const Tensor& dlogits, bool need_input_grad = false) {
    if (!stem_kept_) throw Error("ResNet18.backward without a forward that kept its activations");
    Tensor d = functional::global_avgpool_backward(linear.backward(dlogits), features_shape_);
    d = layer4.backward(d);
    d = layer3.backward(d);
    d = layer2.backward(d);
    d = layer1.backward(d);
    Tensor dx = conv1.backward(bn1.backward(d), need_input_grad);
    stem_kept_ = false;
    return dx;
  }

  // SG's replace_head: a new classifier for num_classes (initialized from gen as a new Linear),
  // everything else kept; for fine-tuning a checkpoint on another number of classes. The new
  // head is on the CPU: call it before to(device).
  void replace_head(std::int64_t num_classes, Generator& gen) {
    if (num_classes <= 0) throw Error("ResNet18.replace_head: num_classes must be positive");
    linear = Linear(config.planes[3], num_classes, true, gen);
    config.num_classes = num_classes;
  }

  ResNet18Config config;
  Conv2d conv1;
  BatchNorm2d bn1;
  ResNetLayer layer1, layer2, layer3, layer4;
  Placeholder avgpool;
  Linear linear;

 private:
  static const ResNet18Config& validated(const ResNet18Config& c) {
    bool ok = c.num_classes > 0 && c.in_channels > 0;
    for (auto p : c.planes) ok = ok && p > 0;
    if (!ok)
      throw Error("ResNet18: classes, input channels and every layer's width must be positive (got " +
                  std::to_string(c.num_classes) + " classes, " + std::to_string(c.in_channels) +
                  " channels, planes " + shape_text({c.planes.begin(), c.planes.end()}) + ")");
    return c;
  }
  // The temporary lives until the delegated-to constructor returns.
  static Generator& as_lvalue(Generator&& gen) { return gen; }

  bool stem_kept_ = false;  // the last forward kept its activations for backward
  Shape features_shape_;
};

}  // namespace sgckpt::engine::nn
