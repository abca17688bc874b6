// sgckpt/engine/optim/sgd.hpp: torch.optim.SGD (torch 1.13's single-tensor algorithm) over
// float32 buffers, with torch 1.13's state_dict() and a load_state_dict() that accepts what
// torch 1.6 .. 2.x write.
#pragma once

#include <sgckpt/engine/optim/param.hpp>
#include <sgckpt/engine/parallel.hpp>

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sgckpt::engine {

namespace optim_math {

// d_p = (maximize ? -g : g) + weight_decay * p   (torch: d_p.add(param, alpha=weight_decay))
SGCKPT_HD inline float sgd_direction(float g, float p, float weight_decay, bool maximize) {
  const float d = maximize ? -g : g;
  return weight_decay != 0.0f ? fmaf(p, weight_decay, d) : d;
}
// buf = buf * momentum + (1 - dampening) * d_p   (buf.mul_(momentum).add_(d_p, alpha=1-dampening))
SGCKPT_HD inline float sgd_momentum(float buf, float d, float momentum, float one_minus_dampening) {
  return fmaf(d, one_minus_dampening, buf * momentum);
}
// nesterov: d_p + momentum * buf; else buf
SGCKPT_HD inline float sgd_step_dir(float d, float buf, float momentum, bool nesterov) {
  return nesterov ? fmaf(buf, momentum, d) : buf;
}
// param.add_(d_p, alpha=-lr)
SGCKPT_HD inline float sgd_apply(float p, float d, float neg_lr) {
  return fmaf(d, neg_lr, p);
}

}  // namespace optim_math

namespace optim_detail {

// One SGD update of elements [begin, end) of a parameter with a momentum buffer (first: the
// buffer is new and takes d_p as torch's clone does).
struct SgdMomentumArgs {
  float* data;
  const float* grad;
  float* buf;
  bool first, nesterov, maximize;
  float wd, momentum, one_minus_dampening, neg_lr;
};
inline void sgd_momentum_range(const SgdMomentumArgs& a, std::size_t begin, std::size_t end) {
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
// The same loop compiled for FMA hardware: a portable build (no -mfma) calls libm's fmaf,
// emulated in software, three times per element (ResNet18: 170 ms per step, torch 30 ms).
// fmaf is correctly rounded either way, so both give the same bits.
__attribute__((target("avx2,fma"), flatten)) inline void sgd_momentum_range_fma(const SgdMomentumArgs& a,
                                                                                std::size_t begin,
                                                                                std::size_t end) {
  sgd_momentum_range(a, begin, end);
}
inline bool cpu_has_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}
#endif

// Elementwise, so splitting over threads does not change any result.
inline void sgd_momentum_update(const SgdMomentumArgs& a, std::size_t n) {
  constexpr std::size_t kMinPerThread = std::size_t{1} << 15;  // below: threads cost more than they save
  auto run = [&](std::size_t b, std::size_t e) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__)
    if (cpu_has_fma()) return sgd_momentum_range_fma(a, b, e);
#endif
    sgd_momentum_range(a, b, e);
  };
  if (n < 2 * kMinPerThread) return run(0, n);
  const std::int64_t chunks = static_cast<std::int64_t>(n / kMinPerThread);
  parallel_for(chunks, [&](std::int64_t c0, std::int64_t c1, int) {
    run(static_cast<std::size_t>(c0) * n / static_cast<std::size_t>(chunks),
        static_cast<std::size_t>(c1) * n / static_cast<std::size_t>(chunks));
  });
}

}  // namespace optim_detail

// One param group for the constructors: parameter indices and the group's own options
// (any SGD key; the rest come from the defaults).
struct GroupSpec {
  std::vector<std::size_t> params;
  Value options = Value::make_dict();
};

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

  // SG's zero_weight_decay_on_bias_and_bn: group 0 = decayed params (options as given),
  // group 1 = bias / BatchNorm params with weight_decay 0 (see is_bias_or_bn for the rule).
  // SG builds the groups in this order: [{named decay params}, {no-decay, weight_decay: 0.0}].
  static SGD zero_wd_on_bias_and_bn(std::vector<ParamRef> params, const Value& options) {
    auto [decay, no_decay] = split_bias_bn(params);
    std::vector<GroupSpec> groups;
    groups.push_back({std::move(decay), Value::make_dict()});
    Value nd = Value::make_dict();
    nd["weight_decay"] = 0.0;
    groups.push_back({std::move(no_decay), std::move(nd)});
    return SGD(std::move(params), std::move(groups), options);
  }

  void step() override {
    for (const auto& g : groups_) {
      const double lr = g.lr();
      const double momentum = g.number("momentum");
      const double dampening = g.number("dampening");
      const double wd = g.number("weight_decay");
      const bool nesterov = g.flag("nesterov");
      const bool maximize = g.flag("maximize");
      const float f_wd = static_cast<float>(wd), f_mom = static_cast<float>(momentum);
      const float f_1md = static_cast<float>(1.0 - dampening), f_neg_lr = static_cast<float>(-lr);
      for (auto i : g.params) {
        const ParamRef& p = params_[i];
        if (!p.grad) continue;
        touch(i);
        if (momentum == 0.0) {
          for (std::size_t k = 0; k < p.numel; ++k)
            p.data[k] = optim_math::sgd_apply(
                p.data[k], optim_math::sgd_direction(p.grad[k], p.data[k], f_wd, maximize), f_neg_lr);
          continue;
        }
        auto& buf = buf_[i];
        const bool first = buf.empty();
        if (first) buf.resize(p.numel);
        optim_detail::sgd_momentum_update(
            {p.data, p.grad, buf.data(), first, nesterov, maximize, f_wd, f_mom, f_1md, f_neg_lr}, p.numel);
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
      if (buf_[i].empty())
        s["momentum_buffer"] = Value();
      else
        s["momentum_buffer"] = optim_detail::to_tensor(buf_[i], params_[i].shape);
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
          buf_[idx] = optim_detail::from_tensor(*mb, params_[idx].numel,
                                                "SGD momentum_buffer of " + params_[idx].name);
      }
    }
  }

  // The momentum buffer of parameter i (empty before its first step or with momentum 0).
  const std::vector<float>& momentum_buffer(std::size_t i) const { return buf_.at(i); }

 private:
  static void validate(const ParamGroup& g) {
    if (g.lr() < 0) throw Error("SGD: invalid learning rate");
    if (g.number("momentum") < 0) throw Error("SGD: invalid momentum value");
    if (g.number("weight_decay") < 0) throw Error("SGD: invalid weight_decay value");
    if (g.flag("nesterov") && (g.number("momentum") <= 0 || g.number("dampening") != 0))
      throw Error("SGD: nesterov momentum requires a momentum and zero dampening");
  }
  void reset_state() {
    buf_.assign(params_.size(), {});
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
  std::vector<std::vector<float>> buf_;
  std::vector<bool> has_state_;
  std::vector<std::size_t> order_;
};

}  // namespace sgckpt::engine
