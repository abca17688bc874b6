// sgckpt/engine/ops/batchnorm_act.hpp: BatchNorm followed by ReLU, or by a residual add and
// ReLU, as one op (ops::BnActivation). A device backend fuses them into one pass over memory;
// on the CPU they are exactly the sequences the modules ran before the op existed
// (batchnorm, then add_forward, then relu_forward; backward: relu_backward, then batchnorm's),
// so the fused op and the sequence give the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "sgckpt/engine/ops/activation.hpp"
#include "sgckpt/engine/ops/batchnorm.hpp"
#include "sgckpt/engine/ops/elementwise.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"

namespace sgckpt::engine::ops {

inline void batchnorm_act_forward(const BatchNormForward& a) {
  if (a.training) {
    batchnorm_forward_train(a.y, a.save_mean, a.save_invstd, a.running_mean, a.running_var, a.x, a.weight,
                            a.bias, a.N, a.C, a.HW, a.eps, a.momentum);
  } else {
    std::memcpy(a.save_mean, a.running_mean, static_cast<std::size_t>(a.C) * sizeof(float));
    batchnorm_eval_invstd(a.save_invstd, a.running_var, a.C, a.eps);
    batchnorm_forward_eval(a.y, a.x, a.weight, a.bias, a.save_mean, a.save_invstd, a.N, a.C, a.HW);
  }
  const std::int64_t n = a.N * a.C * a.HW;
  if (a.act == BnActivation::AddRelu) add_forward(a.y, a.y, a.residual, n);
  if (a.act != BnActivation::None) relu_forward(a.y, a.y, n);
}

inline void batchnorm_act_backward(const BatchNormBackward& a) {
  const float* g = a.dy;
  if (a.act != BnActivation::None) {
    relu_backward(a.dact, a.dy, a.y, a.N * a.C * a.HW);
    g = a.dact;
  }
  batchnorm_backward(a.dx, a.dweight, a.dbias, g, a.x, a.weight, a.mean, a.invstd, a.N, a.C, a.HW,
                     a.training);
}

}  // namespace sgckpt::engine::ops
