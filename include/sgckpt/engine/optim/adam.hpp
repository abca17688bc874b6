// sgckpt/engine/optim/adam.hpp: torch.optim.Adam and torch.optim.AdamW (torch 1.13's
// single-tensor, non-capturable algorithm) over float32 buffers, with torch 1.13's
// state_dict() (`step` a 0-dim float32 tensor) and a load_state_dict() for 1.6 .. 2.x files
// (int `step` of 1.6-1.11, missing newer group keys, initial_lr, param_names). Parameters on
// a device keep their state there and are stepped by one fused launch per group
// (ops::mt::AdamOp), with the host loop's bits.
#pragma once

#include <sgckpt/ckpt/checked_int.hpp>
#include <sgckpt/engine/dispatch.hpp>
#include <sgckpt/engine/ops/multi_tensor.hpp>
#include <sgckpt/engine/optim/fused_group.hpp>
#include <sgckpt/engine/optim/param.hpp>
#include <sgckpt/engine/optim_math.hpp>
#include <sgckpt/engine/tensor.hpp>

#include <math.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sgckpt::engine {

class Adam : public Optimizer {
 public:
  // torch 1.13 defaults (types and key order of Adam's group dict; AdamW's differ: see AdamW).
  static Value defaults(const Value& options, bool adamw) {
    Value d = Value::make_dict();
    d["lr"] = 1e-3;
    d["betas"] = Value::make_tuple({Value(0.9), Value(0.999)});
    d["eps"] = 1e-8;
    if (adamw) {
      d["weight_decay"] = 1e-2;
      d["amsgrad"] = false;
      d["foreach"] = Value();
      d["maximize"] = false;
      d["capturable"] = false;
    } else {
      d["weight_decay"] = 0;
      d["amsgrad"] = false;
      d["maximize"] = false;
      d["foreach"] = Value();
      d["capturable"] = false;
      d["differentiable"] = false;
      d["fused"] = false;
    }
    if (options.is_dict())
      for (const auto& [k, v] : options.dict()) d.dict().set(k, v);
    return d;
  }

  Adam(std::vector<ParamRef> params, const Value& options) : Adam(std::move(params), {}, options) {}
  Adam(std::vector<ParamRef> params, std::vector<GroupSpec> groups, const Value& options)
      : Adam(std::move(params), std::move(groups), options, false) {}

  void step() override {
    std::size_t gi = 0;
    for (const auto& g : groups_) {
      const double lr = g.lr();
      const auto& betas = g.hp.at("betas").items();
      const double beta1 = betas.at(0).as_number(), beta2 = betas.at(1).as_number();
      const double eps = g.number("eps");
      const double wd = g.number("weight_decay");
      const bool amsgrad = g.flag("amsgrad");
      const bool maximize = g.flag("maximize");
      const float f_b1 = static_cast<float>(beta1), f_1mb1 = static_cast<float>(1.0 - beta1);
      const float f_b2 = static_cast<float>(beta2), f_1mb2 = static_cast<float>(1.0 - beta2);
      const float f_eps = static_cast<float>(eps);
      const float f_wd = decoupled_ ? 0.0f : static_cast<float>(wd);
      const float f_decay = static_cast<float>(1.0 - lr * wd);
      std::vector<std::size_t> on_device;
      for (auto i : g.params) {
        const ParamRef& p = params_[i];
        if (!p.grad) continue;
        State& s = state_[i];
        if (p.device != Device::CPU) {  // stepped below, all at once
          if (!s.init) {
            s.init = true;
            order_.push_back(i);
            s.dm = Tensor::zeros(p.shape, DType::Float32, p.device);
            s.dv = Tensor::zeros(p.shape, DType::Float32, p.device);
          }
          if (amsgrad && !s.dvmax.defined()) s.dvmax = Tensor::zeros(p.shape, DType::Float32, p.device);
          on_device.push_back(i);
          continue;
        }
        if (!s.init) {
          s.init = true;
          order_.push_back(i);
          s.step = 0.0f;
          s.m.assign(p.numel, 0.0f);
          s.v.assign(p.numel, 0.0f);
          if (amsgrad) s.vmax.assign(p.numel, 0.0f);
        }
        if (amsgrad && s.vmax.size() != p.numel) s.vmax.assign(p.numel, 0.0f);
        s.step += 1.0f;  // step_t += 1 (a float32 tensor)
        const double step = static_cast<double>(s.step);
        const double bc1 = 1 - std::pow(beta1, step);
        const double bc2 = 1 - std::pow(beta2, step);
        const float neg_step_size = static_cast<float>(-(lr / bc1));
        const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
        for (std::size_t k = 0; k < p.numel; ++k) {
          float x = p.data[k];
          if (decoupled_) x = optim_math::adamw_decay(x, f_decay);
          const float gr = optim_math::adam_grad(p.grad[k], x, f_wd, maximize);
          const float m = s.m[k] = optim_math::adam_m(s.m[k], gr, f_b1, f_1mb1);
          float v = s.v[k] = optim_math::adam_v(s.v[k], gr, f_b2, f_1mb2);
          if (amsgrad) {
            const float mx = s.vmax[k];
            v = s.vmax[k] = (mx >= v || mx != mx) ? mx : v;  // torch.maximum (NaN propagates)
          }
          p.data[k] = optim_math::adam_apply(x, m, v, bc2_sqrt, f_eps, neg_step_size);
        }
      }
      if (!on_device.empty()) {
        ops::mt::AdamOp op;
        op.decoupled = decoupled_;
        op.amsgrad = amsgrad;
        op.maximize = maximize;
        op.beta1 = f_b1, op.one_minus_beta1 = f_1mb1, op.beta2 = f_b2, op.one_minus_beta2 = f_1mb2;
        op.eps = f_eps, op.wd = static_cast<float>(wd), op.one_minus_lr_wd = f_decay;
        step_device(gi, on_device, op, lr, beta1, beta2);
      }
      ++gi;
    }
  }

  // torch 1.13: state {id: {'step': tensor(n.), 'exp_avg', 'exp_avg_sq'[, 'max_exp_avg_sq']}}.
  Value state_dict() const override {
    Value sd = Value::make_dict();
    Value state = Value::make_dict();
    const auto tid = torch_ids();
    for (auto i : order_) {
      const State& s = state_[i];
      Value d = Value::make_dict();
      const float st = s.step;
      d["step"] = sgckpt::Tensor::from_values(DType::Float32, Shape{}, std::span<const float>(&st, 1));
      if (s.dm.defined()) {  // on a device: copied to the host
        d["exp_avg"] = s.dm.to_host();
        d["exp_avg_sq"] = s.dv.to_host();
        if (s.dvmax.defined()) d["max_exp_avg_sq"] = s.dvmax.to_host();
      } else {
        d["exp_avg"] = optim_detail::to_tensor(s.m, params_[i].shape);
        d["exp_avg_sq"] = optim_detail::to_tensor(s.v, params_[i].shape);
        if (!s.vmax.empty()) d["max_exp_avg_sq"] = optim_detail::to_tensor(s.vmax, params_[i].shape);
      }
      state.dict().set(Key(tid[i]), std::move(d));
    }
    sd["state"] = std::move(state);
    sd["param_groups"] = packed_groups();
    return sd;
  }

  void load_state_dict(const Value& sd) override {
    auto id_map = load_groups(sd);
    state_.assign(params_.size(), {});
    fused_.clear();
    order_.clear();
    for (const auto& [k, v] : sd.at("state").dict()) {
      if (!k.is_int() || !v.is_dict()) continue;
      for (const auto& [id, idx] : id_map) {
        if (id != k.integer()) continue;
        State& s = state_[idx];
        const std::string who = "Adam state of " + params_[idx].name;
        s.step = saved_step(v.at("step"), "state/" + k.to_string() + "/step");
        s.m = optim_detail::from_tensor(v.at("exp_avg"), params_[idx].numel, who);
        s.v = optim_detail::from_tensor(v.at("exp_avg_sq"), params_[idx].numel, who);
        if (const Value* mx = v.dict().find("max_exp_avg_sq"); mx && mx->is_tensor())
          s.vmax = optim_detail::from_tensor(*mx, params_[idx].numel, who);
        if (const ParamRef& p = params_[idx]; p.device != Device::CPU) {  // the state lives beside it
          auto to_device = [&](std::vector<float>& h) {
            Tensor t = Tensor::from_vector(p.shape, h).to(p.device);
            h = {};
            return t;
          };
          s.dm = to_device(s.m);
          s.dv = to_device(s.v);
          if (!s.vmax.empty()) s.dvmax = to_device(s.vmax);
        }
        s.init = true;
        order_.push_back(idx);
      }
    }
  }

  float step_count(std::size_t i) const { return state_.at(i).step; }

 protected:
  Adam(std::vector<ParamRef> params, std::vector<GroupSpec> groups, const Value& options, bool decoupled)
      : decoupled_(decoupled) {
    params_ = std::move(params);
    const Value d = defaults(options, decoupled);
    if (groups.empty()) groups.push_back({optim_detail::iota(params_.size()), Value::make_dict()});
    for (auto& g : groups) {
      add_group(std::move(g.params), d, g.options);
      const auto& gr = groups_.back();
      if (gr.lr() < 0) throw Error("Adam: invalid learning rate");
      if (gr.number("eps") < 0) throw Error("Adam: invalid epsilon value");
      const auto& b = gr.hp.at("betas").items();
      if (b.size() != 2 || b[0].as_number() < 0 || b[0].as_number() >= 1 || b[1].as_number() < 0 ||
          b[1].as_number() >= 1)
        throw Error("Adam: invalid beta parameters");
      if (gr.number("weight_decay") < 0) throw Error("Adam: invalid weight_decay value");
    }
    state_.assign(params_.size(), {});
  }

 private:
  // The group's parameters on a device: one fused launch per distinct step count (usually one),
  // ops::mt::AdamOp with this step's bias corrections computed here as the host loop computes
  // them, so the CPU's bits. The table is built once and rebuilt when the pointers change.
  void step_device(std::size_t gi, const std::vector<std::size_t>& idx, ops::mt::AdamOp op, double lr,
                   double beta1, double beta2) {
    const Device device = params_[idx.front()].device;
    std::map<float, std::vector<std::size_t>> by_step;
    for (auto i : idx) {
      if (params_[i].device != device)
        throw Error("Adam: parameters " + params_[idx.front()].name + " and " + params_[i].name +
                    " of one group are on two devices");
      by_step[state_[i].step].push_back(i);
    }
    Backend& be = backend(device);
    if (!step_dev_.defined() || step_dev_.device() != device)
      step_dev_ = Tensor::empty({1}, DType::Float32, device);
    if (fused_.size() <= gi) fused_.resize(gi + 1);
    for (const auto& [count, members] : by_step) {
      std::vector<ops::mt::Slot> slots;
      for (auto i : members) {
        const ParamRef& p = params_[i];
        State& s = state_[i];
        ops::mt::Slot sl;
        sl.ptr[0] = p.data;
        sl.ptr[1] = const_cast<float*>(p.grad);
        sl.ptr[2] = s.dm.data_ptr<float>();
        sl.ptr[3] = s.dv.data_ptr<float>();
        sl.ptr[4] = s.dvmax.defined() ? s.dvmax.data_ptr<float>() : nullptr;
        sl.numel = static_cast<std::int64_t>(p.numel);
        slots.push_back(sl);
        s.step += 1.0f;  // step_t += 1, as the host loop
      }
      be.copy_from_host(step_dev_.data_ptr<float>(), &count, sizeof(float));
      op.step = step_dev_.data_ptr<float>();
      ops::mt::fill_adam_table(op, lr, beta1, beta2, count + 1.0f);
      fused_[gi].run(be, slots, op);
    }
  }

  // A saved step count (a 0-dim tensor since torch 1.12, an int before) as the float32 this
  // optimizer counts in. A negative, NaN or infinite step would turn the bias corrections
  // 1 - beta^step into garbage (a negative step: a negative sqrt, NaN weights); torch's
  // float32 counter stops growing at 2^24, and no honest int count comes near 2^53.
  static float saved_step(const Value& st, const std::string& key_path) {
    if (st.is_tensor() && st.tensor().numel() != 1)
      throw Error(ErrorKind::Schema,
                  "'step' is a tensor of " + std::to_string(st.tensor().numel()) + " elements, not a count",
                  ErrorContext::at_key(key_path));
    const double max = static_cast<double>(std::int64_t{1} << 53);
    if (st.is_tensor())
      return static_cast<float>(number_in_range(st.tensor().element_as_double(0), key_path, 0, max));
    return static_cast<float>(number_in_range(st, key_path, 0, max));
  }

  struct State {
    bool init = false;
    float step = 0.0f;
    std::vector<float> m, v, vmax;  // a host parameter's
    Tensor dm, dv, dvmax;           // a device parameter's, on its device
  };
  bool decoupled_ = false;
  std::vector<FusedGroupTable> fused_;  // per group, for its device parameters
  Tensor step_dev_;                     // the step count a fused launch reads (set before each)
  std::vector<State> state_;
  std::vector<std::size_t> order_;
};

// AdamW: decoupled weight decay (param *= 1 - lr * weight_decay before the Adam update);
// torch 1.13's AdamW group keys: lr, betas, eps, weight_decay (0.01), amsgrad, foreach,
// maximize, capturable.
class AdamW : public Adam {
 public:
  AdamW(std::vector<ParamRef> params, const Value& options) : AdamW(std::move(params), {}, options) {}
  AdamW(std::vector<ParamRef> params, std::vector<GroupSpec> groups, const Value& options)
      : Adam(std::move(params), std::move(groups), options, true) {}
};

}  // namespace sgckpt::engine
