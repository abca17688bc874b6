// sgckpt/ckpt/ema.hpp: exponential moving average of a model's weights, SuperGradients'
// way (docs/supergradients.md §5), as one fused pass over a state dict.
//
//   EmaSchedule s{EmaDecayType::Exp, 0.9999, 15.0};
//   ema_update(ema_state, model_state, s.at(global_step, total_steps));
//
// Both states are `Value` state dicts (dict of str -> tensor), so this works for any engine
// that can show its weights as host tensors; the CUDA twin (kernels/ema_average.cu) uses the
// same per-element math from detail/elementwise.hpp.
//
// What an update does, tensor by tensor, matched BY KEY:
//   - floating tensors (float32, float64, float16, bfloat16): ema = d * ema + (1 - d) * w, in
//     torch's fused form (see detail/elementwise.hpp; bit-identical to torch's mul_ + add_(alpha) for
//     float32 and float64). float16/bfloat16 are computed in float and rounded once.
//   - every other tensor (integer and bool buffers such as BatchNorm's num_batches_tracked,
//     complex): COPIED from the model. SG leaves them untouched, so its EMA keeps the count
//     it had when the EMA was created or loaded; we copy like timm's ModelEmaV3 so that the
//     EMA state dict is a consistent snapshot of the model (its counters are the model's).
//   - non-tensor entries (rare `_extra_state` objects) are left alone.
// Deviations from SG that fix its traps: SG zips the two state dicts BY POSITION, so a
// reordered or different model silently blends unrelated tensors; we match by key and refuse
// (one sgckpt::Error naming the keys) when keys, shapes or dtypes differ, before changing
// anything.
//
// Memory: each EMA tensor is read and written once and each model tensor read once (12 bytes
// per float32 parameter, the bandwidth floor of an unfused EMA). Large states are split by
// bytes over a few threads (the fused loop is memory-bound; on most machines one core cannot
// saturate the memory bus). On x86-64 the float32/float64 loops use AVX2+FMA when the CPU has
// them (checked at run time, so a portable build is still fast), else a scalar loop whose
// fma() comes from libm: slower, identical results.
//
// EMA tensors that are read-only views of a memory-mapped file (load with mmap) or are not
// contiguous are first replaced, inside ema_state, by owned contiguous copies (views of one
// storage that were identical stay shared). The model state is only read.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/threads.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/detail/cpu_features.hpp"
#include "sgckpt/detail/elementwise.hpp"
#include "sgckpt/detail/thread_pool.hpp"

// The AVX2 loops need GCC or Clang on x86; nvcc (whose device side should include only
// detail/elementwise.hpp) gets the portable loops.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__)
#include <immintrin.h>
#define SGCKPT_EMA_X86 1
#endif

namespace sgckpt {

// ---- Decay schedules --------------------------------------------------------------------------

// SG's EMA_DECAY_FUNCTIONS (training/utils/ema_decay_schedules.py).
enum class EmaDecayType { Constant, Threshold, Exp };

inline std::string_view to_string(EmaDecayType t) {
  switch (t) {
    case EmaDecayType::Constant:
      return "constant";
    case EmaDecayType::Threshold:
      return "threshold";
    case EmaDecayType::Exp:
      return "exp";
  }
  return "?";
}

// "constant", "threshold" or "exp" (SG's registry names; case-insensitive).
inline EmaDecayType parse_ema_decay_type(std::string_view s) {
  std::string lower(s);
  for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "constant") return EmaDecayType::Constant;
  if (lower == "threshold") return EmaDecayType::Threshold;
  if (lower == "exp") return EmaDecayType::Exp;
  throw Error("unknown EMA decay type '" + std::string(s) + "' (expected constant, threshold or exp)");
}

// The decay for an update. SG calls it with step = the 1-based global step of the optimizer
// step just taken, (batch_idx + 1) + len(train_loader) * epoch, and total_steps =
// len(train_loader) * max_epochs (docs/supergradients.md §5).
struct EmaSchedule {
  EmaDecayType type = EmaDecayType::Exp;
  double decay = 0.9999;  // D, the maximum decay
  double beta = 15.0;     // exp only

  double at(std::int64_t step, std::int64_t total_steps) const {
    switch (type) {
      case EmaDecayType::Constant:
        return decay;
      case EmaDecayType::Threshold: {
        // min(D, (1 + step) / (10 + step)), as SG's np.minimum.
        const double s = static_cast<double>(step);
        return std::min(decay, (1.0 + s) / (10.0 + s));
      }
      case EmaDecayType::Exp: {
        if (total_steps <= 0)
          throw Error("EMA 'exp' decay needs total_steps > 0 (got " + std::to_string(total_steps) + ")");
        // D * (1 - exp(-x * beta)) with x = step / total_steps: SG's operation order.
        const double x = static_cast<double>(step) / static_cast<double>(total_steps);
        return decay * (1.0 - std::exp(-x * beta));
      }
    }
    return decay;
  }
};

namespace detail {

// ---- Splitting work over threads by bytes ------------------------------------------------------

struct WorkPiece {
  std::size_t item;   // index into the caller's item list
  std::size_t begin;  // element range inside that item
  std::size_t end;
};

// Splits items of `counts[i]` elements, each weighing `weights[i]` bytes, into `parts`
// contiguous runs of about equal bytes. Cuts inside an item fall on multiples of 16
// elements so that two threads never write into the same cache line.
inline std::vector<std::vector<WorkPiece>> split_by_bytes(const std::vector<std::size_t>& counts,
                                                          const std::vector<std::size_t>& weights,
                                                          std::size_t parts) {
  std::vector<std::vector<WorkPiece>> out(std::max<std::size_t>(parts, 1));
  std::size_t total = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) total += counts[i] * weights[i];
  if (out.size() == 1 || total == 0) {
    for (std::size_t i = 0; i < counts.size(); ++i)
      if (counts[i]) out[0].push_back({i, 0, counts[i]});
    return out;
  }
  const std::size_t n = out.size();
  auto goal = [&](std::size_t p) { return total / n * (p + 1); };  // bytes done when part p ends
  std::size_t part = 0, done = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    std::size_t pos = 0;
    while (pos < counts[i]) {
      while (part + 1 < n && done >= goal(part)) ++part;
      std::size_t end = counts[i];
      if (part + 1 < n && done + (counts[i] - pos) * weights[i] > goal(part)) {
        std::size_t take = (goal(part) - done + weights[i] - 1) / weights[i];  // >= 1
        take = (take + 15) / 16 * 16;
        end = std::min(counts[i], pos + take);
      }
      out[part].push_back({i, pos, end});
      done += (end - pos) * weights[i];
      pos = end;
    }
  }
  return out;
}

// Threads to use for `bytes` of streaming work: 0 = automatic (the process's thread setting,
// sgckpt::num_threads(), at most 8, and at least 2 MiB per thread: below that, starting a
// thread costs more than it saves).
inline std::size_t choose_threads(unsigned requested, std::size_t bytes) {
  if (requested > 0) return requested;
  const auto hw = static_cast<std::size_t>(num_threads());
  const std::size_t by_size = std::max<std::size_t>(1, bytes / (std::size_t{2} << 20));
  return std::min({hw, std::size_t{8}, by_size});
}

// ---- The EMA loops ------------------------------------------------------------------------------

inline void ema_loop_f32(float* e, const float* w, std::size_t n, float d, float a) {
  for (std::size_t i = 0; i < n; ++i) e[i] = ew::ema_blend(e[i], w[i], d, a);
}
inline void ema_loop_f64(double* e, const double* w, std::size_t n, double d, double a) {
  for (std::size_t i = 0; i < n; ++i) e[i] = ew::ema_blend(e[i], w[i], d, a);
}
// Half types: unaligned-safe loads (a storage offset may be odd), computed in float.
template <float (*ToFloat)(std::uint16_t), std::uint16_t (*FromFloat)(float)>
void ema_loop_16(std::byte* e, const std::byte* w, std::size_t n, float d, float a) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t eb, wb;
    std::memcpy(&eb, e + 2 * i, 2);
    std::memcpy(&wb, w + 2 * i, 2);
    const std::uint16_t r = FromFloat(ew::ema_blend(ToFloat(eb), ToFloat(wb), d, a));
    std::memcpy(e + 2 * i, &r, 2);
  }
}

#ifdef SGCKPT_EMA_X86
// The same math, 8 (4) lanes at a time. _mm256_fmadd_ps(w, a, e*d) is fmaf(w, a, e*d) per
// lane, so these loops and ema_loop_f32/f64 agree bit for bit (tested). The scalar tail
// inlines ew::ema_blend, which this function's target turns into a single vfmadd.
__attribute__((target("avx2,fma"))) inline void ema_loop_f32_avx2(float* e, const float* w, std::size_t n,
                                                                  float d, float a) {
  const __m256 vd = _mm256_set1_ps(d), va = _mm256_set1_ps(a);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = _mm256_loadu_ps(e + i), e1 = _mm256_loadu_ps(e + i + 8);
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
    _mm256_storeu_ps(e + i, _mm256_fmadd_ps(w0, va, _mm256_mul_ps(e0, vd)));
    _mm256_storeu_ps(e + i + 8, _mm256_fmadd_ps(w1, va, _mm256_mul_ps(e1, vd)));
  }
  for (; i < n; ++i) e[i] = ew::ema_blend(e[i], w[i], d, a);
}
__attribute__((target("avx2,fma"))) inline void ema_loop_f64_avx2(double* e, const double* w, std::size_t n,
                                                                  double d, double a) {
  const __m256d vd = _mm256_set1_pd(d), va = _mm256_set1_pd(a);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d e0 = _mm256_loadu_pd(e + i), e1 = _mm256_loadu_pd(e + i + 4);
    const __m256d w0 = _mm256_loadu_pd(w + i), w1 = _mm256_loadu_pd(w + i + 4);
    _mm256_storeu_pd(e + i, _mm256_fmadd_pd(w0, va, _mm256_mul_pd(e0, vd)));
    _mm256_storeu_pd(e + i + 4, _mm256_fmadd_pd(w1, va, _mm256_mul_pd(e1, vd)));
  }
  for (; i < n; ++i) e[i] = ew::ema_blend(e[i], w[i], d, a);
}
// Half types: the portable loop's body, compiled for FMA so that ema_blend is one instruction.
template <float (*ToFloat)(std::uint16_t), std::uint16_t (*FromFloat)(float)>
__attribute__((target("avx2,fma"))) void ema_loop_16_avx2(std::byte* e, const std::byte* w, std::size_t n,
                                                          float d, float a) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t eb, wb;
    std::memcpy(&eb, e + 2 * i, 2);
    std::memcpy(&wb, w + 2 * i, 2);
    const std::uint16_t r = FromFloat(ew::ema_blend(ToFloat(eb), ToFloat(wb), d, a));
    std::memcpy(e + 2 * i, &r, 2);
  }
}
// Compiled with -mavx2 -mfma the answer is known; otherwise the CPU is asked once.
inline bool cpu_has_avx2_fma() {
#if defined(__AVX2__) && defined(__FMA__)
  return true;
#else
  return cpu_features().avx2_fma;
#endif
}
#endif

// Which loops run the float work of EMA updates and averages. Tests (and the bench) force
// the portable loops to compare them with the vector ones; nothing else should touch this.
enum class EmaKernel { Auto, Portable };
inline EmaKernel& ema_kernel_override() {
  static EmaKernel k = EmaKernel::Auto;
  return k;
}

inline void ema_f32(float* e, const float* w, std::size_t n, float d, float a) {
#ifdef SGCKPT_EMA_X86
  if (ema_kernel_override() == EmaKernel::Auto && cpu_has_avx2_fma()) return ema_loop_f32_avx2(e, w, n, d, a);
#endif
  ema_loop_f32(e, w, n, d, a);
}
inline void ema_f64(double* e, const double* w, std::size_t n, double d, double a) {
#ifdef SGCKPT_EMA_X86
  if (ema_kernel_override() == EmaKernel::Auto && cpu_has_avx2_fma()) return ema_loop_f64_avx2(e, w, n, d, a);
#endif
  ema_loop_f64(e, w, n, d, a);
}

template <float (*ToFloat)(std::uint16_t), std::uint16_t (*FromFloat)(float)>
void ema_16(std::byte* e, const std::byte* w, std::size_t n, float d, float a) {
#ifdef SGCKPT_EMA_X86
  if (ema_kernel_override() == EmaKernel::Auto && cpu_has_avx2_fma())
    return ema_loop_16_avx2<ToFloat, FromFloat>(e, w, n, d, a);
#endif
  ema_loop_16<ToFloat, FromFloat>(e, w, n, d, a);
}

// One tensor's work: blend (floating) or copy (everything else).
struct EmaItem {
  DType dtype;
  std::byte* ema;
  const std::byte* model;
  std::size_t numel;
  bool blend;
};

inline void run_ema_piece(const EmaItem& it, std::size_t begin, std::size_t end,
                          const ew::EmaCoefficients& c) {
  const std::size_t isz = itemsize(it.dtype);
  std::byte* e = it.ema + begin * isz;
  const std::byte* w = it.model + begin * isz;
  const std::size_t n = end - begin;
  if (!it.blend) {
    std::memcpy(e, w, n * isz);
    return;
  }
  switch (it.dtype) {
    case DType::Float32:
      ema_f32(reinterpret_cast<float*>(e), reinterpret_cast<const float*>(w), n, c.d32, c.a32);
      break;
    case DType::Float64:
      ema_f64(reinterpret_cast<double*>(e), reinterpret_cast<const double*>(w), n, c.d64, c.a64);
      break;
    case DType::Float16:
      ema_16<half_to_float, float_to_half>(e, w, n, c.d32, c.a32);
      break;
    case DType::BFloat16:
      ema_16<bfloat16_to_float, float_to_bfloat16>(e, w, n, c.d32, c.a32);
      break;
    default:
      break;  // excluded by the planner
  }
}

// ---- Preparing an update ------------------------------------------------------------------------

inline bool ema_blends(DType d) {
  return d == DType::Float32 || d == DType::Float64 || d == DType::Float16 || d == DType::BFloat16;
}

// Byte range [first, last) a tensor can touch in its storage.
inline std::pair<std::size_t, std::size_t> byte_extent(const Tensor& t) {
  const std::size_t isz = t.itemsize();
  std::size_t first = static_cast<std::size_t>(t.storage_offset()) * isz;
  if (t.numel() == 0) return {first, first};
  std::size_t last = static_cast<std::size_t>(t.storage_offset());
  for (std::size_t i = 0; i < t.dim(); ++i)
    last += static_cast<std::size_t>(t.shape()[i] - 1) * static_cast<std::size_t>(t.strides()[i]);
  return {first, (last + 1) * isz};
}

inline bool same_view(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage() && a.storage_offset() == b.storage_offset() && a.dtype() == b.dtype() &&
         a.shape() == b.shape() && a.strides() == b.strides();
}

// The tensors of a state dict that an update writes: refuses partial overlaps (two keys
// writing the same bytes differently); returns, per entry, the index of an earlier entry
// that is the very same view (tied weights: updated once), or npos.
inline std::vector<std::size_t> find_tied(const std::vector<const Tensor*>& ts,
                                          const std::vector<std::string>& keys) {
  constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::vector<std::size_t> tied(ts.size(), npos);
  struct Range {
    const Storage* s;
    std::size_t first, last, index;
  };
  std::vector<Range> ranges;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto [f, l] = byte_extent(*ts[i]);
    if (f != l) ranges.push_back({ts[i]->storage().get(), f, l, i});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.s != b.s           ? std::less<const Storage*>()(a.s, b.s)
           : a.first != b.first ? a.first < b.first
                                : a.index < b.index;
  });
  for (std::size_t i = 0; i < ranges.size();) {
    // A group of ranges of one storage that overlap each other.
    std::size_t j = i + 1, last = ranges[i].last;
    while (j < ranges.size() && ranges[j].s == ranges[i].s && ranges[j].first < last) {
      last = std::max(last, ranges[j].last);
      ++j;
    }
    std::size_t first_index = ranges[i].index;
    for (std::size_t k = i; k < j; ++k) first_index = std::min(first_index, ranges[k].index);
    for (std::size_t k = i; k < j; ++k) {
      const std::size_t idx = ranges[k].index;
      if (idx == first_index) continue;
      if (!same_view(*ts[idx], *ts[first_index]))
        throw Error(ErrorKind::Refused,
                    "EMA state entries '" + keys[first_index] + "' and '" + keys[idx] +
                        "' overlap in memory without being the same tensor; cannot update them consistently");
      tied[idx] = first_index;
    }
    i = j;
  }
  return tied;
}

}  // namespace detail

// ---- The update ---------------------------------------------------------------------------------

namespace detail {

// Both states have the same keys, or an Error listing the differences.
inline void check_same_keys(const Dict& ed, const Dict& md) {
  std::vector<std::string> only_ema, only_model;
  for (const auto& [k, v] : ed)
    if (!md.contains(k)) only_ema.push_back(k.to_string());
  for (const auto& [k, v] : md)
    if (!ed.contains(k)) only_model.push_back(k.to_string());
  if (only_ema.empty() && only_model.empty()) return;
  std::string msg = "EMA state and model state have different keys:";
  auto list = [&](const char* what, const std::vector<std::string>& ks) {
    if (ks.empty()) return;
    msg += std::string(" ") + what + " [";
    for (std::size_t i = 0; i < ks.size(); ++i) msg += (i ? ", '" : "'") + ks[i] + "'";
    msg += "];";
  };
  list("only in the EMA:", only_ema);
  list("only in the model:", only_model);
  msg.pop_back();
  throw Error(ErrorKind::Mismatch, msg);
}

// The EMA and model entries under `key` can be blended (or copied): both tensors or both not,
// same dtype and shape, a dtype the EMA supports, separate memory.
inline void check_ema_entry(const std::string& key, const Value& ev, const Value& mv) {
  const ErrorContext at = ErrorContext::at_key(key);
  if (ev.is_tensor() != mv.is_tensor())
    throw Error(ErrorKind::Mismatch,
                "entry '" + key + "' is a " + kind_name(ev.kind()) + " in the EMA state but a " +
                    kind_name(mv.kind()) + " in the model state",
                at);
  if (!ev.is_tensor()) return;
  const Tensor& et = ev.tensor();
  const Tensor& mt = mv.tensor();
  if (!et.defined() || !mt.defined())
    throw Error(ErrorKind::Schema, "entry '" + key + "' is a tensor without storage", at);
  if (et.dtype() != mt.dtype())
    throw Error(ErrorKind::Mismatch,
                "entry '" + key + "' is " + std::string(name(et.dtype())) + " in the EMA state but " +
                    std::string(name(mt.dtype())) + " in the model state",
                at);
  if (et.shape() != mt.shape())
    throw Error(ErrorKind::Mismatch,
                "entry '" + key + "' has shape " + shape_text(et.shape()) + " in the EMA state but " +
                    shape_text(mt.shape()) + " in the model state",
                at);
  if (is_floating(et.dtype()) && !ema_blends(et.dtype()))
    throw Error(ErrorKind::Refused,
                "entry '" + key + "': EMA of " + std::string(name(et.dtype())) + " tensors is not supported",
                at);
  if (et.numel() > 0 && et.storage() == mt.storage())
    throw Error("entry '" + key +
                    "' of the EMA state shares memory with the model state (copying a Value shares its "
                    "tensors' storage: clone the tensors to start an EMA)",
                at);
}

}  // namespace detail

// ema = decay * ema + (1 - decay) * model on every floating tensor, other tensors copied from
// the model (see the file comment). `threads`: 0 = automatic, else that many threads.
// Throws sgckpt::Error, with ema_state unchanged, when the two states do not match key for
// key (names, shapes, dtypes), when decay is not in [0, 1], or when the EMA state shares
// memory with the model state (a Value copy shares tensor storages: clone them).
inline void ema_update(Value& ema_state, const Value& model_state, double decay, unsigned threads) {
  if (!(decay >= 0.0 && decay <= 1.0))
    throw Error("EMA decay must be in [0, 1], got " + std::to_string(decay));
  if (!ema_state.is_dict())
    throw Error(ErrorKind::Schema,
                std::string("EMA state must be a dict, found a ") + kind_name(ema_state.kind()));
  if (!model_state.is_dict())
    throw Error(ErrorKind::Schema,
                std::string("model state must be a dict, found a ") + kind_name(model_state.kind()));
  const Dict& ed = ema_state.dict();
  const Dict& md = model_state.dict();

  // 1. Check everything before changing anything.
  detail::check_same_keys(ed, md);
  std::vector<std::size_t> idx;  // entries of ed that hold tensors
  std::vector<const Tensor*> ema_ts, model_ts;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < ed.items().size(); ++i) {
    const auto& [k, ev] = ed.items()[i];
    const Value& mv = *md.find(k);
    std::string key = k.to_string();
    detail::check_ema_entry(key, ev, mv);
    if (!ev.is_tensor()) continue;
    idx.push_back(i);
    ema_ts.push_back(&ev.tensor());
    model_ts.push_back(&mv.tensor());
    keys.push_back(std::move(key));
  }
  const std::vector<std::size_t> tied = detail::find_tied(ema_ts, keys);

  // 2. Make the EMA tensors writable and contiguous (read-only mappings, strided views):
  //    replaced inside ema_state by owned copies; tied views get one shared copy.
  Dict& edm = ema_state.dict();
  for (std::size_t j = 0; j < idx.size(); ++j) {
    Tensor& et = (edm.begin() + static_cast<std::ptrdiff_t>(idx[j]))->second.tensor();
    if (tied[j] != static_cast<std::size_t>(-1)) {
      et = (edm.begin() + static_cast<std::ptrdiff_t>(idx[tied[j]]))->second.tensor();
    } else if (et.storage()->read_only() || !et.is_contiguous()) {
      et = et.clone();
    }
    ema_ts[j] = &et;
  }
  std::vector<Tensor> model_copies;  // contiguous copies of strided model tensors
  model_copies.reserve(idx.size());

  // 3. The work list, then the fused pass.
  std::vector<detail::EmaItem> items;
  std::vector<std::size_t> counts, weights;
  std::size_t bytes = 0;
  for (std::size_t j = 0; j < idx.size(); ++j) {
    if (tied[j] != static_cast<std::size_t>(-1) || ema_ts[j]->numel() == 0) continue;
    Tensor& et = (edm.begin() + static_cast<std::ptrdiff_t>(idx[j]))->second.tensor();
    const Tensor* mt = model_ts[j];
    if (!mt->is_contiguous()) {
      model_copies.push_back(mt->clone());
      mt = &model_copies.back();
    }
    items.push_back(
        {et.dtype(), et.mutable_raw_data(), mt->raw_data(), et.numel(), detail::ema_blends(et.dtype())});
    counts.push_back(et.numel());
    weights.push_back(et.itemsize());
    bytes += et.nbytes() * 3;
  }
  const std::size_t parts = detail::choose_threads(threads, bytes);
  const auto plan = detail::split_by_bytes(counts, weights, parts);
  const detail::ew::EmaCoefficients c = detail::ew::ema_coefficients(decay);
  detail::thread_pool().run(plan.size(), [&](std::size_t p) {
    for (const auto& piece : plan[p]) detail::run_ema_piece(items[piece.item], piece.begin, piece.end, c);
  });
}

inline void ema_update(Value& ema_state, const Value& model_state, double decay) {
  ema_update(ema_state, model_state, decay, 0);
}

// An EMA state to start from: a deep copy of the model state (owned, contiguous tensors, the
// dict's kind and attributes such as `_metadata` kept), as SG's deepcopy of the model.
inline Value clone_state(const Value& state) {
  return map_tensors<Tensor>(state, [](const Tensor& t) { return t.clone(); });
}

}  // namespace sgckpt
