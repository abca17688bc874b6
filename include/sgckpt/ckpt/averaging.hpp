// sgckpt/ckpt/averaging.hpp: SuperGradients' model weight averaging ("average_model.pth",
// docs/supergradients.md §4): keep the N best snapshots of the model by the watched metric and average
// them.
//
//   ModelAveraging avg(run_dir, /*greater_is_better=*/true);   // resumes from the run dir
//   avg.update(net_state, accuracy);                            // each validation epoch
//   if (auto a = avg.average()) save(..."net": *a...);
//   avg.remove_snapshot_file();                                 // normal end of training
//
// The slot rule is SG's exactly:
//   - N slots (default 10), each empty or holding a snapshot; an empty slot's metric is -inf
//     when greater is better, +inf otherwise, so slots fill in order 0, 1, 2, ...;
//   - the candidate is the WORST slot: argmin of the metrics when greater is better, argmax
//     otherwise, the first index winning ties;
//   - the new state replaces it only on strict improvement; a non-finite metric (NaN, +-inf)
//     never enters (SG PR #1598).
// The snapshots persist in <run_dir>/averaging_snapshots.pkl, a torch.save file despite the
// name (as SG): {"snapshot0": None | state dict, ..., "snapshot{N-1}": ..., "snapshots_metric":
// float64 tensor [N]} (SG stores a numpy array there, which is read too; a tensor keeps the
// file loadable with torch.load(weights_only=True) without allowlisting numpy). It is rewritten atomically
// after every update that changes it (SG rewrites it after every attempt; an unchanged state
// gives an identical file, so we skip that write) and read back by the constructor, so a
// resumed run continues the same averaging.
//
// The average (deviations from SG, which fix its traps):
//   - floating tensors: the plain mean over the filled slots, summed in double and rounded
//     once (SG's float32 running mean (avg*k + s)/(k+1) rounds twice per snapshot and is only
//     right because SG's slots are contiguous);
//   - integer and bool tensors (num_batches_tracked): taken from the BEST snapshot, so they
//     stay integral (SG true-divides them into float32);
//   - the result is an OrderedDict in the best snapshot's key order, with its attributes
//     (`_metadata`).
// Not thread-safe: one caller at a time.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/detail/elementwise.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt {

namespace detail {

inline bool averages(DType d) {
  return d == DType::Float32 || d == DType::Float64 || d == DType::Float16 || d == DType::BFloat16;
}

// Throws unless `other` has exactly the keys of `ref` (any order), each with the same kind,
// and tensors with the same dtype and shape. `what` names `other` in the message.
inline void check_same_structure(const Value& ref, const Value& other, const std::string& what) {
  if (!other.is_dict())
    throw Error(ErrorKind::Schema, what + " is a " + kind_name(other.kind()) + ", not a state dict");
  const Dict& r = ref.dict();
  const Dict& o = other.dict();
  std::vector<std::string> missing, extra;
  for (const auto& [k, v] : r)
    if (!o.contains(k)) missing.push_back(k.to_string());
  for (const auto& [k, v] : o)
    if (!r.contains(k)) extra.push_back(k.to_string());
  if (!missing.empty() || !extra.empty()) {
    auto list = [](const std::vector<std::string>& ks) {
      std::string s;
      for (std::size_t i = 0; i < ks.size(); ++i) s += (i ? ", '" : "'") + ks[i] + "'";
      return s;
    };
    std::string msg = what + " does not have the keys of the other states:";
    if (!missing.empty()) msg += " missing [" + list(missing) + "]";
    if (!extra.empty()) msg += std::string(missing.empty() ? "" : ";") + " extra [" + list(extra) + "]";
    throw Error(ErrorKind::Mismatch, msg);
  }
  for (const auto& [k, rv] : r) {
    const Value& ov = *o.find(k);
    const std::string key = k.to_string();
    if (rv.is_tensor() != ov.is_tensor())
      throw Error(ErrorKind::Mismatch,
                  what + ": entry '" + key + "' is a " + kind_name(ov.kind()) + ", expected a " +
                      kind_name(rv.kind()),
                  ErrorContext::at_key(key));
    if (!rv.is_tensor()) continue;
    const Tensor& rt = rv.tensor();
    const Tensor& ot = ov.tensor();
    if (rt.dtype() != ot.dtype())
      throw Error(ErrorKind::Mismatch,
                  what + ": entry '" + key + "' is " + std::string(name(ot.dtype())) + ", expected " +
                      std::string(name(rt.dtype())),
                  ErrorContext::at_key(key));
    if (rt.shape() != ot.shape())
      throw Error(ErrorKind::Mismatch,
                  what + ": entry '" + key + "' has shape " + shape_text(ot.shape()) + ", expected " +
                      shape_text(rt.shape()),
                  ErrorContext::at_key(key));
  }
}

// One output tensor of an average: out[i] = mean_j inputs[j][i].
struct AverageItem {
  DType dtype;
  std::byte* out;
  std::vector<const std::byte*> inputs;
};

template <class T, class Load, class Store>
void average_range(const AverageItem& it, std::size_t begin, std::size_t end, Load load, Store store) {
  // Blocks of 512 elements: the double accumulators stay in L1 while every input streams
  // through once.
  constexpr std::size_t kBlock = 512;
  double acc[kBlock];
  const double count = static_cast<double>(it.inputs.size());
  for (std::size_t b = begin; b < end; b += kBlock) {
    const std::size_t m = std::min(kBlock, end - b);
    const T* x0 = reinterpret_cast<const T*>(it.inputs[0]) + b;
    for (std::size_t i = 0; i < m; ++i) acc[i] = load(x0[i]);
    for (std::size_t j = 1; j < it.inputs.size(); ++j) {
      const T* x = reinterpret_cast<const T*>(it.inputs[j]) + b;
      for (std::size_t i = 0; i < m; ++i) acc[i] = ew::mean_accumulate(acc[i], load(x[i]));
    }
    T* o = reinterpret_cast<T*>(it.out) + b;
    for (std::size_t i = 0; i < m; ++i) o[i] = store(ew::mean_finish(acc[i], count));
  }
}

#ifdef SGCKPT_EMA_X86
// float32, 8 lanes: the inputs are summed in double in the same order as average_range (the
// first input, then each next one), divided and rounded the same way, so both loops agree
// bit for bit (tested). All inputs stream at once; the accumulators stay in registers.
__attribute__((target("avx2,fma"))) inline void average_f32_avx2(const AverageItem& it, std::size_t begin,
                                                                 std::size_t end) {
  const std::size_t k = it.inputs.size();
  const __m256d vk = _mm256_set1_pd(static_cast<double>(k));
  float* out = reinterpret_cast<float*>(it.out);
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(reinterpret_cast<const float*>(it.inputs[0]) + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x0));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x0, 1));
    for (std::size_t j = 1; j < k; ++j) {
      const __m256 x = _mm256_loadu_ps(reinterpret_cast<const float*>(it.inputs[j]) + i);
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    }
    const __m128 rlo = _mm256_cvtpd_ps(_mm256_div_pd(lo, vk));
    const __m128 rhi = _mm256_cvtpd_ps(_mm256_div_pd(hi, vk));
    _mm256_storeu_ps(out + i, _mm256_set_m128(rhi, rlo));
  }
  if (i < end)
    average_range<float>(
        it, i, end, [](float x) { return static_cast<double>(x); },
        [](double m) { return static_cast<float>(m); });
}
#endif

inline void run_average_piece(const AverageItem& it, std::size_t begin, std::size_t end) {
  switch (it.dtype) {
    case DType::Float32:
#ifdef SGCKPT_EMA_X86
      if (ema_kernel_override() == EmaKernel::Auto && cpu_has_avx2_fma())
        return average_f32_avx2(it, begin, end);
#endif
      average_range<float>(
          it, begin, end, [](float x) { return static_cast<double>(x); },
          [](double m) { return static_cast<float>(m); });
      break;
    case DType::Float64:
      average_range<double>(
          it, begin, end, [](double x) { return x; }, [](double m) { return m; });
      break;
    case DType::Float16:
      average_range<std::uint16_t>(
          it, begin, end, [](std::uint16_t x) { return static_cast<double>(half_to_float(x)); },
          [](double m) { return float_to_half(static_cast<float>(m)); });
      break;
    case DType::BFloat16:
      average_range<std::uint16_t>(
          it, begin, end, [](std::uint16_t x) { return static_cast<double>(bfloat16_to_float(x)); },
          [](double m) { return float_to_bfloat16(static_cast<float>(m)); });
      break;
    default:
      break;  // excluded by average_states
  }
}

}  // namespace detail

// Throws an Error (ErrorKind::Schema) unless `other` has exactly the keys of `ref` (any order),
// each with the same kind, and tensors with the same dtype and shape; `what` names `other`
// in the message. average_states makes this check; a caller that loads the states one by one
// makes it as each arrives, to name the file (the tool's `average`).
using detail::check_same_structure;

// The average of state dicts with identical keys, dtypes and shapes (checked; Error naming
// the key and the state otherwise): floating tensors -> the mean over the states (summed in
// double, rounded once); every other entry (integer/bool tensors, non-tensors) -> the FIRST
// state's, copied. The result has the first state's key order, dict kind and attributes.
// One fused pass: every input element is read once and every output element written once.
inline Value average_states(std::span<const Value> states, unsigned threads) {
  if (states.empty()) throw Error("average_states needs at least one state dict");
  const Value& first = states[0];
  if (!first.is_dict())
    throw Error(ErrorKind::Schema,
                std::string("state 0 is a ") + kind_name(first.kind()) + ", not a state dict");
  for (std::size_t s = 1; s < states.size(); ++s)
    detail::check_same_structure(first, states[s], "state " + std::to_string(s));
  for (const auto& [k, v] : first.dict()) {
    if (!v.is_tensor()) continue;
    const DType d = v.tensor().dtype();
    if ((is_floating(d) || is_complex(d)) && !detail::averages(d))
      throw Error(
          ErrorKind::Refused,
          "entry '" + k.to_string() + "': averaging " + std::string(name(d)) + " tensors is not supported",
          ErrorContext::at_key(k.to_string()));
  }

  Dict out(first.dict().kind());
  for (const auto& [name_, attr] : first.dict().attributes()) out.set_attribute(name_, attr);
  std::vector<detail::AverageItem> items;
  std::vector<std::size_t> counts, weights;
  std::vector<Tensor> keep;  // contiguous copies of strided inputs
  std::size_t bytes = 0;
  for (const auto& [k, v] : first.dict()) {
    if (!v.is_tensor()) {
      out.set(k, v);
      continue;
    }
    const TensorValue<Tensor>& tv = v.tensor_value();
    if (!detail::averages(tv.tensor.dtype())) {
      out.set(k, TensorValue<Tensor>{tv.tensor.clone(), tv.requires_grad, tv.parameter});
      continue;
    }
    Tensor result = Tensor::empty(tv.tensor.dtype(), tv.tensor.shape());
    if (result.numel() > 0) {
      detail::AverageItem item{result.dtype(), result.mutable_raw_data(), {}};
      for (const Value& s : states) {
        const Tensor& t = s.dict().find(k)->tensor();
        if (t.is_contiguous()) {
          item.inputs.push_back(t.raw_data());
        } else {
          keep.push_back(t.clone());
          item.inputs.push_back(keep.back().raw_data());
        }
      }
      items.push_back(std::move(item));
      counts.push_back(result.numel());
      weights.push_back(result.itemsize() * (states.size() + 1));
      bytes += result.nbytes() * (states.size() + 1);
    }
    out.set(k, TensorValue<Tensor>{std::move(result), tv.requires_grad, tv.parameter});
  }
  const auto plan = detail::split_by_bytes(counts, weights, detail::choose_threads(threads, bytes));
  detail::thread_pool().run(plan.size(), [&](std::size_t p) {
    for (const auto& piece : plan[p]) detail::run_average_piece(items[piece.item], piece.begin, piece.end);
  });
  return Value(std::move(out));
}

inline Value average_states(std::span<const Value> states) {
  return average_states(states, 0);
}

// ---- ModelAveraging ------------------------------------------------------------------------------

class ModelAveraging {
 public:
  static constexpr std::string_view kFileName = "averaging_snapshots.pkl";

  // Loads <run_dir>/averaging_snapshots.pkl when it exists (resume), else starts empty (and
  // writes nothing until the first update). Throws sgckpt::Error if n_models is 0, or if the
  // file cannot be read, has another number of slots, or was written for the other metric
  // direction (its empty slots hold the other infinity).
  // `durable`: fsync the snapshot file (sgckpt::SaveOptions::durable), as the checkpoints.
  ModelAveraging(std::filesystem::path run_dir, bool greater_is_better, std::size_t n_models = 10,
                 bool durable = true)
      : run_dir_(std::move(run_dir)), greater_(greater_is_better), n_(n_models), durable_(durable) {
    if (n_ == 0) throw Error("model weight averaging needs n_models >= 1");
    slots_.resize(n_);
    metrics_.assign(n_, empty_metric());
    std::error_code ec;
    if (std::filesystem::exists(snapshot_path(), ec)) load_file();
  }

  // Offers a state dict with its metric. Returns true if it entered the top N (it is then
  // deep-copied into the worst slot). Persists atomically. Throws, with nothing changed, if
  // net_state does not have the keys, dtypes and shapes of the snapshots already held, or if
  // the file cannot be written.
  bool update(const Value& net_state, double metric) {
    if (!net_state.is_dict())
      throw Error(ErrorKind::Schema, std::string("weight averaging: the model state is a ") +
                                         kind_name(net_state.kind()) + ", not a state dict");
    for (const auto& s : slots_)
      if (s) {
        detail::check_same_structure(*s, net_state, "weight averaging: the model state");
        break;
      }
    std::size_t slot = 0;
    bool accepted = false;
    if (std::isfinite(metric)) {
      slot = worst_slot();
      accepted = greater_ ? metric > metrics_[slot] : metric < metrics_[slot];
    }
    std::error_code ec;
    if (!accepted && std::filesystem::exists(snapshot_path(), ec)) return false;

    // Write the new state first, then commit it: a failed write leaves this object as it was.
    std::vector<std::optional<Value>> slots = slots_;  // shallow: tensors are shared, not copied
    std::vector<double> metrics = metrics_;
    if (accepted) {
      slots[slot] = clone_state(net_state);
      metrics[slot] = metric;
    }
    SaveOptions options;
    options.durable = durable_;
    save(file_value(slots, metrics), snapshot_path(), options);
    slots_ = std::move(slots);
    metrics_ = std::move(metrics);
    return accepted;
  }

  // The average of the filled slots (see the file comment), or nullopt when none is filled.
  std::optional<Value> average() const {
    const auto best = best_slot();
    if (!best) return std::nullopt;
    std::vector<Value> states;
    states.push_back(*slots_[*best]);  // first: its integers and key order win
    for (std::size_t i = 0; i < n_; ++i)
      if (slots_[i] && i != *best) states.push_back(*slots_[i]);
    return average_states(std::span<const Value>(states));
  }

  // Filled slots.
  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& s : slots_) n += s.has_value();
    return n;
  }
  // The N slot metrics (-inf / +inf for empty slots), as SG's snapshots_metric.
  const std::vector<double>& metrics() const { return metrics_; }
  std::filesystem::path snapshot_path() const { return run_dir_ / std::string(kFileName); }

  // Deletes the snapshot file (SG does at the normal end of training). The snapshots held
  // in memory stay. A missing file is not an error.
  void remove_snapshot_file() {
    std::error_code ec;
    std::filesystem::remove(snapshot_path(), ec);
    if (ec) throw Error(ErrorKind::Io, "cannot remove " + snapshot_path().string() + ": " + ec.message());
  }

  std::size_t capacity() const { return n_; }
  bool greater_is_better() const { return greater_; }
  const std::optional<Value>& snapshot(std::size_t slot) const { return slots_.at(slot); }
  // The slot with the best metric (first index wins ties), or nullopt when all are empty.
  std::optional<std::size_t> best_slot() const {
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < n_; ++i) {
      if (!slots_[i]) continue;
      if (!best || (greater_ ? metrics_[i] > metrics_[*best] : metrics_[i] < metrics_[*best])) best = i;
    }
    return best;
  }

 private:
  double empty_metric() const {
    return greater_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }

  // SG: np.argmin (greater is better) / np.argmax (otherwise): the first index wins ties.
  std::size_t worst_slot() const {
    std::size_t w = 0;
    for (std::size_t i = 1; i < n_; ++i)
      if (greater_ ? metrics_[i] < metrics_[w] : metrics_[i] > metrics_[w]) w = i;
    return w;
  }

  Value file_value(const std::vector<std::optional<Value>>& slots, const std::vector<double>& metrics) const {
    Value root = Value::make_dict();
    for (std::size_t i = 0; i < n_; ++i)
      root["snapshot" + std::to_string(i)] = slots[i] ? *slots[i] : Value();
    root["snapshots_metric"] = Tensor::from_values<double>(DType::Float64, {static_cast<std::int64_t>(n_)},
                                                           std::span<const double>(metrics));
    return root;
  }

  [[noreturn]] static void fail_resume(ErrorKind kind, const std::string& file, const std::string& msg) {
    throw Error(kind, "cannot resume the weight averaging: " + msg).with_file(file);
  }

  void load_file() {
    const std::string file = snapshot_path().string();
    auto fail = [&](ErrorKind kind, const std::string& msg) { fail_resume(kind, file, msg); };
    Value root;
    try {
      root = load(snapshot_path());
    } catch (const Error& e) {
      throw Error(e.kind(), "cannot resume the weight averaging: " + e.message(), e.context())
          .with_file(file);
    }
    if (!root.is_dict())
      fail(ErrorKind::Schema, std::string("the file holds a ") + kind_name(root.kind()) + ", not a dict");
    std::size_t slots_in_file = 0;
    for (const auto& [k, v] : root.dict())
      if (k.is_str() && k.str().rfind("snapshot", 0) == 0 && k.str() != "snapshots_metric") ++slots_in_file;
    if (slots_in_file != n_)
      fail(ErrorKind::Mismatch, "the file holds " + std::to_string(slots_in_file) +
                                    " snapshot slots, this averaging keeps " + std::to_string(n_));
    const Value* mv = root.dict().find("snapshots_metric");
    if (mv == nullptr) fail_resume(ErrorKind::Schema, file, "the file has no 'snapshots_metric'");
    std::vector<double> metrics;
    // Ours is a tensor, SG's a numpy array.
    const Tensor* mt = mv->is_tensor() ? &mv->tensor() : mv->is_numpy() ? &mv->numpy().data : nullptr;
    if (mt && is_floating(mt->dtype()) && mt->dim() == 1) {
      for (std::size_t i = 0; i < mt->numel(); ++i) metrics.push_back(mt->element_as_double(i));
    } else if (mv->is_list() || mv->is_tuple()) {
      for (const auto& x : mv->items()) {
        if (!x.is_number())
          fail(ErrorKind::Schema, "'snapshots_metric' holds a " + std::string(kind_name(x.kind())));
        metrics.push_back(x.as_number());
      }
    } else {
      fail(ErrorKind::Schema, "'snapshots_metric' is not a 1-d float tensor");
    }
    if (metrics.size() != n_)
      fail(ErrorKind::Schema, "'snapshots_metric' has " + std::to_string(metrics.size()) + " values for " +
                                  std::to_string(n_) + " slots");
    std::vector<std::optional<Value>> slots(n_);
    const Value* ref = nullptr;
    for (std::size_t i = 0; i < n_; ++i) {
      const std::string key = "snapshot" + std::to_string(i);
      const Value* s = root.dict().find(key);
      if (s == nullptr) fail_resume(ErrorKind::Schema, file, "the file has no '" + key + "'");
      if (s->is_none()) {
        // SG initializes every slot to the worst value for its direction: another infinity
        // here means the run was started with the opposite metric direction.
        if (metrics[i] != empty_metric())
          fail(ErrorKind::Mismatch,
               "empty slot " + std::to_string(i) + " has metric " + std::to_string(metrics[i]) +
                   " (expected " + std::to_string(empty_metric()) +
                   "): was it written with greater_is_better=" + (greater_ ? "false" : "true") + "?");
        continue;
      }
      if (!s->is_dict())
        fail(ErrorKind::Schema, "'" + key + "' is a " + kind_name(s->kind()) + ", not a state dict");
      if (!std::isfinite(metrics[i]))
        fail(ErrorKind::Schema,
             "slot " + std::to_string(i) + " holds a snapshot but its metric is not finite");
      if (ref) {
        try {
          detail::check_same_structure(*ref, *s, "'" + key + "'");
        } catch (const Error& e) {
          fail(e.kind(), e.message());
        }
      }
      ref = s;
      slots[i] = *s;
    }
    slots_ = std::move(slots);
    metrics_ = std::move(metrics);
  }

  std::filesystem::path run_dir_;
  bool greater_;
  std::size_t n_;
  bool durable_ = true;
  std::vector<std::optional<Value>> slots_;
  std::vector<double> metrics_;
};

}  // namespace sgckpt
