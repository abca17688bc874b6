// sgckpt/engine/nn/functional.hpp: the parameter-free ops on engine tensors (ReLU, residual
// add, global average pooling, top-k accuracy), with shape checks, over ops/.
#pragma once

#include <cstdint>
#include <string>

#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::nn::functional {

inline void check_float(const Tensor& t, const char* what) {
  if (!t.defined() || t.dtype() != DType::Float32)
    throw Error(std::string(what) + ": expected a float32 tensor");
}
inline void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  if (a.shape() != b.shape())
    throw Error(std::string(what) + ": shapes " + shape_text(a.shape()) + " and " + shape_text(b.shape()) +
                " differ");
}

// x = max(x, 0), in place (x is then the output the backward needs).
inline void relu_(Tensor& x) {
  check_float(x, "relu_");
  backend_for("relu_", {&x})
      .relu_forward(x.data_ptr<float>(), x.data_ptr<float>(), static_cast<std::int64_t>(x.numel()));
}
// dL/dx of relu from dL/dy and relu's output y (a new tensor).
inline Tensor relu_backward(const Tensor& dy, const Tensor& y) {
  check_float(dy, "relu_backward");
  check_same_shape(dy, y, "relu_backward");
  Backend& be = backend_for("relu_backward", {&dy, &y});
  Tensor dx = Tensor::empty(dy.shape(), DType::Float32, dy.device());
  be.relu_backward(dx.data_ptr<float>(), dy.data_ptr<float>(), y.data_ptr<float>(),
                   static_cast<std::int64_t>(dy.numel()));
  return dx;
}
// The same in place: dy = dy where y > 0, else 0.
inline void relu_backward_(Tensor& dy, const Tensor& y) {
  check_float(dy, "relu_backward_");
  check_same_shape(dy, y, "relu_backward_");
  backend_for("relu_backward_", {&dy, &y})
      .relu_backward(dy.data_ptr<float>(), dy.data_ptr<float>(), y.data_ptr<float>(),
                     static_cast<std::int64_t>(dy.numel()));
}

// a += b.
inline void add_(Tensor& a, const Tensor& b) {
  check_float(a, "add_");
  check_same_shape(a, b, "add_");
  backend_for("add_", {&a, &b})
      .add(a.data_ptr<float>(), a.data_ptr<float>(), b.data_ptr<float>(),
           static_cast<std::int64_t>(a.numel()));
}

// [N, C, H, W] -> [N, C] (AdaptiveAvgPool2d(1) then flatten).
inline Tensor global_avgpool(const Tensor& x) {
  check_float(x, "global_avgpool");
  if (x.dim() != 4) throw Error("global_avgpool: expected [N, C, H, W], got " + shape_text(x.shape()));
  Backend& be = backend_for("global_avgpool", {&x});
  Tensor y = Tensor::empty({x.shape()[0], x.shape()[1]}, DType::Float32, x.device());
  be.global_avgpool_forward(y.data_ptr<float>(), x.data_ptr<float>(), x.shape()[0] * x.shape()[1],
                            x.shape()[2] * x.shape()[3]);
  return y;
}
// dx [N, C, H, W] from dy [N, C].
inline Tensor global_avgpool_backward(const Tensor& dy, const Shape& input_shape) {
  check_float(dy, "global_avgpool_backward");
  if (input_shape.size() != 4 || dy.shape() != Shape{input_shape[0], input_shape[1]})
    throw Error("global_avgpool_backward: gradient " + shape_text(dy.shape()) + " for input " +
                shape_text(input_shape));
  Backend& be = backend_for("global_avgpool_backward", {&dy});
  Tensor dx = Tensor::empty(input_shape, DType::Float32, dy.device());
  be.global_avgpool_backward(dx.data_ptr<float>(), dy.data_ptr<float>(), input_shape[0] * input_shape[1],
                             input_shape[2] * input_shape[3]);
  return dx;
}

// Checks topk_correct's arguments; returns the labels on the logits' device.
inline Tensor topk_labels(const Tensor& logits, const Tensor& labels) {
  check_float(logits, "topk_correct");
  if (logits.dim() != 2 || labels.dtype() != DType::Int64 || labels.shape() != Shape{logits.shape()[0]})
    throw Error("topk_correct: expected logits [N, C] and int64 labels [N], got " +
                shape_text(logits.shape()) + " and " + std::string(sgckpt::name(labels.dtype())) +
                shape_text(labels.shape()));
  return labels.to(logits.device());
}

// Number of samples whose label is among the k highest logits (logits [N, C], labels [N]
// int64, on the logits' device or in host memory). A host synchronization on a device.
inline std::int64_t topk_correct(const Tensor& logits, const Tensor& labels, std::int64_t k) {
  const Tensor y = topk_labels(logits, labels);
  return backend_for("topk_correct", {&logits, &y})
      .topk_correct(logits.data_ptr<float>(), y.data_ptr<std::int64_t>(), logits.shape()[0],
                    logits.shape()[1], k);
}

// The same count written to `correct` (one int64 on the logits' device), without waiting.
inline void topk_correct_to(const Tensor& logits, const Tensor& labels, std::int64_t k, Tensor& correct) {
  const Tensor y = topk_labels(logits, labels);
  if (correct.dtype() != DType::Int64 || correct.numel() != 1 || correct.device() != logits.device())
    throw Error("topk_correct_to: the count goes into one int64 on the logits' device");
  backend_for("topk_correct", {&logits, &y})
      .topk_correct_to(correct.data_ptr<std::int64_t>(), logits.data_ptr<float>(), y.data_ptr<std::int64_t>(),
                       logits.shape()[0], logits.shape()[1], k);
}

}  // namespace sgckpt::engine::nn::functional
