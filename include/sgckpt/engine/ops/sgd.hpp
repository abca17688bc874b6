// sgckpt/engine/ops/sgd.hpp: the SGD update (torch 1.13's single-tensor algorithm), its
// per-element math (SGCKPT_HD: the CUDA kernel computes the same expressions) and the CPU loop.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#include "sgckpt/detail/cpu_features.hpp"
#include "sgckpt/detail/host_device.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"
#include "sgckpt/engine/optim_math.hpp"
#include "sgckpt/engine/parallel.hpp"

namespace sgckpt::engine {

namespace ops {

namespace sgd_detail {

// Elements [begin, end) of one update.
inline void sgd_range(const SgdStep& a, std::size_t begin, std::size_t end) {
  if (a.buf == nullptr) {  // momentum 0: param.add_(d_p, alpha=-lr)
    for (std::size_t k = begin; k < end; ++k)
      a.data[k] = optim_math::sgd_apply(
          a.data[k], optim_math::sgd_direction(a.grad[k], a.data[k], a.wd, a.maximize), a.neg_lr);
    return;
  }
  for (std::size_t k = begin; k < end; ++k) {
    const float d = optim_math::sgd_direction(a.grad[k], a.data[k], a.wd, a.maximize);
    const float b = a.first ? d : optim_math::sgd_momentum(a.buf[k], d, a.momentum, a.one_minus_dampening);
    a.buf[k] = b;
    a.data[k] =
        optim_math::sgd_apply(a.data[k], optim_math::sgd_step_dir(d, b, a.momentum, a.nesterov), a.neg_lr);
  }
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__)
#define SGCKPT_SGD_FMA 1
// The same loop compiled for FMA hardware: a portable build (no -mfma) calls libm's fmaf,
// emulated in software, three times per element (ResNet18: 170 ms per step, torch 30 ms).
// fmaf is correctly rounded either way, so both give the same bits.
__attribute__((target("avx2,fma"), flatten)) inline void sgd_range_fma(const SgdStep& a, std::size_t begin,
                                                                       std::size_t end) {
  sgd_range(a, begin, end);
}
#endif

}  // namespace sgd_detail

// Elementwise, so splitting over threads does not change any result.
inline void sgd_step(const SgdStep& a, std::size_t n) {
  constexpr std::size_t kMinPerThread = std::size_t{1} << 15;  // below: threads cost more than they save
  auto run = [&](std::size_t b, std::size_t e) {
#ifdef SGCKPT_SGD_FMA
    if (sgckpt::detail::cpu_features().avx2_fma) return sgd_detail::sgd_range_fma(a, b, e);
#endif
    sgd_detail::sgd_range(a, b, e);
  };
  if (n < 2 * kMinPerThread) return run(0, n);
  const std::int64_t chunks = static_cast<std::int64_t>(n / kMinPerThread);
  parallel_for(chunks, [&](std::int64_t c0, std::int64_t c1, int) {
    run(static_cast<std::size_t>(c0) * n / static_cast<std::size_t>(chunks),
        static_cast<std::size_t>(c1) * n / static_cast<std::size_t>(chunks));
  });
}

}  // namespace ops

}  // namespace sgckpt::engine
