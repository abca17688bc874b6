// sgckpt/engine/optim/param.hpp: what the optimizers work on, independent of the engine's
// tensor type: a list of named float32 buffers (ParamRef), param groups with per-group
// hyper-parameters kept as sgckpt::Value (so int-vs-float-vs-bool survives exactly as the user
// gave it, as torch's state_dict() shows it), and the Optimizer base the LR schedulers drive.
#pragma once

#include <sgckpt/ckpt/checked_int.hpp>
#include <sgckpt/core/cast.hpp>
#include <sgckpt/core/error.hpp>
#include <sgckpt/core/state.hpp>
#include <sgckpt/core/tensor.hpp>
#include <sgckpt/core/value.hpp>
#include <sgckpt/detail/host_device.hpp>
#include <sgckpt/engine/device.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace sgckpt::engine {

// One trainable parameter: `numel` float32 values at `data` (updated in place) with the gradient
// at `grad` (read; nullptr = no gradient this step, skipped like torch's `p.grad is None`),
// both in the memory of `device`.
struct ParamRef {
  std::string name;
  float* data = nullptr;
  const float* grad = nullptr;
  std::size_t numel = 0;
  sgckpt::Shape shape;
  Device device = Device::CPU;
};

// Optimizers whose step runs only on host memory refuse device parameters up front.
inline void require_host_params(const std::vector<ParamRef>& params, const char* who) {
  for (const auto& p : params)
    if (p.device != Device::CPU)
      throw Error(std::string(who) + ": parameter " + p.name + " is on " + device_name(p.device) + "; " +
                  who + " supports host memory only so far");
}

// A param group: indices into the optimizer's parameter list plus the hyper-parameters as an
// insertion-ordered dict (torch's group keys, in torch's order; `params` is appended by
// state_dict()). Extra keys (`initial_lr`, `param_names`, ...) are kept in place.
struct ParamGroup {
  std::vector<std::size_t> params;
  Value hp = Value::make_dict();

  double number(const char* key) const { return hp.at(key).as_number(); }
  bool flag(const char* key, bool dflt = false) const {
    const Value* v = hp.dict().find(key);
    if (!v || v->is_none()) return dflt;
    return v->is_bool() ? v->as_bool() : v->as_number() != 0;
  }
  double lr() const { return number("lr"); }
  void set_lr(double lr) { hp["lr"] = lr; }
};

// What every optimizer offers the LR schedulers and the trainer.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  virtual Value state_dict() const = 0;
  virtual void load_state_dict(const Value& sd) = 0;

  std::vector<ParamGroup>& param_groups() noexcept { return groups_; }
  const std::vector<ParamGroup>& param_groups() const noexcept { return groups_; }
  std::vector<ParamRef>& params() noexcept { return params_; }
  const std::vector<ParamRef>& params() const noexcept { return params_; }
  // Rebinds the buffers (e.g. after the engine reallocated them); names/sizes must match.
  void set_params(std::vector<ParamRef> params) {
    if (params.size() != params_.size())
      throw Error("optimizer: set_params with a different parameter count");
    for (std::size_t i = 0; i < params.size(); ++i)
      if (params[i].numel != params_[i].numel)
        throw Error("optimizer: set_params changes the size of " + params[i].name);
    params_ = std::move(params);
  }

 protected:
  // Adds a group built from `defaults` (keys in torch's order) overridden by `overrides`.
  void add_group(std::vector<std::size_t> idx, const Value& defaults, const Value& overrides) {
    // torch's add_param_group: the group's own keys first (in the user's order), then
    // setdefault() of every default in the defaults' order.
    ParamGroup g;
    g.params = std::move(idx);
    if (overrides.is_dict())
      for (const auto& [k, v] : overrides.dict())
        if (!(k.is_str() && k.str() == "params")) g.hp.dict().set(k, v);
    for (const auto& [k, v] : defaults.dict())
      if (!g.hp.contains(k)) g.hp.dict().set(k, v);
    for (auto i : g.params)
      if (i >= params_.size()) throw Error("optimizer: param group refers to parameter " + std::to_string(i));
    groups_.push_back(std::move(g));
  }

  // torch's Optimizer.state_dict() param_groups part: hyper-parameters then `params`.
  // torch numbers parameters 0.. across the groups in group order (param_mappings).
  std::vector<std::int64_t> torch_ids() const {
    std::vector<std::int64_t> ids(params_.size(), -1);
    std::int64_t next = 0;
    for (const auto& g : groups_)
      for (auto i : g.params)
        if (ids[i] < 0) ids[i] = next++;
    return ids;
  }

  Value packed_groups() const {
    Value list = Value::make_list();
    const auto tid = torch_ids();
    for (const auto& g : groups_) {
      Value d = Value::make_dict();
      for (const auto& [k, v] : g.hp.dict())
        if (!(k.is_str() && k.str() == "params")) d.dict().set(k, v);
      Value ids = Value::make_list();
      for (auto i : g.params) ids.items().emplace_back(static_cast<long long>(tid[i]));
      d["params"] = std::move(ids);
      list.items().push_back(std::move(d));
    }
    return list;
  }

  // torch's Optimizer.load_state_dict() group part: same group count and sizes; the saved group
  // replaces ours (its keys in its order: `initial_lr`, `param_names`, `fused` ... are taken
  // over), then the keys it lacks (maximize, foreach, ... of older torch) are appended with our
  // values, as the optimizer's __setstate__ setdefault()s them.
  // Returns, for each saved param id, our parameter index.
  std::vector<std::pair<std::int64_t, std::size_t>> load_groups(const Value& sd) {
    const Value& saved = sd.at("param_groups");
    if (saved.size() != groups_.size())
      throw Error(
          ErrorKind::Mismatch,
          "the checkpoint's optimizer has " + std::to_string(saved.size()) +
              " parameter group(s), this one " + std::to_string(groups_.size()) +
              " (the parameters were grouped differently: SuperGradients' "
              "zero_weight_decay_on_bias_and_bn makes 2 groups, one without weight decay; it is off by "
              "default there)");
    std::vector<std::pair<std::int64_t, std::size_t>> id_map;
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      const Value& sg = saved.items()[gi];
      const Value& ids = sg.at("params");
      if (ids.size() != groups_[gi].params.size())
        throw Error(
            ErrorKind::Mismatch,
            "loaded state dict contains a parameter group that doesn't match the size of optimizer's group");
      for (std::size_t k = 0; k < ids.size(); ++k) {
        const std::string where = "param_groups/" + std::to_string(gi) + "/params/" + std::to_string(k);
        id_map.emplace_back(int_in_range<std::int64_t>(ids.items()[k], where), groups_[gi].params[k]);
      }
      Value hp = Value::make_dict();
      for (const auto& [k, v] : sg.dict())
        if (!(k.is_str() && k.str() == "params")) hp.dict().set(k, v);
      for (const auto& [k, v] : groups_[gi].hp.dict())
        if (!hp.contains(k)) hp.dict().set(k, v);
      groups_[gi].hp = std::move(hp);
    }
    return id_map;
  }

  std::vector<ParamRef> params_;
  std::vector<ParamGroup> groups_;
};

namespace optim_detail {

// sgckpt::Tensor spelled out here and below: inside sgckpt::engine a bare `Tensor` would be
// engine::Tensor when engine/tensor.hpp is included first (as engine.hpp + sgd.hpp do).
inline sgckpt::Tensor to_tensor(const std::vector<float>& v, const Shape& shape) {
  return sgckpt::Tensor::from_values(DType::Float32, shape, std::span<const float>(v));
}

// A saved per-param tensor back into float32 values (any float dtype, any strides).
inline std::vector<float> from_tensor(const Value& v, std::size_t numel, const std::string& what) {
  const sgckpt::Tensor& t = v.tensor();
  if (t.numel() != numel)
    throw Error(ErrorKind::Mismatch, what + ": saved tensor has " + std::to_string(t.numel()) +
                                         " elements, the parameter " + std::to_string(numel));
  std::vector<float> out(numel);
  // Converted as torch's copy_ converts (sgckpt::copy_into), straight into `out`.
  sgckpt::Tensor dst = sgckpt::Tensor::view_of(
      sgckpt::Storage::borrow(nullptr, reinterpret_cast<std::byte*>(out.data()), numel * sizeof(float)),
      DType::Float32, 0, t.shape(), sgckpt::contiguous_strides(t.shape()));
  sgckpt::copy_into(dst, t);
  return out;
}

inline std::vector<std::size_t> iota(std::size_t n) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

}  // namespace optim_detail

// One param group for the constructors: parameter indices and the group's own options
// (any of the optimizer's keys; the rest come from the defaults).
struct GroupSpec {
  std::vector<std::size_t> params;
  Value options = Value::make_dict();
};

// SuperGradients' `zero_weight_decay_on_bias_and_bn`: the rule used here to split parameters
// into a decayed and a non-decayed group, by name only. A parameter gets NO weight decay when
//   * its name ends in ".bias" (every bias, BatchNorm's included), or
//   * it belongs to a BatchNorm module, i.e. its module path (the name without the last
//     component) has a component starting with "bn" (bn1, bn2, ...) or ends in "shortcut.1"
//     (the BatchNorm of SG's ResNet projection shortcut: "layer2.0.shortcut.1.weight").
// Everything else (conv / linear weights, "shortcut.0.weight") keeps the group's weight decay.
inline bool is_bias_or_bn(const std::string& name) {
  auto ends_with = [](const std::string& s, std::string_view suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends_with(name, ".bias") || name == "bias") return true;
  const auto dot = name.rfind('.');
  const std::string module = dot == std::string::npos ? std::string() : name.substr(0, dot);
  if (ends_with(module, "shortcut.1")) return true;
  std::size_t start = 0;
  while (start <= module.size()) {
    auto end = module.find('.', start);
    if (end == std::string::npos) end = module.size();
    if (module.compare(start, 2, "bn") == 0 && end - start >= 2) return true;
    start = end + 1;
  }
  return false;
}

// The two groups of SG's zero_weight_decay_on_bias_and_bn, in SG's order (its
// separate_zero_wd_params_groups_for_optimizer): group 0 = bias / BatchNorm parameters
// (is_bias_or_bn) with weight_decay 0.0, group 1 = the rest with the options as given. The
// order is part of the optimizer's state_dict: SG's trainer refuses to resume a file whose
// groups come the other way round.
inline std::vector<GroupSpec> zero_wd_groups(const std::vector<ParamRef>& params) {
  std::vector<std::size_t> no_decay, decay;
  for (std::size_t i = 0; i < params.size(); ++i)
    (is_bias_or_bn(params[i].name) ? no_decay : decay).push_back(i);
  Value nd = Value::make_dict();
  nd["weight_decay"] = 0.0;
  std::vector<GroupSpec> groups;
  groups.push_back({std::move(no_decay), std::move(nd)});
  groups.push_back({std::move(decay), Value::make_dict()});
  return groups;
}

}  // namespace sgckpt::engine
