// sgckpt/engine/nn/loss.hpp: torch.nn.CrossEntropyLoss(label_smoothing=eps), mean reduction.
//
//   CrossEntropyLoss ce(0.1f);
//   float loss = ce.forward(logits, labels);   // logits [N, C] float32, labels [N] int64
//   Tensor dlogits = ce.backward();            // d(loss)/d(logits)
//
// The labels are checked in host memory (an out-of-range label is an error naming the
// sample), then copied to the logits' device. Returning the loss is a host synchronization;
// forward_to() writes it to device memory instead.
#pragma once

#include <cstdint>
#include <string>

#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::nn {

class CrossEntropyLoss {
 public:
  explicit CrossEntropyLoss(float label_smoothing = 0.0f) : label_smoothing(label_smoothing) {
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
      throw Error("CrossEntropyLoss: label_smoothing must be in [0, 1], got " +
                  std::to_string(label_smoothing));
  }

  float forward(const Tensor& logits, const Tensor& labels) {
    Backend& be = prepare(logits, labels);
    const std::int64_t N = logits.shape()[0], C = logits.shape()[1];
    return be.cross_entropy_forward(probs_.data_ptr<float>(), logits.data_ptr<float>(),
                                    labels_.data_ptr<std::int64_t>(), N, C, label_smoothing);
  }

  // The same, the loss written to `loss` (one float32 on the logits' device) without waiting
  // for it: the host reads it later (Backend::copy_to_host_later).
  void forward_to(const Tensor& logits, const Tensor& labels, Tensor& loss) {
    Backend& be = prepare(logits, labels);
    if (loss.dtype() != DType::Float32 || loss.numel() != 1 || loss.device() != logits.device())
      throw Error("CrossEntropyLoss.forward_to: the loss goes into one float32 on the logits' device");
    const std::int64_t N = logits.shape()[0], C = logits.shape()[1];
    be.cross_entropy_forward_to(loss.data_ptr<float>(), probs_.data_ptr<float>(), logits.data_ptr<float>(),
                                labels_.data_ptr<std::int64_t>(), N, C, label_smoothing);
  }

  // d(dloss * loss)/d(logits) for the last forward.
  Tensor backward(float dloss = 1.0f) {
    if (!probs_.defined()) throw Error("CrossEntropyLoss.backward without a forward");
    const std::int64_t N = probs_.shape()[0], C = probs_.shape()[1];
    Backend& be = backend_for("CrossEntropyLoss.backward", {&probs_, &labels_});
    Tensor dlogits = Tensor::empty({N, C}, DType::Float32, probs_.device());
    be.cross_entropy_backward(dlogits.data_ptr<float>(), probs_.data_ptr<float>(),
                              labels_.data_ptr<std::int64_t>(), N, C, label_smoothing, dloss);
    return dlogits;
  }

  float label_smoothing;

 private:
  // Checks the arguments (the labels in host memory), moves the labels to the logits' device
  // and makes room for the probabilities backward needs.
  Backend& prepare(const Tensor& logits, const Tensor& labels) {
    if (logits.dtype() != DType::Float32 || logits.dim() != 2 || logits.shape()[0] == 0)
      throw Error("CrossEntropyLoss: expected float32 logits [N, C] with N > 0, got " +
                  std::string(sgckpt::name(logits.dtype())) + shape_text(logits.shape()));
    const std::int64_t N = logits.shape()[0], C = logits.shape()[1];
    if (labels.dtype() != DType::Int64 || labels.shape() != Shape{N} || labels.device() != Device::CPU)
      throw Error("CrossEntropyLoss: expected int64 labels [" + std::to_string(N) + "] in host memory, got " +
                  std::string(sgckpt::name(labels.dtype())) + shape_text(labels.shape()) + " on " +
                  device_name(labels.device()));
    const std::int64_t* y = labels.data<std::int64_t>();
    for (std::int64_t i = 0; i < N; ++i)
      if (y[i] < 0 || y[i] >= C)
        throw Error("CrossEntropyLoss: label " + std::to_string(y[i]) + " of sample " + std::to_string(i) +
                    " is outside [0, " + std::to_string(C) + ")");
    labels_ = labels.to(logits.device());
    Backend& be = backend_for("CrossEntropyLoss", {&logits, &labels_});
    probs_ = Tensor::empty({N, C}, DType::Float32, logits.device());
    return be;
  }

  Tensor probs_, labels_;  // kept by forward
};

}  // namespace sgckpt::engine::nn
