// sgckpt/engine/optim/sgd.hpp: torch.optim.SGD (torch 1.13's single-tensor algorithm) over
// float32 buffers, with torch 1.13's state_dict() and a load_state_dict() that accepts what
// torch 1.6 .. 2.x write.
#pragma once

#include <sgckpt/engine/dispatch.hpp>
#include <sgckpt/engine/ops/sgd.hpp>
#include <sgckpt/engine/optim/fused_group.hpp>
#include <sgckpt/engine/optim/param.hpp>
#include <sgckpt/engine/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sgckpt::engine {

class SGD : public Optimizer {
 public:
  // torch 1.13's defaults dict, key order and types: lr (required), momentum 0, dampening 0,
  // weight_decay 0 (ints), nesterov/maximize False, foreach None, differentiable False.
  // `options` overrides any of them keeping the given Value type (0.9 float, 0 int, ...).
  static Value defaults(const Value& options) {
    Value d = Value::make_dict();
    if (!options.contains("lr")) throw Error("SGD: 'lr' is required");
    d["lr"] = Value();
    d["momentum"] = 0;
    d["dampening"] = 0;
    d["weight_decay"] = 0;
    d["nesterov"] = false;
    d["maximize"] = false;
    d["foreach"] = Value();
    d["differentiable"] = false;
    for (const auto& [k, v] : options.dict()) d.dict().set(k, v);
    return d;
  }

  // One group holding every parameter.
  SGD(std::vector<ParamRef> params, const Value& options) : SGD(std::move(params), {}, options) {}

  // Explicit groups (each with its own overrides); empty `groups` = one group with everything.
  SGD(std::vector<ParamRef> params, std::vector<GroupSpec> groups, const Value& options) {
    params_ = std::move(params);
    defaults_ = defaults(options);
    if (groups.empty()) groups.push_back({optim_detail::iota(params_.size()), Value::make_dict()});
    for (auto& g : groups) {
      add_group(std::move(g.params), defaults_, g.options);
      validate(groups_.back());
    }
    reset_state();
  }

  // SG's zero_weight_decay_on_bias_and_bn (zero_wd_groups).
  static SGD zero_wd_on_bias_and_bn(std::vector<ParamRef> params, const Value& options) {
    auto groups = zero_wd_groups(params);
    return SGD(std::move(params), std::move(groups), options);
  }

  void step() override {
    std::size_t gi = 0;
    for (const auto& g : groups_) {
      const double lr = g.lr();
      const double momentum = g.number("momentum");
      const double dampening = g.number("dampening");
      const double wd = g.number("weight_decay");
      const bool nesterov = g.flag("nesterov");
      const bool maximize = g.flag("maximize");
      const float f_wd = static_cast<float>(wd), f_mom = static_cast<float>(momentum);
      const float f_1md = static_cast<float>(1.0 - dampening), f_neg_lr = static_cast<float>(-lr);
      ops::mt::SgdOp fused{.nesterov = nesterov,
                           .maximize = maximize,
                           .wd = f_wd,
                           .momentum = f_mom,
                           .one_minus_dampening = f_1md,
                           .neg_lr = f_neg_lr};
      if (step_fused(gi++, g, momentum != 0.0, fused)) continue;
      for (auto i : g.params) {
        const ParamRef& p = params_[i];
        if (!p.grad) continue;
        touch(i);
        ops::SgdStep a{.data = p.data,
                       .grad = p.grad,
                       .nesterov = nesterov,
                       .maximize = maximize,
                       .wd = f_wd,
                       .momentum = f_mom,
                       .one_minus_dampening = f_1md,
                       .neg_lr = f_neg_lr};
        if (momentum != 0.0) {  // the buffer lives on the parameter's device
          Tensor& buf = buf_[i];
          a.first = !buf.defined();
          if (a.first) buf = Tensor::empty(p.shape, DType::Float32, p.device);
          a.buf = buf.data_ptr<float>();
        }
        backend(p.device).sgd_step(a, p.numel);
      }
    }
  }

  // torch 1.13: {'state': {idx: {'momentum_buffer': Tensor or None}} for stepped params in the
  // order they were first stepped, 'param_groups': [{hyper-parameters..., 'params': [ids]}]}.
  Value state_dict() const override {
    Value sd = Value::make_dict();
    Value state = Value::make_dict();
    const auto tid = torch_ids();
    for (auto i : order_) {
      Value s = Value::make_dict();
      s["momentum_buffer"] = buf_[i].defined() ? Value(buf_[i].to_host()) : Value();
      state.dict().set(Key(tid[i]), std::move(s));
    }
    sd["state"] = std::move(state);
    sd["param_groups"] = packed_groups();
    return sd;
  }

  // Accepts torch 1.6 .. 2.x: groups without maximize/foreach/differentiable/fused (ours stay),
  // with initial_lr / param_names / fused (taken over), momentum_buffer None or absent.
  void load_state_dict(const Value& sd) override {
    auto id_map = load_groups(sd);
    for (auto& g : groups_) validate(g);
    reset_state();
    const Value& state = sd.at("state");
    for (const auto& [k, v] : state.dict()) {
      if (!k.is_int()) continue;
      for (const auto& [id, idx] : id_map) {
        if (id != k.integer()) continue;
        touch(idx);
        const Value* mb = v.is_dict() ? v.dict().find("momentum_buffer") : nullptr;
        if (mb && mb->is_tensor())
          buf_[idx] =
              Tensor::from_vector(params_[idx].shape,
                                  optim_detail::from_tensor(*mb, params_[idx].numel,
                                                            "SGD momentum_buffer of " + params_[idx].name))
                  .to(params_[idx].device);
      }
    }
  }

  // The momentum buffer of parameter i, on its device (undefined before its first step or
  // with momentum 0).
  const Tensor& momentum_buffer(std::size_t i) const { return buf_.at(i); }

 private:
  static void validate(const ParamGroup& g) {
    if (g.lr() < 0) throw Error("SGD: invalid learning rate");
    if (g.number("momentum") < 0) throw Error("SGD: invalid momentum value");
    if (g.number("weight_decay") < 0) throw Error("SGD: invalid weight_decay value");
    if (g.flag("nesterov") && (g.number("momentum") <= 0 || g.number("dampening") != 0))
      throw Error("SGD: nesterov momentum requires a momentum and zero dampening");
  }
  // A group whose stepped parameters all live on one device (not the CPU) is updated by one
  // fused launch over a multi-tensor table (ops::mt::SgdOp: the bits of the per-tensor
  // kernel), built once and rebuilt only when the group's pointers change (new momentum
  // buffers, a loaded state). Returns false where the per-tensor loop must run: the CPU, mixed
  // devices, or new and old momentum buffers in one step.
  bool step_fused(std::size_t gi, const ParamGroup& g, bool with_momentum, ops::mt::SgdOp op) {
    std::vector<std::size_t> stepped;
    Device device = Device::CPU;
    std::size_t fresh = 0;
    for (auto i : g.params) {
      if (!params_[i].grad) continue;
      if (params_[i].device == Device::CPU || (!stepped.empty() && params_[i].device != device)) return false;
      device = params_[i].device;
      stepped.push_back(i);
      fresh += with_momentum && !buf_[i].defined();
    }
    if (stepped.empty() || (fresh != 0 && fresh != stepped.size())) return false;
    op.first = fresh != 0;
    std::vector<ops::mt::Slot> slots;
    for (auto i : stepped) {
      const ParamRef& p = params_[i];
      touch(i);
      if (with_momentum && !buf_[i].defined()) buf_[i] = Tensor::empty(p.shape, DType::Float32, p.device);
      ops::mt::Slot s;
      s.ptr[0] = p.data;
      s.ptr[1] = const_cast<float*>(p.grad);
      s.ptr[2] = with_momentum ? buf_[i].data_ptr<float>() : nullptr;
      s.numel = static_cast<std::int64_t>(p.numel);
      slots.push_back(s);
    }
    if (fused_.size() <= gi) fused_.resize(gi + 1);
    fused_[gi].run(backend(device), slots, op);
    return true;
  }

  void reset_state() {
    fused_.clear();
    buf_.assign(params_.size(), Tensor());
    has_state_.assign(params_.size(), false);
    order_.clear();
  }
  void touch(std::size_t i) {
    if (!has_state_[i]) {
      has_state_[i] = true;
      order_.push_back(i);
    }
  }

  Value defaults_;
  std::vector<FusedGroupTable> fused_;  // per group, on a device
  std::vector<Tensor> buf_;
  std::vector<bool> has_state_;
  std::vector<std::size_t> order_;
};

}  // namespace sgckpt::engine
