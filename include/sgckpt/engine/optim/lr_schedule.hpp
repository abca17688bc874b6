// sgckpt/engine/optim/lr_schedule.hpp: learning-rate schedules.
//
//  * SGLRSchedule: SuperGradients' per-epoch modes (StepLRScheduler / CosineLRScheduler /
//    PolyLRScheduler) with SG's linear epoch warm-up (LinearEpochLRWarmup), at epoch
//    granularity (train_loader_len 1, batch_accumulate 1, no cooldown, no warm-up steps).
//  * StepLR, MultiStepLR, CosineAnnealingLR: torch 1.13's recursive (chainable) forms, bit for
//    bit (same double operations in the same order), with torch 1.13's state_dict().
#pragma once

#include <sgckpt/ckpt/checked_int.hpp>
#include <sgckpt/engine/optim/param.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

namespace sgckpt::engine {

// ---------------------------------------------------------------------------- SuperGradients
struct SGLRConfig {
  enum class Mode { Step, Cosine, Poly };
  Mode mode = Mode::Step;
  double initial_lr = 0.1;
  int max_epochs = 1;
  // step
  std::vector<int> lr_updates;
  double lr_decay_factor = 0.1;
  // cosine
  double cosine_final_lr_ratio = 0.01;
  // warm-up (LinearEpochLRWarmup); warmup_initial_lr <= 0 means None: initial_lr / (W + 1)
  int lr_warmup_epochs = 0;
  double warmup_initial_lr = 0.0;
};

class SGLRSchedule {
 public:
  explicit SGLRSchedule(SGLRConfig c) : c_(std::move(c)) {
    w_init_ = c_.warmup_initial_lr > 0 ? c_.warmup_initial_lr : c_.initial_lr / (c_.lr_warmup_epochs + 1);
    w_step_ = c_.lr_warmup_epochs > 0 ? (c_.initial_lr - w_init_) / c_.lr_warmup_epochs : 0.0;
  }

  // What the mode's callback computes at context.epoch == epoch (batch_idx 0), no warm-up:
  //   step:   initial_lr * lr_decay_factor ** len([x for x in lr_updates if x <= epoch])
  //   cosine: 0.5 * initial_lr * (1 + cos(e / (E + 1) * pi)) * (1 - r) + initial_lr * r
  //   poly:   initial_lr * (1 - e / E) ** 0.9
  // with e = epoch - lr_warmup_epochs, E = max_epochs - lr_warmup_epochs.
  double scheduled_lr(int epoch) const {
    switch (c_.mode) {
      case SGLRConfig::Mode::Step: {
        int n = 0;
        for (int x : c_.lr_updates) n += x <= epoch ? 1 : 0;
        return c_.initial_lr * std::pow(c_.lr_decay_factor, static_cast<double>(n));
      }
      case SGLRConfig::Mode::Cosine: {
        const double e = std::max(0, epoch - c_.lr_warmup_epochs);
        const double E = c_.max_epochs - c_.lr_warmup_epochs;
        const double r = c_.cosine_final_lr_ratio;
        const double lr = 0.5 * c_.initial_lr * (1.0 + std::cos(e / (E + 1) * std::numbers::pi));
        return lr * (1 - r) + (c_.initial_lr * r);
      }
      case SGLRConfig::Mode::Poly: {
        const double e = epoch - c_.lr_warmup_epochs;
        const double E = c_.max_epochs - c_.lr_warmup_epochs;
        return c_.initial_lr * std::pow(1.0 - e / E, 0.9);
      }
    }
    return c_.initial_lr;
  }

  // The warm-up callback's lr at epoch start: warmup_initial_lr + epoch * step.
  double warmup_lr(int epoch) const { return w_init_ + epoch * w_step_; }
  bool in_warmup(int epoch) const { return c_.lr_warmup_epochs > 0 && epoch <= c_.lr_warmup_epochs; }

  // The lr the optimizer holds while training epoch `epoch` (0-based), following SG's callback
  // phases: warm-up at TRAIN_EPOCH_START for epoch <= W; cosine/poly at every batch for
  // W <= epoch < max_epochs (the last value stays after); step at TRAIN_EPOCH_END of epochs
  // >= W, so epoch e trains with scheduled_lr(e - 1).
  double lr_for_epoch(int epoch) const {
    if (c_.mode == SGLRConfig::Mode::Step) {
      if (in_warmup(epoch)) return warmup_lr(epoch);
      if (epoch - 1 >= c_.lr_warmup_epochs && epoch >= 1) return scheduled_lr(epoch - 1);
      return c_.initial_lr;
    }
    if (epoch >= c_.lr_warmup_epochs) return scheduled_lr(std::min(epoch, c_.max_epochs - 1));
    return in_warmup(epoch) ? warmup_lr(epoch) : c_.initial_lr;
  }

  void apply(Optimizer& opt, int epoch) const {
    const double lr = lr_for_epoch(epoch);
    for (auto& g : opt.param_groups()) g.set_lr(lr);
  }

  const SGLRConfig& config() const noexcept { return c_; }

 private:
  SGLRConfig c_;
  double w_init_ = 0, w_step_ = 0;
};

// ---------------------------------------------------------------------------- torch
// The largest epoch or step count a loaded scheduler accepts: torch's formulas turn it into a
// double, exact up to 2^53, and step() increments it (no overflow below this bound).
inline constexpr std::int64_t kMaxSchedulerCount = std::int64_t{1} << 53;

// torch.optim.lr_scheduler._LRScheduler (1.13). A derived constructor must call initial_step()
// last, as torch's __init__ does.
class TorchLRScheduler {
 public:
  explicit TorchLRScheduler(Optimizer& opt, std::int64_t last_epoch = -1)
      : opt_(&opt), last_epoch_(last_epoch) {
    for (std::size_t i = 0; i < opt.param_groups().size(); ++i) {
      auto& g = opt.param_groups()[i];
      if (last_epoch == -1) {
        if (!g.hp.contains("initial_lr")) {
          Value lr = g.hp.at("lr");  // copy first: inserting may move the dict's items
          g.hp["initial_lr"] = std::move(lr);
        }
      } else if (!g.hp.contains("initial_lr")) {
        throw Error("param 'initial_lr' is not specified in param_groups[" + std::to_string(i) +
                    "] when resuming an optimizer");
      }
      base_lrs_.push_back(g.hp.at("initial_lr"));
    }
  }
  virtual ~TorchLRScheduler() = default;

  void step() {
    ++step_count_;
    ++last_epoch_;
    const auto lrs = get_lr();
    auto& groups = opt_->param_groups();
    last_lr_.clear();
    for (std::size_t i = 0; i < groups.size(); ++i) {
      groups[i].set_lr(lrs[i]);
      last_lr_.push_back(lrs[i]);
    }
  }

  std::vector<double> get_last_lr() const { return last_lr_; }
  std::int64_t last_epoch() const noexcept { return last_epoch_; }

  // 1.13: class-specific entries, base_lrs, last_epoch, verbose, _step_count,
  // _get_lr_called_within_step, _last_lr.
  Value state_dict() const {
    Value d = Value::make_dict();
    specific_state(d);
    Value bl = Value::make_list();
    for (const auto& b : base_lrs_) bl.items().push_back(b);
    d["base_lrs"] = std::move(bl);
    d["last_epoch"] = static_cast<long long>(last_epoch_);
    d["verbose"] = verbose_;
    d["_step_count"] = static_cast<long long>(step_count_);
    d["_get_lr_called_within_step"] = false;
    Value ll = Value::make_list();
    for (double x : last_lr_) ll.items().emplace_back(x);
    d["_last_lr"] = std::move(ll);
    return d;
  }

  // __dict__.update(state_dict): every known key present is taken (2.x's _is_initial ignored;
  // a missing verbose, as 2.7+ writes, keeps ours).
  void load_state_dict(const Value& d) {
    load_specific(d);
    if (const Value* v = d.dict().find("base_lrs")) {
      base_lrs_.clear();
      for (const auto& x : v->items()) base_lrs_.push_back(x);
    }
    if (const Value* v = d.dict().find("last_epoch"))
      last_epoch_ = int_in_range<std::int64_t>(*v, "last_epoch", -1, kMaxSchedulerCount);
    if (const Value* v = d.dict().find("verbose"); v && v->is_bool()) verbose_ = v->as_bool();
    if (const Value* v = d.dict().find("_step_count"))
      step_count_ = int_in_range<std::int64_t>(*v, "_step_count", 0, kMaxSchedulerCount);
    if (const Value* v = d.dict().find("_last_lr")) {
      last_lr_.clear();
      for (const auto& x : v->items())
        last_lr_.push_back(x.is_tensor() ? x.tensor().element_as_double(0) : x.as_number());
    }
  }

 protected:
  void initial_step() {
    step_count_ = 0;
    step();
  }
  virtual std::vector<double> get_lr() const = 0;
  virtual void specific_state(Value& d) const = 0;
  virtual void load_specific(const Value& d) = 0;

  std::vector<double> group_lrs() const {
    std::vector<double> r;
    for (const auto& g : opt_->param_groups()) r.push_back(g.lr());
    return r;
  }
  double base_lr(std::size_t i) const { return base_lrs_.at(i).as_number(); }

  Optimizer* opt_;
  std::int64_t last_epoch_;
  std::vector<Value> base_lrs_;
  bool verbose_ = false;
  std::int64_t step_count_ = 0;
  std::vector<double> last_lr_;
};

class StepLR : public TorchLRScheduler {
 public:
  StepLR(Optimizer& opt, std::int64_t step_size, Value gamma = 0.1, std::int64_t last_epoch = -1)
      : TorchLRScheduler(opt, last_epoch), step_size_(step_size), gamma_(std::move(gamma)) {
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    auto lrs = group_lrs();
    if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
    for (auto& x : lrs) x = x * gamma_.as_number();
    return lrs;
  }
  void specific_state(Value& d) const override {
    d["step_size"] = static_cast<long long>(step_size_);
    d["gamma"] = gamma_;
  }
  void load_specific(const Value& d) override {
    // A divisor of last_epoch: 0 would divide by zero (torch raises ZeroDivisionError).
    if (const Value* v = d.dict().find("step_size"))
      step_size_ = int_in_range<std::int64_t>(*v, "step_size", 1, kMaxSchedulerCount);
    if (const Value* v = d.dict().find("gamma")) gamma_ = *v;
  }

 private:
  std::int64_t step_size_;
  Value gamma_;
};

class MultiStepLR : public TorchLRScheduler {
 public:
  MultiStepLR(Optimizer& opt, const std::vector<std::int64_t>& milestones, Value gamma = 0.1,
              std::int64_t last_epoch = -1)
      : TorchLRScheduler(opt, last_epoch),
        milestones_(Value::make_dict(DictKind::Counter)),
        gamma_(std::move(gamma)) {
    for (auto m : milestones) {  // Counter(milestones): first-appearance order, counts
      Value& c = milestones_.dict().get_or_insert(Key(m));
      c = c.is_none() ? Value(1) : Value(static_cast<long long>(c.as_int() + 1));
    }
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    auto lrs = group_lrs();
    const Value* c = milestones_.dict().find(Key(last_epoch_));
    if (!c) return lrs;
    for (auto& x : lrs) x = x * std::pow(gamma_.as_number(), static_cast<double>(c->as_int()));
    return lrs;
  }
  void specific_state(Value& d) const override {
    d["milestones"] = milestones_;
    d["gamma"] = gamma_;
  }
  void load_specific(const Value& d) override {
    if (const Value* v = d.dict().find("milestones")) {
      milestones_ = Value::make_dict(DictKind::Counter);
      // A count (how often an epoch was listed) is an exponent of gamma: 1 .. 2^31 - 1.
      constexpr std::int64_t kMaxCount = std::numeric_limits<std::int32_t>::max();
      if (v->is_dict()) {
        for (const auto& [k, n] : v->dict()) {
          const std::string where = "milestones/" + k.to_string();
          milestones_.dict().set(k, Value(Int(int_in_range<std::int64_t>(n, where, 1, kMaxCount))));
        }
      } else {  // a plain list of epochs (older / hand-written)
        std::size_t i = 0;
        for (const auto& m : v->items()) {
          const std::string where = "milestones/" + std::to_string(i++);
          Value& c = milestones_.dict().get_or_insert(Key(int_in_range<std::int64_t>(m, where)));
          c = c.is_none() ? Value(1) : Value(static_cast<long long>(c.as_int() + 1));
        }
      }
    }
    if (const Value* v = d.dict().find("gamma")) gamma_ = *v;
  }

 private:
  Value milestones_;
  Value gamma_;
};

class CosineAnnealingLR : public TorchLRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, std::int64_t T_max, Value eta_min = 0, std::int64_t last_epoch = -1)
      : TorchLRScheduler(opt, last_epoch), T_max_(T_max), eta_min_(std::move(eta_min)) {
    initial_step();
  }

 protected:
  std::vector<double> get_lr() const override {
    constexpr double pi = std::numbers::pi;
    const double eta = eta_min_.as_number();
    const double T = static_cast<double>(T_max_);
    const double le = static_cast<double>(last_epoch_);
    auto lrs = group_lrs();
    if (last_epoch_ == 0) return lrs;
    if (step_count_ == 1 && last_epoch_ > 0) {
      for (std::size_t i = 0; i < lrs.size(); ++i)
        lrs[i] = eta + (base_lr(i) - eta) * (1 + std::cos(le * pi / T)) / 2;
      return lrs;
    }
    if (py_mod(last_epoch_ - 1 - T_max_, 2 * T_max_) == 0) {
      for (std::size_t i = 0; i < lrs.size(); ++i)
        lrs[i] = lrs[i] + (base_lr(i) - eta) * (1 - std::cos(pi / T)) / 2;
      return lrs;
    }
    for (auto& x : lrs) x = (1 + std::cos(pi * le / T)) / (1 + std::cos(pi * (le - 1) / T)) * (x - eta) + eta;
    return lrs;
  }
  void specific_state(Value& d) const override {
    d["T_max"] = static_cast<long long>(T_max_);
    d["eta_min"] = eta_min_;
  }
  void load_specific(const Value& d) override {
    // A divisor (2 * T_max, pi / T_max): at least 1, and small enough that 2 * T_max and
    // last_epoch - 1 - T_max cannot overflow.
    if (const Value* v = d.dict().find("T_max"))
      T_max_ = int_in_range<std::int64_t>(*v, "T_max", 1, kMaxSchedulerCount);
    if (const Value* v = d.dict().find("eta_min")) eta_min_ = *v;
  }

 private:
  static std::int64_t py_mod(std::int64_t a, std::int64_t b) {
    const std::int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
  }
  std::int64_t T_max_;
  Value eta_min_;
};

}  // namespace sgckpt::engine
