// sgckpt/engine/optim/grad_scaler.hpp: dynamic loss scaling with torch.cuda.amp.GradScaler's
// semantics (scale kept as float32, like torch's _scale tensor):
//   scale() the loss by `scale`; unscale() multiplies every grad by float(1 / double(scale)) and
//   records whether any grad is inf/NaN; step(opt) runs opt.step() unless inf/NaN was found;
//   update(): inf/NaN -> scale *= backoff_factor, tracker = 0; else ++tracker and, on reaching
//   growth_interval, scale *= growth_factor (kept only if finite), tracker = 0.
#pragma once

#include <sgckpt/ckpt/checked_int.hpp>
#include <sgckpt/engine/optim/param.hpp>
#include <sgckpt/engine/optim_math.hpp>

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace sgckpt::engine {

struct GradBuffer {
  float* data = nullptr;
  std::size_t numel = 0;
};

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions o = {})
      : scale_(static_cast<float>(o.init_scale)),
        growth_factor_(o.growth_factor),
        backoff_factor_(o.backoff_factor),
        growth_interval_(o.growth_interval),
        enabled_(o.enabled) {
    if (growth_factor_ <= 1.0) throw Error("GradScaler: growth_factor should be > 1");
    if (backoff_factor_ >= 1.0) throw Error("GradScaler: backoff_factor should be < 1");
  }

  bool enabled() const noexcept { return enabled_; }
  float get_scale() const noexcept { return enabled_ ? scale_ : 1.0f; }
  std::int64_t growth_tracker() const noexcept { return tracker_; }
  bool found_inf() const noexcept { return found_inf_; }

  // The loss to backpropagate.
  float scale(float loss) const { return enabled_ ? loss * scale_ : loss; }
  double scale(double loss) const { return enabled_ ? loss * static_cast<double>(scale_) : loss; }

  // Unscales the gradients in place (once per step; a second call before update() is refused,
  // as torch's "unscale_() has already been called on this optimizer since the last update()").
  void unscale(std::span<const GradBuffer> grads) {
    if (!enabled_) return;
    if (unscaled_) throw Error("GradScaler: unscale() has already been called since the last update()");
    const float inv = static_cast<float>(1.0 / static_cast<double>(scale_));
    bool inf = false;
    for (const auto& g : grads)
      for (std::size_t k = 0; k < g.numel; ++k) inf |= optim_math::unscale_grad(g.data[k], inv);
    found_inf_ = inf;
    unscaled_ = true;
  }
  // The same on ParamRefs: their `grad` buffers must be writable (the engine's are).
  void unscale(const std::vector<ParamRef>& params) {
    if (enabled_) require_host_params(params, "GradScaler");
    std::vector<GradBuffer> g;
    for (const auto& p : params)
      if (p.grad) g.push_back({const_cast<float*>(p.grad), p.numel});
    unscale(g);
  }

  // Unscales (if not done yet) and steps unless inf/NaN was found; returns whether it stepped.
  bool step(Optimizer& opt) {
    if (!enabled_) {
      opt.step();
      return true;
    }
    if (!unscaled_) unscale(opt.params());
    if (found_inf_) return false;
    opt.step();
    return true;
  }

  void update() {
    if (!enabled_) return;
    optim_math::scaler_update(scale_, tracker_, found_inf_, static_cast<float>(growth_factor_),
                              static_cast<float>(backoff_factor_), growth_interval_);
    found_inf_ = false;
    unscaled_ = false;
  }

  // {'scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker'}, or {}
  // when disabled.
  Value state_dict() const {
    Value d = Value::make_dict();
    if (!enabled_) return d;
    d["scale"] = static_cast<double>(scale_);
    d["growth_factor"] = growth_factor_;
    d["backoff_factor"] = backoff_factor_;
    d["growth_interval"] = static_cast<long long>(growth_interval_);
    d["_growth_tracker"] = static_cast<long long>(tracker_);
    return d;
  }

  void load_state_dict(const Value& d) {
    if (!enabled_) return;
    if (!d.is_dict() || d.size() == 0)
      throw Error(
          "GradScaler: the source state dict is empty, possibly because it was saved from a disabled "
          "instance");
    // Every number is checked before any is taken (a refused file leaves the scaler as it
    // was), with the constructor's rules plus what the arithmetic needs: the scale is a
    // positive float32 (1 / scale unscales), the tracker counts clean steps towards the
    // interval (torch keeps it in an int32 tensor, and ++ on INT64_MAX would overflow).
    constexpr double kFloatMax = std::numeric_limits<float>::max();
    constexpr double kTiny = std::numeric_limits<float>::denorm_min();
    const float scale = static_cast<float>(number_in_range(d.at("scale"), "scale", kTiny, kFloatMax));
    double growth = growth_factor_, backoff = backoff_factor_;
    std::int64_t interval = growth_interval_, tracker = tracker_;
    if (const Value* v = d.dict().find("growth_factor"))
      growth = number_in_range(*v, "growth_factor", std::nextafter(1.0, 2.0), kFloatMax);
    if (const Value* v = d.dict().find("backoff_factor"))
      backoff = number_in_range(*v, "backoff_factor", kTiny, std::nextafter(1.0, 0.0));
    if (const Value* v = d.dict().find("growth_interval"))
      interval =
          int_in_range<std::int64_t>(*v, "growth_interval", 1, std::numeric_limits<std::int32_t>::max());
    if (const Value* v = d.dict().find("_growth_tracker"))
      tracker = int_in_range<std::int64_t>(*v, "_growth_tracker", 0, interval - 1);
    scale_ = scale;
    growth_factor_ = growth;
    backoff_factor_ = backoff;
    growth_interval_ = interval;
    tracker_ = tracker;
  }

 private:
  float scale_;
  double growth_factor_, backoff_factor_;
  std::int64_t growth_interval_;
  bool enabled_;
  std::int64_t tracker_ = 0;
  bool found_inf_ = false;
  bool unscaled_ = false;
};

}  // namespace sgckpt::engine
