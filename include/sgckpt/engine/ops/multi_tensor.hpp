// sgckpt/engine/ops/multi_tensor.hpp: fused updates over many tensors at once (the optimizer
// step, gradient unscaling, EMA, weight averaging), written once for the CUDA kernels
// (kernels/multi_tensor.cu) and for a CPU emulation of them (docs/cuda.md, "Multi-tensor
// kernels").
//
// A Table lists the tensors (Slot: up to kMaxLists pointers of equal length: a parameter, its
// gradient, its optimizer state...) and cuts them into Chunks of at most `chunk` elements; one
// CUDA block runs one chunk. The table is built once on the host (plain C++, here) and kept on
// the device: a step launches one kernel over every chunk instead of one per tensor.
//
// The per-element work is an Op: a struct whose SGCKPT_HD operator()(slot, i) reads and writes
// element i of the slot's lists through the same math functions the CPU loops use
// (ops/sgd.hpp, optim/adam.hpp, detail/elementwise.hpp). chunk_body() is the kernel's loop;
// emulate() runs it on the host block by block, thread by thread, so a test (under ASan) sees
// exactly the operations the device runs, in the same order.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/detail/elementwise.hpp"
#include "sgckpt/detail/host_device.hpp"
#include "sgckpt/engine/optim_math.hpp"

namespace sgckpt::engine::ops::mt {

inline constexpr int kMaxLists = 5;

// One tensor of a table: the element `i` of list `l` is static_cast<T*>(ptr[l])[i].
struct Slot {
  void* ptr[kMaxLists] = {};
  std::int64_t numel = 0;
};

// Elements [begin, end) of slots[slot].
struct Chunk {
  std::int32_t slot = 0;
  std::int32_t reserved = 0;
  std::int64_t begin = 0, end = 0;
};

struct TableOptions {
  std::int64_t chunk = std::int64_t{1} << 16;  // elements per chunk (one block's work)
  std::int64_t align = 4;                      // chunk starts are multiples of this (vector loads)
};

struct Table {
  std::vector<Slot> slots;
  std::vector<Chunk> chunks;
  std::int64_t elements = 0;
};

// Cuts `slots` into chunks: each slot's elements are covered once, in order, by chunks of at
// most o.chunk elements starting at multiples of o.align (o.chunk is a multiple of o.align).
// Empty slots get no chunk. Throws on arguments a kernel could not run.
inline Table make_table(std::span<const Slot> slots, TableOptions o = {}) {
  if (o.align < 1 || o.chunk < o.align || o.chunk % o.align != 0)
    throw Error("multi_tensor: chunk (" + std::to_string(o.chunk) +
                ") must be a positive multiple of align (" + std::to_string(o.align) + ")");
  if (slots.size() > static_cast<std::size_t>(INT32_MAX)) throw Error("multi_tensor: too many tensors");
  Table t;
  t.slots.assign(slots.begin(), slots.end());
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const std::int64_t n = slots[s].numel;
    if (n < 0) throw Error("multi_tensor: tensor " + std::to_string(s) + " has a negative length");
    if (n > 0 && slots[s].ptr[0] == nullptr)
      throw Error("multi_tensor: tensor " + std::to_string(s) + " has no data pointer");
    for (std::int64_t b = 0; b < n; b += o.chunk)
      t.chunks.push_back({static_cast<std::int32_t>(s), 0, b, b + (n - b < o.chunk ? n - b : o.chunk)});
    t.elements += n;
  }
  if (t.chunks.size() > static_cast<std::size_t>(INT32_MAX))
    throw Error("multi_tensor: more chunks than a grid can hold (raise TableOptions::chunk)");
  return t;
}

// The kernel's loop over one chunk: thread `tid` of `nthreads` takes elements tid, tid +
// nthreads, ... (consecutive threads, consecutive elements: coalesced on the device).
template <class Op>
SGCKPT_HD inline void chunk_body(const Slot* slots, const Chunk& c, std::int64_t tid, std::int64_t nthreads,
                                 const Op& op) {
  const Slot& s = slots[c.slot];
  for (std::int64_t i = c.begin + tid; i < c.end; i += nthreads) op(s, i);
}

// The host's run of a launch: every block (chunk) in order, every thread of it in order.
template <class Op>
void emulate(const Table& t, const Op& op, std::int64_t threads_per_block = 256) {
  for (const Chunk& c : t.chunks)
    for (std::int64_t tid = 0; tid < threads_per_block; ++tid)
      chunk_body(t.slots.data(), c, tid, threads_per_block, op);
}

// ---- the operations -------------------------------------------------------------------------
//
// `skip`, where an op has it, points at the step's found-inf flag on the device (null: never
// skip): a step whose gradients overflowed leaves every tensor as it was, as GradScaler.step
// does by not calling optimizer.step().

// SGD (torch 1.13's single-tensor algorithm, ops/sgd.hpp). Lists: 0 param, 1 grad, 2 momentum
// buffer (null slot pointer: momentum 0).
struct SgdOp {
  const std::int32_t* skip = nullptr;
  bool first = false;  // the buffers are new and take d_p
  bool nesterov = false, maximize = false;
  float wd = 0, momentum = 0, one_minus_dampening = 1, neg_lr = 0;

  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    if (skip != nullptr && *skip != 0) return;
    float* p = static_cast<float*>(s.ptr[0]);
    const float* g = static_cast<const float*>(s.ptr[1]);
    float* buf = static_cast<float*>(s.ptr[2]);
    const float d = optim_math::sgd_direction(g[i], p[i], wd, maximize);
    if (buf == nullptr) {
      p[i] = optim_math::sgd_apply(p[i], d, neg_lr);
      return;
    }
    const float b = first ? d : optim_math::sgd_momentum(buf[i], d, momentum, one_minus_dampening);
    buf[i] = b;
    p[i] = optim_math::sgd_apply(p[i], optim_math::sgd_step_dir(d, b, momentum, nesterov), neg_lr);
  }
};

// Adam / AdamW (optim/adam.hpp). Lists: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq
// (amsgrad). The bias corrections depend on the step count, which only the device knows when
// steps may be skipped: the host passes them for the next kAdamWindow counts from step_base,
// and the op picks the entry of (*step + 1), the count after this update. The host computes
// them as the CPU optimizer does (double pow, then rounded to float), so both agree bitwise.
inline constexpr int kAdamWindow = 4;
struct AdamScalars {
  float neg_step_size = 0, bc2_sqrt = 1;
};
struct AdamOp {
  const std::int32_t* skip = nullptr;
  float* step = nullptr;  // the group's step count before this update (device); advanced after it
  float step_base = 0;    // entry k of `table` is for step count step_base + k
  AdamScalars table[kAdamWindow];
  bool decoupled = false, amsgrad = false, maximize = false;
  float beta1 = 0.9f, one_minus_beta1 = 0.1f, beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float eps = 1e-8f, wd = 0, one_minus_lr_wd = 1;

  std::int32_t* out_of_window = nullptr;  // raised (and nothing updated) when the count is not in the table

  // The entry of the count after this update, or -1 when the host's window misses it (the host
  // must move step_base on at least every kAdamWindow steps).
  SGCKPT_HD int entry() const {
    const float k = *step + 1.0f - step_base;
    return k >= 0.0f && k < static_cast<float>(kAdamWindow) ? static_cast<int>(k) : -1;
  }
  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    if (skip != nullptr && *skip != 0) return;
    const int e = entry();
    if (e < 0) {  // never a wrong bias correction: the step does nothing and says so
      if (out_of_window != nullptr) *out_of_window = 1;
      return;
    }
    const AdamScalars c = table[e];
    float* p = static_cast<float*>(s.ptr[0]);
    const float* g = static_cast<const float*>(s.ptr[1]);
    float* m = static_cast<float*>(s.ptr[2]);
    float* v = static_cast<float*>(s.ptr[3]);
    float* vmax = static_cast<float*>(s.ptr[4]);
    float x = p[i];
    if (decoupled) x = optim_math::adamw_decay(x, one_minus_lr_wd);
    const float gr = optim_math::adam_grad(g[i], x, decoupled ? 0.0f : wd, maximize);
    const float mi = m[i] = optim_math::adam_m(m[i], gr, beta1, one_minus_beta1);
    float vi = v[i] = optim_math::adam_v(v[i], gr, beta2, one_minus_beta2);
    if (amsgrad) {
      const float mx = vmax[i];
      vi = vmax[i] = (mx >= vi || mx != mx) ? mx : vi;  // torch.maximum (NaN propagates)
    }
    p[i] = optim_math::adam_apply(x, mi, vi, c.bc2_sqrt, eps, c.neg_step_size);
  }
};

// The host side of AdamOp's table: entry k for step count base + k, as Adam::step computes it.
inline void fill_adam_table(AdamOp& op, double lr, double beta1, double beta2, float step_base) {
  op.step_base = step_base;
  for (int k = 0; k < kAdamWindow; ++k) {
    const double step = static_cast<double>(step_base + static_cast<float>(k));
    const double bc1 = 1 - std::pow(beta1, step);
    const double bc2 = 1 - std::pow(beta2, step);
    op.table[k] = {static_cast<float>(-(lr / bc1)), static_cast<float>(std::sqrt(bc2))};
  }
}

// Unscale the gradients (list 0) by 1/scale and raise *found_inf where one is inf or NaN. Every
// writer stores the same 1, so the race is benign and no floating-point atomic is needed.
struct UnscaleOp {
  const float* scale = nullptr;  // the scaler's scale (device)
  std::int32_t* found_inf = nullptr;

  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    const float inv = static_cast<float>(1.0 / static_cast<double>(*scale));  // GradScaler::unscale's
    float* g = static_cast<float*>(s.ptr[0]);
    if (optim_math::unscale_grad(g[i], inv)) *found_inf = 1;
  }
};

// EMA of floating tensors: list 0 the EMA, list 1 the model (ckpt/ema.hpp's blend).
struct EmaOp {
  float d = 0, a = 1;
  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    float* e = static_cast<float*>(s.ptr[0]);
    const float* w = static_cast<const float*>(s.ptr[1]);
    e[i] = ::sgckpt::detail::ew::ema_blend(e[i], w[i], d, a);
  }
};

// Integer buffers of an EMA (num_batches_tracked): copied. List 0 the EMA's, list 1 the model's.
struct CopyI64Op {
  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    static_cast<std::int64_t*>(s.ptr[0])[i] = static_cast<const std::int64_t*>(s.ptr[1])[i];
  }
};

// Weight averaging: list 0 the double sums, list 1 a snapshot (float). The first snapshot
// starts the sums (as ckpt/averaging.hpp's loop loads its first input), later ones add.
struct AverageAddOp {
  bool first = false;
  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    double* sum = static_cast<double*>(s.ptr[0]);
    const double x = static_cast<double>(static_cast<const float*>(s.ptr[1])[i]);
    sum[i] = first ? x : ::sgckpt::detail::ew::mean_accumulate(sum[i], x);
  }
};
// list 0 the average (float), list 1 the double sums.
struct AverageFinishOp {
  double count = 1;
  SGCKPT_HD void operator()(const Slot& s, std::int64_t i) const {
    static_cast<float*>(s.ptr[0])[i] =
        static_cast<float>(::sgckpt::detail::ew::mean_finish(static_cast<const double*>(s.ptr[1])[i], count));
  }
};

// ---- one-thread steps around a launch ---------------------------------------------------------

// After an optimizer launch: the group's step count moves on unless the step was skipped.
SGCKPT_HD inline void advance_step(float* step, const std::int32_t* skip) {
  if (skip == nullptr || *skip == 0) *step += 1.0f;
}

// After an AdamOp launch (one thread): its step count moves on unless the step was skipped or
// its count fell outside the host's window (then nothing was updated).
SGCKPT_HD inline void adam_advance_step(const AdamOp& op) {
  if (op.entry() >= 0) advance_step(op.step, op.skip);
}

// ---- what a backend runs over a table ---------------------------------------------------------

// One fused update; an AdamOp also advances its step count (adam_advance_step) after the update.
using FusedOp = std::variant<SgdOp, AdamOp, UnscaleOp, EmaOp, CopyI64Op, AverageAddOp, AverageFinishOp>;

// The host's run of one fused update over a table: the CPU emulation of the kernel's launch.
inline void run_emulated(const Table& t, const FusedOp& op) {
  std::visit(
      [&](const auto& o) {
        emulate(t, o);
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, AdamOp>) adam_advance_step(o);
      },
      op);
}

}  // namespace sgckpt::engine::ops::mt
