// sgckpt/ckpt/checkpoint_schema.hpp: what a SuperGradients checkpoint holds, as pure functions
// between the training state and the checkpoint dict (no files, no threads): testable alone.
//
// The keys, in SG's order (docs/supergradients.md §1): net, acc, epoch, metrics,
// _best_ckpt_metrics, optimizer_state_dict, scaler_state_dict, ema_net,
// torch_scheduler_state_dict; then sgckpt's: best_metric_name, best_metric_value,
// architecture, num_classes, in_channels, sgckpt_schema_version; then the loop's extra
// entries (rng_state, data_order, ...). SG's `packages` dict is not written: it is large and
// nothing reads it (issue #2038).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/value.hpp"

namespace sgckpt {

inline constexpr std::int64_t kCheckpointSchemaVersion = 1;

// Metric title -> value, in the order the loop reports them (kept in the file, like a
// Python dict).
using MetricList = std::vector<std::pair<std::string, double>>;

struct Metrics {
  MetricList valid;  // validation metrics; must contain the watched metric
  MetricList train;  // optional train metrics; written under metrics/train when non-empty
};

// What the loop hands over at the end of an epoch: state dicts as sgckpt values.
struct TrainingState {
  Value net;                          // the raw model's state_dict (not the EMA)
  Value optimizer;                    // optimizer.state_dict()
  Value scaler = Value::make_dict();  // GradScaler.state_dict(); {} when mixed precision is off
  std::optional<Value> ema;           // the EMA model's state_dict, when EMA is on
  std::optional<Value> scheduler;     // a stateful (torch-like) LR scheduler's state_dict
  std::vector<std::pair<std::string, Value>> extra;  // more top-level entries: rng_state, data_order, ...
};

// What a checkpoint says about the model it holds (issue #1303): stored in every file and
// checked on resume when both sides know them (empty / negative: unknown).
struct ModelIdentity {
  std::string architecture{};
  std::int64_t num_classes = -1;
  std::int64_t in_channels = -1;
};

// What one epoch records besides the training state.
struct EpochRecord {
  std::int64_t epoch = 0;  // finished epochs
  double acc = 0;          // the watched metric this epoch
  Value metrics{};         // epoch_metrics()
  Value best_metrics{};    // the best epoch's metrics, this one included when it is the best
  std::string best_metric_name{};
  double best_metric_value = 0;
};

// What restore() read back: everything the loop needs to continue.
struct ResumeState {
  bool resumed = false;  // false for a Fresh plan
  std::optional<std::filesystem::path> checkpoint;
  std::int64_t start_epoch = 0;  // = the checkpoint's epoch (finished epochs)
  std::string best_metric_name;
  std::optional<double> best_metric;  // nullopt: the file records no usable best
  Value best_metrics;                 // _best_ckpt_metrics (None when absent)
  Value net;
  Value optimizer;
  Value scaler = Value::make_dict();
  std::optional<Value> ema;
  std::optional<Value> scheduler;
  bool ema_missing = false;  // EMA is on but the file has no ema_net: continue without EMA (SG)
  std::vector<std::pair<std::string, Value>> extra;  // every entry the manager does not own
  std::vector<std::string> warnings;                 // also sent to the log hook
};

// Keys the schema writes (and SG's `packages`): extra entries may not use them, and
// restore() does not report them as extra.
inline bool is_reserved_checkpoint_key(std::string_view k) {
  static constexpr std::string_view kKeys[] = {"net",
                                               "acc",
                                               "epoch",
                                               "metrics",
                                               "packages",
                                               "_best_ckpt_metrics",
                                               "optimizer_state_dict",
                                               "scaler_state_dict",
                                               "ema_net",
                                               "torch_scheduler_state_dict",
                                               "best_metric_name",
                                               "best_metric_value",
                                               "architecture",
                                               "num_classes",
                                               "in_channels",
                                               "sgckpt_schema_version"};
  for (auto key : kKeys)
    if (k == key) return true;
  return false;
}

// {tracked_metric_name, valid: {...}, train: {...} (when given)}: SG's `metrics` entry.
inline Value epoch_metrics(const std::string& tracked, const Metrics& m) {
  auto dict = [](const MetricList& list) {
    Value d = Value::make_dict();
    for (const auto& [name, value] : list) d[name] = value;
    return d;
  };
  Value v = Value::make_dict();
  v["tracked_metric_name"] = tracked;
  v["valid"] = dict(m.valid);
  if (!m.train.empty()) v["train"] = dict(m.train);
  return v;
}

// The checkpoint dict of one epoch (the state is moved in).
inline Value make_checkpoint(TrainingState state, const EpochRecord& r, const ModelIdentity& id) {
  Value ck = Value::make_dict();
  ck["net"] = std::move(state.net);
  ck["acc"] = r.acc;
  ck["epoch"] = Value(Int(r.epoch));
  ck["metrics"] = r.metrics;
  ck["_best_ckpt_metrics"] = r.best_metrics;
  ck["optimizer_state_dict"] = std::move(state.optimizer);
  ck["scaler_state_dict"] = state.scaler.is_none() ? Value::make_dict() : std::move(state.scaler);
  if (state.ema) ck["ema_net"] = std::move(*state.ema);
  if (state.scheduler) ck["torch_scheduler_state_dict"] = std::move(*state.scheduler);
  ck["best_metric_name"] = r.best_metric_name;
  ck["best_metric_value"] = r.best_metric_value;
  ck["architecture"] = id.architecture;
  ck["num_classes"] = Value(Int(id.num_classes));
  ck["in_channels"] = Value(Int(id.in_channels));
  ck["sgckpt_schema_version"] = Value(Int(kCheckpointSchemaVersion));
  for (auto& [key, v] : state.extra) ck[key] = std::move(v);
  return ck;
}

// SG's average_model.pth from an epoch's checkpoint: the same dict with net replaced by the
// average and the training state removed (PR #1718).
inline void make_average_checkpoint(Value& ck, Value average) {
  Dict& d = ck.dict();
  d.set("net", std::move(average));
  d.erase("optimizer_state_dict");
  d.erase("scaler_state_dict");
  d.erase("ema_net");
}

// Refuses a checkpoint written for another model configuration (issue #1303): the mismatch
// would otherwise surface later as missing keys or size mismatches.
inline void check_identity(const Dict& d, const std::string& file, const ModelIdentity& id) {
  auto mismatch = [&](const std::string& key, const std::string& in_file, const std::string& configured) {
    ErrorContext c;
    c.file = file;
    return Error(ErrorKind::Mismatch,
                 "checkpoint \"" + file + "\" was written with " + key + "=" + in_file +
                     ", but this run is configured with " + key + "=" + configured,
                 c);
  };
  if (const Value* a = d.find("architecture");
      a && a->is_str() && !a->as_str().empty() && !id.architecture.empty() && a->as_str() != id.architecture)
    throw mismatch("architecture", a->as_str(), id.architecture);
  auto check_int = [&](const char* key, std::int64_t configured) {
    const Value* v = d.find(key);
    if (!v || !v->is_int()) return;
    const auto in_file = checked_in_file(file, [&] { return int_in_range<std::int64_t>(*v, key); });
    if (in_file >= 0 && configured >= 0 && in_file != configured)
      throw mismatch(key, std::to_string(in_file), std::to_string(configured));
  };
  check_int("num_classes", id.num_classes);
  check_int("in_channels", id.in_channels);
}

// What the loop resumes with, and what it requires.
struct ResumeNeeds {
  bool scheduler = false;  // a stateful scheduler: its state is required
  bool ema = false;        // EMA is on: a file without ema_net is reported
};

// Moves the training state out of a loaded checkpoint into `rs`: net, epoch and
// optimizer_state_dict are required (an Error naming the key and the file), the rest
// optional (the scaler and, with EMA on, ema_net reported through `warn` when absent).
template <class Warn>
void take_training_state(Dict& d, const std::string& file, const ResumeNeeds& needs, ResumeState& rs,
                         Warn&& warn) {
  const std::string where = "\"" + file + "\"";
  auto missing = [&](const std::string& key, const std::string& why) {
    ErrorContext c;
    c.file = file;
    c.key_path = key;
    return Error(ErrorKind::Schema, "checkpoint " + where + " has no '" + key + "' entry, which " + why, c);
  };
  auto take = [&](const char* key) -> std::optional<Value> {
    Value* v = d.find(key);
    if (v == nullptr) return std::nullopt;
    return std::move(*v);
  };
  auto net = take("net");
  if (!net) throw missing("net", "holds the model weights");
  rs.net = std::move(*net);
  const Value* epoch = d.find("epoch");
  if (epoch == nullptr) throw missing("epoch", "gives the epoch to continue from");
  rs.start_epoch = checked_in_file(file, [&] { return int_in_range<std::int64_t>(*epoch, "epoch", 0); });
  auto optimizer = take("optimizer_state_dict");
  if (!optimizer) throw missing("optimizer_state_dict", "resuming the optimizer needs");
  rs.optimizer = std::move(*optimizer);
  if (auto scaler = take("scaler_state_dict"))
    rs.scaler = std::move(*scaler);
  else
    warn("Checkpoint " + where + " has no scaler_state_dict; the GradScaler starts from its defaults.");
  rs.scheduler = take("torch_scheduler_state_dict");
  if (needs.scheduler && !rs.scheduler)
    throw missing("torch_scheduler_state_dict", "resuming the LR scheduler needs");
  rs.ema = take("ema_net");
  if (needs.ema && !rs.ema) {
    rs.ema_missing = true;
    warn("Checkpoint does not include EMA weights, continuing training without EMA.");
  }
}

// Every entry the schema does not own, for the loop (rng_state, data_order, ...).
inline std::vector<std::pair<std::string, Value>> extra_entries(const Dict& d) {
  std::vector<std::pair<std::string, Value>> out;
  for (const auto& [key, value] : d)
    if (!key.is_str() || !is_reserved_checkpoint_key(key.str())) out.emplace_back(key.to_string(), value);
  return out;
}

}  // namespace sgckpt
