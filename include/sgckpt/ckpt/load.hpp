// sgckpt/ckpt/load.hpp: loading a checkpoint's weights into a model's state dict, with
// SuperGradients' StrictLoad modes (docs/lifecycle.md), as a dry run (plan_checkpoint_load) or
// for real (load_checkpoint_to_model). This is the library's one load path: an engine's own
// load_state_dict is an adapter that hands it views of the engine's buffers (see
// engine/nn/module.hpp), so rules, messages and dtype conversion are the same everywhere.
//
//   auto report = sgckpt::load_checkpoint_to_model(model_state, "ckpt_best.pth",
//                                                  {.strict = sgckpt::StrictLoad::On,
//                                                   .weights = sgckpt::Weights::PreferEma});
//
// Which weights (checkpoint_state_dict, the one answer used by the tools, the examples and the
// trainer): Weights::Net takes the checkpoint's `net`, or the dict itself when it has none (a
// bare state dict); Weights::Ema its `ema_net` (an Error if it has none); Weights::PreferEma
// the `ema_net` when present, else as Net (SG's models.get and evaluate_checkpoint). When EVERY
// key starts with "module." (DataParallel/DDP), that prefix is stripped, as SG's
// maybe_remove_module_prefix. With a backbone prefix ("backbone."), only the model's keys
// under that prefix are loaded, and checkpoint keys are matched against those keys with the
// prefix removed (SG's load_backbone offers the checkpoint to `net.backbone`).
//
// The modes:
//   On             keys and shapes must match exactly (torch strict=True). The default.
//   Off            torch strict=False: missing and unexpected keys are reported and skipped;
//                  a shape mismatch is still an error.
//   NoKeyMatching  exact first; failing that, by POSITION: the checkpoint's tensors in order
//                  are paired with the model's in order. Any shape mismatch, or fewer
//                  checkpoint tensors than model tensors, is an error. Extra checkpoint
//                  tensors beyond the model's count are dropped and reported as unexpected,
//                  as SG (its zip stops at the shorter list).
//   KeyMatching    exact first; failing that, key by key, skipping (and reporting) shape
//                  mismatches, missing and unexpected keys (SG's transfer_weights).
//
// Deviations from SG that fix its traps (docs/lifecycle.md): a failed load throws ONE
// sgckpt::Error that lists every missing, unexpected and shape-mismatched key together
// (with, for NoKeyMatching, why matching by position failed too, and for On/Off a hint when
// the checkpoint would load by position), and it changes NOTHING in the model state: the
// whole load is planned first and applied only when it succeeds. Nothing is written to disk.
//
// Values are copied into the model's existing tensors (their storage, dtype and layout are
// kept), converting the dtype when it differs, as torch's param.copy_(input) does (float <->
// half, int -> float, ...: sgckpt::copy_into, core/cast.hpp): one read of the checkpoint
// tensor (which may be a view of a memory-mapped file) and one write into the model's memory.
// A model tensor that is a read-only view of a memory-mapped file is replaced by an owned
// tensor of the same dtype and shape. The state dict's `_metadata` attribute is an attribute,
// not an entry: the model's is kept, the checkpoint's ignored.
#pragma once

#include <algorithm>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt {

// ---- StrictLoad ---------------------------------------------------------------------------------

// SG's StrictLoad (common/data_types/enum/strict_load.py).
enum class StrictLoad { On, Off, NoKeyMatching, KeyMatching };

inline std::string_view to_string(StrictLoad s) {
  switch (s) {
    case StrictLoad::On:
      return "on";
    case StrictLoad::Off:
      return "off";
    case StrictLoad::NoKeyMatching:
      return "no_key_matching";
    case StrictLoad::KeyMatching:
      return "key_matching";
  }
  return "?";
}

// "on", "off", "no_key_matching", "key_matching", and the bools "true" / "false" (SG's
// type factory maps True to ON and False to OFF); case-insensitive.
inline StrictLoad parse_strict_load(std::string_view s) {
  std::string l(s);
  for (auto& c : l) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (l == "on" || l == "true") return StrictLoad::On;
  if (l == "off" || l == "false") return StrictLoad::Off;
  if (l == "no_key_matching") return StrictLoad::NoKeyMatching;
  if (l == "key_matching") return StrictLoad::KeyMatching;
  throw Error("unknown strict load mode '" + std::string(s) +
              "' (expected on, off, no_key_matching, key_matching, true or false)");
}

// SG's bool values: true -> On, false -> Off. (Not an overload of parse_strict_load: a string
// literal would convert to bool before string_view.)
inline StrictLoad strict_load_from_bool(bool b) {
  return b ? StrictLoad::On : StrictLoad::Off;
}

// ---- Which weights ---------------------------------------------------------------------------

// Which state dict of a checkpoint to take (the rules at the top of the file).
enum class Weights {
  Net,        // `net`, or the dict itself when it has no `net` (a bare state dict)
  Ema,        // `ema_net`; an Error when the checkpoint has none
  PreferEma,  // `ema_net` when present, else as Net (SG's models.get, evaluate_checkpoint)
};

// The key of the state dict that `which` selects in `checkpoint`: "net", "ema_net", or empty
// for the checkpoint itself (a bare state dict). Throws when the selection is not a dict of
// weights (a missing ema_net, a None net, a net that is a list...).
inline std::string_view checkpoint_state_dict_key(const Value& checkpoint, Weights which = Weights::Net) {
  if (!checkpoint.is_dict())
    throw Error(ErrorKind::Schema, std::string("the checkpoint is a ") + kind_name(checkpoint.kind()) +
                                       ", not a dict or a state dict");
  const Dict& d = checkpoint.dict();
  const Value* ema = d.find("ema_net");
  if (which == Weights::Ema || (which == Weights::PreferEma && ema != nullptr && !ema->is_none())) {
    if (ema == nullptr || ema->is_none())
      throw Error(ErrorKind::Schema,
                  "no EMA network stored in checkpoint (it has no 'ema_net'); load 'net' instead");
    if (!ema->is_dict())
      throw Error(
          ErrorKind::Schema,
          std::string("the checkpoint's 'ema_net' is a ") + kind_name(ema->kind()) + ", not a state dict",
          ErrorContext::at_key("ema_net"));
    return "ema_net";
  }
  // A `net` that is a tensor is a weight of a bare state dict (a module named "net").
  if (const Value* net = d.find("net"); net != nullptr && !net->is_tensor()) {
    if (net->is_none())
      throw Error(ErrorKind::Schema,
                  "the checkpoint's 'net' is None (no weights: an average_model.pth written before any "
                  "snapshot was averaged?)",
                  ErrorContext::at_key("net"));
    if (!net->is_dict())
      throw Error(ErrorKind::Schema,
                  std::string("the checkpoint's 'net' is a ") + kind_name(net->kind()) + ", not a state dict",
                  ErrorContext::at_key("net"));
    return "net";
  }
  return {};
}

// The state dict that `which` selects (see checkpoint_state_dict_key).
inline const Value& checkpoint_state_dict(const Value& checkpoint, Weights which = Weights::Net) {
  const std::string_view key = checkpoint_state_dict_key(checkpoint, which);
  return key.empty() ? checkpoint : *checkpoint.dict().find(key);
}
inline Value& checkpoint_state_dict(Value& checkpoint, Weights which = Weights::Net) {
  const std::string_view key = checkpoint_state_dict_key(checkpoint, which);
  return key.empty() ? checkpoint : *checkpoint.dict().find(key);
}

// How load_checkpoint_to_model and plan_checkpoint_load match and what they take.
struct ModelLoadOptions {
  StrictLoad strict = StrictLoad::On;
  Weights weights = Weights::Net;
  // Load only the model's keys under this prefix ("backbone."); empty: the whole model.
  std::string backbone_prefix{};
  // Reading a checkpoint FILE: mapped by default, so each tensor is copied once, from the
  // mapping straight into the model.
  LoadOptions file{.mmap = true};
};

// ---- The report ---------------------------------------------------------------------------------

struct LoadReport {
  bool ok = false;
  StrictLoad mode = StrictLoad::On;
  bool by_position = false;  // loaded by position (NoKeyMatching after the exact match failed)
  std::vector<std::pair<std::string, std::string>> loaded;  // model key -> checkpoint key
  std::vector<std::string> missing;                         // model keys the checkpoint does not provide
  std::vector<std::string> unexpected;  // checkpoint keys the model does not have (or that were dropped)
  struct Mismatch {
    std::string model, ckpt;
    Shape model_shape, ckpt_shape;
  };
  std::vector<Mismatch> mismatched;  // pairs whose shapes differ (skipped by KeyMatching)
  // NoKeyMatching failure: why matching by position failed as well. On/Off failure: a hint
  // when the checkpoint would load by position. Empty otherwise.
  std::string note;

  std::string message() const {
    auto list = [](const std::vector<std::string>& ks) {
      std::string out;
      for (std::size_t i = 0; i < ks.size(); ++i) out += (i ? ", '" : "'") + ks[i] + "'";
      return out;
    };
    std::string counts = std::to_string(missing.size()) + " missing, " + std::to_string(unexpected.size()) +
                         " unexpected, " + std::to_string(mismatched.size()) + " shape-mismatched";
    std::string m;
    if (ok) {
      m = "checkpoint loads into the model (strict=" + std::string(to_string(mode)) +
          "): " + std::to_string(loaded.size()) + " tensors loaded " +
          (by_position ? "by position" : "by key");
      if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) m += "; skipped: " + counts;
    } else {
      m = "checkpoint does not load into the model (strict=" + std::string(to_string(mode)) + "): " + counts;
    }
    if (!missing.empty()) m += "\n  missing from the checkpoint: " + list(missing);
    if (!unexpected.empty()) m += "\n  unexpected in the checkpoint: " + list(unexpected);
    for (const auto& x : mismatched)  // one line each: a wrong head can mismatch a hundred tensors
      m += "\n  shape mismatch: model '" + x.model + "' " + shape_text(x.model_shape) + " vs checkpoint '" +
           x.ckpt + "' " + shape_text(x.ckpt_shape);
    if (!note.empty()) m += "\n  " + note;
    return m;
  }
};

namespace detail {

struct LoadEntry {
  std::string key;        // as in the file (ckpt) or the model
  std::string match_key;  // what is compared: module.-stripped (ckpt) or prefix-stripped (model)
  const Tensor* tensor;
  std::size_t index;  // position in its dict
};

struct LoadPlan {
  LoadReport report;
  std::vector<std::pair<std::size_t, const Tensor*>> copies;  // model dict index <- source tensor
};

inline std::vector<LoadEntry> entries_of(const Dict& d, const char* what) {
  std::vector<LoadEntry> out;
  out.reserve(d.size());
  std::size_t i = 0;
  for (const auto& [k, v] : d) {
    const std::string key = k.to_string();
    if (!k.is_str())
      throw Error(ErrorKind::Schema,
                  std::string(what) + " has a non-string key " + key + ": not a state dict");
    if (!v.is_tensor())
      throw Error(ErrorKind::Schema,
                  std::string(what) + " entry '" + key + "' is a " + kind_name(v.kind()) +
                      ", not a tensor: not a state dict",
                  ErrorContext::at_key(key));
    if (!v.tensor().defined())
      throw Error(ErrorKind::Schema, std::string(what) + " entry '" + key + "' has no storage");
    out.push_back({key, key, &v.tensor(), i++});
  }
  return out;
}

inline LoadPlan plan_load(const Value& model_state, const Value& checkpoint,
                          const ModelLoadOptions& options) {
  const StrictLoad mode = options.strict;
  const std::string_view backbone_prefix = options.backbone_prefix;
  if (!model_state.is_dict())
    throw Error(ErrorKind::Schema,
                std::string("the model state is a ") + kind_name(model_state.kind()) + ", not a state dict");
  // The target: the model's tensors, or those under the backbone prefix.
  std::vector<LoadEntry> target;
  for (auto& e : entries_of(model_state.dict(), "the model state")) {
    if (backbone_prefix.empty()) {
      target.push_back(std::move(e));
    } else if (e.key.size() > backbone_prefix.size() &&
               e.key.compare(0, backbone_prefix.size(), backbone_prefix) == 0) {
      e.match_key = e.key.substr(backbone_prefix.size());
      target.push_back(std::move(e));
    }
  }
  if (!backbone_prefix.empty() && target.empty())
    throw Error("no key of the model state starts with the backbone prefix '" + std::string(backbone_prefix) +
                "'");

  std::vector<LoadEntry> source =
      entries_of(checkpoint_state_dict(checkpoint, options.weights).dict(), "the checkpoint's state dict");
  constexpr std::string_view kModule = "module.";
  const bool all_module =
      !source.empty() && std::all_of(source.begin(), source.end(), [&](const LoadEntry& e) {
        return e.key.compare(0, kModule.size(), kModule) == 0;
      });
  if (all_module)
    for (auto& e : source) e.match_key = e.key.substr(kModule.size());

  LoadPlan by_key;
  by_key.report.mode = mode;
  {
    std::unordered_map<std::string, std::size_t> src_index;
    for (std::size_t i = 0; i < source.size(); ++i) src_index.emplace(source[i].match_key, i);
    std::vector<bool> used(source.size(), false);
    for (const auto& t : target) {
      auto it = src_index.find(t.match_key);
      if (it == src_index.end()) {
        by_key.report.missing.push_back(t.key);
        continue;
      }
      const LoadEntry& s = source[it->second];
      used[it->second] = true;
      if (s.tensor->shape() != t.tensor->shape()) {
        by_key.report.mismatched.push_back({t.key, s.key, t.tensor->shape(), s.tensor->shape()});
        continue;
      }
      by_key.report.loaded.emplace_back(t.key, s.key);
      by_key.copies.emplace_back(t.index, s.tensor);
    }
    for (std::size_t i = 0; i < source.size(); ++i)
      if (!used[i]) by_key.report.unexpected.push_back(source[i].key);
  }
  const bool exact =
      by_key.report.missing.empty() && by_key.report.unexpected.empty() && by_key.report.mismatched.empty();

  // Matching by position: SG's adapt_state_dict_to_fit_model_layer_names.
  auto by_position = [&](std::string* failure) {
    LoadPlan p;
    p.report.mode = mode;
    p.report.by_position = true;
    const std::size_t n = std::min(source.size(), target.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const LoadEntry& s = source[i];
      const LoadEntry& t = target[i];
      if (s.tensor->shape() != t.tensor->shape()) {
        if (bad++ == 0 && failure)
          *failure = "matching by position failed too: checkpoint '" + s.key + "' " +
                     shape_text(s.tensor->shape()) + " does not fit model '" + t.key + "' " +
                     shape_text(t.tensor->shape()) + " at position " + std::to_string(i);
        p.report.mismatched.push_back({t.key, s.key, t.tensor->shape(), s.tensor->shape()});
        continue;
      }
      p.report.loaded.emplace_back(t.key, s.key);
      p.copies.emplace_back(t.index, s.tensor);
    }
    if (bad > 1 && failure) *failure += " (and " + std::to_string(bad - 1) + " more positions)";
    for (std::size_t i = n; i < target.size(); ++i) p.report.missing.push_back(target[i].key);
    for (std::size_t i = n; i < source.size(); ++i) p.report.unexpected.push_back(source[i].key);
    if (source.size() < target.size() && failure) {
      const std::string counts = "the checkpoint has " + std::to_string(source.size()) +
                                 " tensors, the model " + std::to_string(target.size()) +
                                 " (first left unloaded: '" + target[source.size()].key + "')";
      *failure = failure->empty() ? "matching by position failed too: " + counts : *failure + "; " + counts;
    }
    p.report.ok = p.report.mismatched.empty() && p.report.missing.empty();
    return p;
  };

  LoadPlan result;
  if (exact) {
    result = std::move(by_key);
    result.report.ok = true;
  } else {
    switch (mode) {
      case StrictLoad::On:
      case StrictLoad::Off: {
        result = std::move(by_key);
        result.report.ok = mode == StrictLoad::Off && result.report.mismatched.empty();
        if (!result.report.ok && by_position(nullptr).report.ok)
          result.report.note =
              "hint: the checkpoint would load by position (strict=no_key_matching): same number of tensors "
              "with the same shapes in the same order, under other names";
        break;
      }
      case StrictLoad::NoKeyMatching: {
        std::string failure;
        LoadPlan p = by_position(&failure);
        if (p.report.ok) {
          result = std::move(p);
        } else {
          result = std::move(by_key);  // the key-based view is what a user can act on
          result.report.ok = false;
          result.report.note = failure;
        }
        break;
      }
      case StrictLoad::KeyMatching:
        result = std::move(by_key);
        result.report.ok = true;
        break;
    }
  }

  // Every dtype pair must be convertible before anything is written.
  if (result.report.ok) {
    const Dict& md = model_state.dict();
    for (const auto& [mi, src] : result.copies) {
      const Tensor& dst = md.items()[mi].second.tensor();
      if (!can_cast(src->dtype(), dst.dtype()))
        throw Error(ErrorKind::Mismatch,
                    "cannot copy a " + std::string(name(src->dtype())) + " checkpoint tensor into the " +
                        std::string(name(dst.dtype())) + " model tensor '" +
                        md.items()[mi].first.to_string() + "'",
                    ErrorContext::at_key(md.items()[mi].first.to_string()));
    }
  }
  return result;
}

}  // namespace detail

namespace detail {

// The memory of a set of tensors' storages as disjoint sorted byte ranges, so that whether
// another tensor overlaps any of them is a binary search (a model has thousands of tensors).
class MemoryRanges {
 public:
  explicit MemoryRanges(const std::vector<const Tensor*>& tensors) {
    std::vector<Range> all;
    for (const Tensor* t : tensors)
      if (t->defined()) all.push_back(range_of(*t));
    std::sort(all.begin(), all.end());
    for (const Range& r : all) {
      if (!ranges_.empty() && r.first <= ranges_.back().second)
        ranges_.back().second = std::max(ranges_.back().second, r.second);
      else
        ranges_.push_back(r);
    }
  }
  // Whether t's storage shares a byte with the storage of any of the tensors.
  bool overlaps(const Tensor& t) const {
    if (!t.defined()) return false;
    const auto [b, e] = range_of(t);
    auto next = std::upper_bound(ranges_.begin(), ranges_.end(), b,
                                 [](const std::byte* v, const Range& r) { return v < r.first; });
    if (next != ranges_.begin() && std::prev(next)->second > b && b < e) return true;
    return next != ranges_.end() && next->first < e && next->first < next->second;
  }

 private:
  using Range = std::pair<const std::byte*, const std::byte*>;
  static Range range_of(const Tensor& t) {
    const std::byte* b = t.storage()->data();
    return {b, b + t.storage()->nbytes()};
  }
  std::vector<Range> ranges_;
};

}  // namespace detail

// ---- The API ------------------------------------------------------------------------------------

// A dry run: what load_checkpoint_to_model would do. Mismatches are reported (ok = false),
// not thrown; malformed input (not a dict, a non-tensor entry, a missing ema_net, an empty
// backbone) throws sgckpt::Error.
inline LoadReport plan_checkpoint_load(const Value& model_state, const Value& checkpoint_or_state_dict,
                                       const ModelLoadOptions& options = {}) {
  return detail::plan_load(model_state, checkpoint_or_state_dict, options).report;
}

// Loads the checkpoint's weights into model_state (see the file comment). Returns the report
// of what was loaded; throws ONE sgckpt::Error (LoadReport::message()) and changes nothing
// when the load fails.
inline LoadReport load_checkpoint_to_model(Value& model_state, const Value& checkpoint_or_state_dict,
                                           const ModelLoadOptions& options = {}) {
  detail::LoadPlan plan = detail::plan_load(model_state, checkpoint_or_state_dict, options);
  if (!plan.report.ok) throw Error(ErrorKind::Mismatch, plan.report.message());

  Dict& md = model_state.dict();
  auto target = [&](std::size_t mi) -> Tensor& {
    return (md.begin() + static_cast<std::ptrdiff_t>(mi))->second.tensor();
  };
  // A source that shares memory with a model tensor (the checkpoint is, or views, the model
  // itself) is read in full before anything is written; every other source is copied once.
  std::vector<const Tensor*> targets;
  for (const auto& [mi, unused] : plan.copies) targets.push_back(&target(mi));
  const detail::MemoryRanges model_memory(targets);
  std::vector<Tensor> staged(plan.copies.size());
  for (std::size_t c = 0; c < plan.copies.size(); ++c)
    if (model_memory.overlaps(*plan.copies[c].second))
      staged[c] = cast(*plan.copies[c].second, target(plan.copies[c].first).dtype());
  for (std::size_t c = 0; c < plan.copies.size(); ++c) {
    Tensor& dst = target(plan.copies[c].first);
    if (dst.storage()->read_only()) dst = Tensor::empty(dst.dtype(), dst.shape());
    copy_into(dst, staged[c].defined() ? staged[c] : *plan.copies[c].second);
  }
  return plan.report;
}

// The same, reading the checkpoint from a file (mapped, per options.file; errors carry the
// file name).
inline LoadReport load_checkpoint_to_model(Value& model_state, const std::filesystem::path& checkpoint_path,
                                           const ModelLoadOptions& options = {}) {
  const Value ckpt = load(checkpoint_path, options.file);
  try {
    return load_checkpoint_to_model(model_state, ckpt, options);
  } catch (const Error& e) {
    throw e.with_file(checkpoint_path.string());
  }
}
// A path spelled as a string (which would otherwise also convert to a Value).
template <class S>
requires std::is_convertible_v<const S&, std::string_view>
inline LoadReport load_checkpoint_to_model(Value& model_state, const S& checkpoint_path,
                                           const ModelLoadOptions& options = {}) {
  return load_checkpoint_to_model(model_state, std::filesystem::path(std::string_view(checkpoint_path)),
                                  options);
}

}  // namespace sgckpt
