// sgckpt/ckpt/best_metric.hpp: SuperGradients' best-checkpoint rule, as one object:
// which validation metric is watched (exact title, else SG's case- and symbol-blind match),
// whether an epoch strictly improves it (ties and NaN never do), the best value and metrics
// so far, restoring them from a checkpoint, and taking an improvement back when ckpt_best.pth
// could not be written (docs/supergradients.md §1).
#pragma once

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/checkpoint_schema.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/value.hpp"

namespace sgckpt {

namespace detail {

// SG matches metric_to_watch ignoring case and symbols ("accuracy" finds "Accuracy").
inline std::string normalize_metric_name(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c >= 'A' && c <= 'Z')
      out += static_cast<char>(c - 'A' + 'a');
    else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
      out += c;
  }
  return out;
}

// Shortest text that reads back as the same double (log lines).
inline std::string format_number(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

}  // namespace detail

class BestMetric {
 public:
  // The best value and the metrics of its epoch, as set_best() found them (for rollback()).
  struct Saved {
    double value = 0;
    Value metrics;
  };

  BestMetric(std::string metric_to_watch, bool greater_is_better)
      : watch_(std::move(metric_to_watch)), greater_(greater_is_better) {
    reset();
  }

  // No best yet: ±inf (SG's starting value), no metrics.
  void reset() {
    value_ = greater_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    metrics_ = Value();
  }

  double value() const noexcept { return value_; }
  const Value& metrics() const noexcept { return metrics_; }
  const std::string& metric_to_watch() const noexcept { return watch_; }

  // Strict improvement only: ties are not best, and NaN compares false either way.
  bool improves(double v) const { return greater_ ? v > value_ : v < value_; }

  // Makes `value` (with its epoch's metrics) the best; returns what it replaces.
  Saved set_best(double value, Value metrics) {
    Saved previous{value_, std::move(metrics_)};
    value_ = value;
    metrics_ = std::move(metrics);
    return previous;
  }
  void rollback(Saved s) {
    value_ = s.value;
    metrics_ = std::move(s.metrics);
  }

  // The watched metric's title among this epoch's valid metrics: exact, else the one title
  // equal ignoring case and symbols (SG's fuzzy match, with the same warning through `log`).
  // Resolved at the first epoch and kept.
  template <class Log>
  const std::string& resolve(const MetricList& valid, Log&& log) {
    if (!resolved_) resolved_ = find_title(valid, log);
    for (const auto& [n, v] : valid)
      if (n == *resolved_) return *resolved_;
    throw Error(ErrorKind::Mismatch,
                "the validation metrics of this epoch do not include the watched metric " + *resolved_);
  }

  // Whether a metric title recorded in a checkpoint is the one this run watches.
  bool same_metric(std::string_view a) const {
    if (resolved_ && a == *resolved_) return true;
    return detail::normalize_metric_name(a) == detail::normalize_metric_name(watch_);
  }

  // Restores the best value and metrics a checkpoint records (best_metric_name /
  // best_metric_value, or an SG file's _best_ckpt_metrics) into this tracker and `rs`; a
  // checkpoint that tracked another metric, or none, starts over (said through `warn`).
  template <class Warn>
  void restore(const Dict& d, const std::string& where, ResumeState& rs, Warn&& warn) {
    const Value* name = d.find("best_metric_name");
    const Value* value = d.find("best_metric_value");
    const Value* best = d.find("_best_ckpt_metrics");
    if (best && best->is_dict()) rs.best_metrics = *best;
    std::optional<double> restored;
    std::string restored_name;
    if (name && name->is_str() && value && value->is_number()) {
      if (same_metric(name->as_str())) {
        restored = number_in_range(*value, "best_metric_value");
        restored_name = name->as_str();
      } else {
        warn("Checkpoint " + where + " tracked " + name->as_str() + " but this run watches " + watch_ +
             "; the best metric starts over.");
        rs.best_metrics = Value();
      }
    } else if (best && best->is_dict() && best->contains("tracked_metric_name") &&
               best->at("tracked_metric_name").is_str()) {
      // An SG-written file: the value is in the best epoch's metrics (SG itself loses it).
      const std::string& tracked = best->at("tracked_metric_name").as_str();
      const Value* valid = best->dict().find("valid");
      if (same_metric(tracked) && valid && valid->is_dict() && valid->contains(tracked) &&
          valid->at(tracked).is_number()) {
        restored = number_in_range(valid->at(tracked), "_best_ckpt_metrics/valid/" + tracked);
        restored_name = tracked;
      } else {
        warn("Checkpoint " + where + " records no best value of " + watch_ +
             "; the best metric starts over.");
        rs.best_metrics = Value();
      }
    } else {
      warn("Checkpoint " + where + " records no best metric; the best metric starts over.");
    }
    if (restored) {
      value_ = *restored;
      metrics_ = rs.best_metrics;
      rs.best_metric = restored;
      rs.best_metric_name = restored_name;
    }
  }

 private:
  template <class Log>
  std::string find_title(const MetricList& valid, Log& log) const {
    for (const auto& [n, v] : valid)
      if (n == watch_) return n;
    const std::string want = detail::normalize_metric_name(watch_);
    std::vector<std::string> matches;
    for (const auto& [n, v] : valid)
      if (detail::normalize_metric_name(n) == want) matches.push_back(n);
    if (matches.size() > 1)
      throw Error("metric_to_watch=" + watch_ + " matches several validation metrics (" + matches[0] + ", " +
                  matches[1] + "): name it exactly");
    if (matches.empty()) {
      std::string names;
      for (const auto& [n, v] : valid) names += (names.empty() ? "" : ", ") + n;
      throw Error(ErrorKind::Mismatch, "No match found for metric_to_watch=" + watch_ +
                                           " among the validation metrics [" + names + "]");
    }
    log("metric_to_watch=" + watch_ + " is not an exact validation metric name; watching " + matches[0]);
    return matches[0];
  }

  std::string watch_;
  bool greater_;
  std::optional<std::string> resolved_;
  double value_ = 0;
  Value metrics_;
};

}  // namespace sgckpt
