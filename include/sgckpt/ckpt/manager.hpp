// sgckpt/ckpt/manager.hpp: SuperGradients' checkpoint lifecycle for any training loop.
//
// A training loop (any engine: the library never includes one) calls
// CheckpointManager::on_epoch_end() after each validated epoch. The manager writes, into the
// run directory (run_dir.hpp), in SG's order (docs/supergradients.md §1):
//
//   ckpt_latest.pth      every call
//   ckpt_epoch_{N}.pth   when N (= finished epochs) is in save_ckpt_epoch_list
//   ckpt_best.pth        when the watched metric STRICTLY improved (ties and NaN never do)
//   average_model.pth    when average_best_models: the top-N average of the EMA net (or the
//                        net), without optimizer / scaler / EMA (like SG since PR #1718)
//
// with SG's keys (docs/supergradients.md §1): net, acc, epoch, metrics, _best_ckpt_metrics,
// optimizer_state_dict, scaler_state_dict, ema_net, torch_scheduler_state_dict; plus ours:
// best_metric_name, best_metric_value, architecture, num_classes, in_channels,
// sgckpt_schema_version, and the caller's extra entries (rng_state, data_order, ...). SG's
// `packages` dict is not written: it is large and nothing reads it (issue #2038).
//
// Deviations from SG, each fixing a reported problem (docs/supergradients.md):
//   - every file is written atomically and (by default) durably through sgckpt::save;
//   - the best value and its metric name are stored explicitly and restored on resume (SG
//     restores +inf, so ckpt_best.pth was never updated again after a resume);
//   - `_best_ckpt_metrics` is updated before the state is built (SG PR #2007);
//   - architecture, class count and input channels are stored, and a resume into a
//     different configuration is refused;
//   - missing required entries are an Error naming the key and the file, not a KeyError;
//   - when no snapshot could be averaged yet (every metric NaN), average_model.pth is not
//     written (SG writes net=None, which fails to load at the end of training);
//   - the averaging snapshots are kept at the end of training unless asked otherwise, so a
//     finished run can be extended without losing them (SG deletes them, docs/supergradients.md §4).
//
// Background saving (async_save): on_epoch_end() snapshots the state first (a copy of every
// storage the loop still holds, keeping shared storages shared: the loop mutates its tensors
// right after; a state_dict() snapshot handed over by move is not copied again), then one
// worker thread writes the files. The next on_epoch_end(), flush(), finish() or the
// destructor waits for that write; an error from it is rethrown by the next on_epoch_end(),
// flush() or finish(), never lost (the destructor, which cannot throw, reports it through
// the log hook). Only one write is ever in flight, so memory holds at most one extra copy of
// the state.
//
// The library never prints: log lines go to the `log` hook of the config, always from the
// thread that calls the manager (lines produced by the worker are handed over at the next
// wait). The manager is not thread-safe: one thread (the training loop) drives it.
#pragma once

#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/io/file.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt {

inline constexpr std::int64_t kCheckpointSchemaVersion = 1;
inline constexpr std::string_view kAverageModelName = "average_model.pth";

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

struct CheckpointConfig {
  std::filesystem::path ckpt_root_dir;
  std::string experiment_name;
  std::string metric_to_watch = "Accuracy";  // a valid-metric title (matched ignoring case and symbols)
  bool greater_metric_to_watch_is_better = true;
  std::vector<std::int64_t> save_ckpt_epoch_list;  // finished-epoch counts N -> ckpt_epoch_{N}.pth
  bool average_best_models = true;                 // SG's default, although its docstring says False
  std::size_t n_models_to_average = 10;
  std::string ckpt_best_name = "ckpt_best.pth";
  bool async_save = true;  // write in a background thread (false: on_epoch_end writes before returning)
  bool durable = true;     // fsync files and directories (sgckpt::SaveOptions::durable)
  // Stored in every checkpoint so that a file says what it holds (issue #1303), and checked
  // on resume when both sides know them (empty / negative: unknown).
  std::string architecture;
  std::int64_t num_classes = -1;
  std::int64_t in_channels = -1;
  // What the loop uses, for restore(): EMA on (a checkpoint without ema_net is then reported)
  // and a stateful scheduler (a checkpoint without its state is then an Error).
  bool ema = false;
  bool scheduler = false;
  std::function<void(std::string_view)> log;  // receives every log line; nothing is printed
};

// What on_epoch_end decided.
struct EpochResult {
  double metric = std::numeric_limits<double>::quiet_NaN();  // the watched metric this epoch
  bool best = false;                                         // strict improvement: ckpt_best written
  // The files of this epoch in write order (with async_save they are being written in the
  // background). average_model.pth is listed when averaging is on; it is skipped while no
  // finite metric was ever seen.
  std::vector<std::filesystem::path> files;
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

namespace detail {

// Keys the manager writes (and SG's `packages`): extra entries may not use them, and
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

// Makes `ck` safe to write in the background while the caller goes on training: every
// storage that something outside `ck` may still change is replaced by a copy (tensors that
// shared it share the copy, with the same offsets and strides, so the file is the one the
// original would have given). Kept as they are, without a copy: storages only `ck` holds (a
// state_dict() snapshot the caller handed over) and read-only views of a mapped file.
// Borrowed memory (an engine's live buffers) is always copied. Returns the bytes copied.
inline std::uint64_t snapshot_tensors(Value& ck) {
  std::unordered_map<const Storage*, long> held_by_ck;
  ck.visit_tensors([&](const std::string&, const auto& tv) {
    if (tv.tensor.defined()) ++held_by_ck[tv.tensor.storage().get()];
  });
  std::unordered_map<const Storage*, std::shared_ptr<Storage>> copies;
  std::uint64_t copied = 0;
  ck.visit_tensors([&](const std::string&, const auto& tv) {
    const std::shared_ptr<Storage>& s = tv.tensor.storage();
    if (!s || copies.count(s.get()) ||
        (!s->borrowed() && (s->read_only() || s.use_count() <= held_by_ck[s.get()])))
      return;
    copies.emplace(s.get(), Storage::copy_of(s->bytes()));
    copied += s->nbytes();
  });
  if (copies.empty()) return 0;
  ck = map_tensors<Tensor>(ck, [&](const Tensor& t) -> Tensor {
    const auto it = t.defined() ? copies.find(t.storage().get()) : copies.end();
    return it == copies.end()
               ? t
               : Tensor::view_of(it->second, t.dtype(), t.storage_offset(), t.shape(), t.strides());
  });
  return copied;
}

// Shortest text that reads back as the same double (log lines).
inline std::string format_number(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

inline Value metric_dict(const MetricList& list) {
  Value d = Value::make_dict();
  for (const auto& [name, value] : list) d[name] = value;
  return d;
}

// One worker thread running one job at a time.
class SaveWorker {
 public:
  SaveWorker() = default;
  SaveWorker(const SaveWorker&) = delete;
  SaveWorker& operator=(const SaveWorker&) = delete;
  ~SaveWorker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();  // a pending job still runs to completion first
  }

  // Starts `job`; the caller has waited for the previous one.
  void submit(std::function<void()> job) {
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
      busy_ = true;
    }
    wake_.notify_all();
  }

  // Waits until no job runs; returns the exception of the job that just ended (or null).
  std::exception_ptr wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return !busy_; });
    return std::exchange(error_, nullptr);
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stop_ || job_; });
      if (job_) {
        std::function<void()> job = std::move(job_);
        job_ = nullptr;
        lock.unlock();
        std::exception_ptr error;
        try {
          job();
        } catch (...) {
          error = std::current_exception();
        }
        lock.lock();
        error_ = error;
        busy_ = false;
        done_.notify_all();
        continue;
      }
      if (stop_) return;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::function<void()> job_;
  std::exception_ptr error_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace detail

class CheckpointManager {
 public:
  explicit CheckpointManager(CheckpointConfig config) : config_(std::move(config)) {
    (void)experiment_dir(config_.ckpt_root_dir, config_.experiment_name);  // validates both
    if (config_.average_best_models && config_.n_models_to_average == 0)
      throw Error("n_models_to_average must be at least 1 when average_best_models is on");
    reset_best();
  }

  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // Waits for the last background write. Its error, if any, can no longer be thrown: it goes
  // to the log hook. Call flush() or finish() first to handle it.
  ~CheckpointManager() {
    try {
      wait_pending(/*rethrow=*/false);
    } catch (...) {  // a throwing log hook; nothing more can be done in a destructor
    }
  }

  // ---- Starting a run -------------------------------------------------------------------------

  // Starts the run the plan describes: creates the new run directory (Fresh, ResumePath) or
  // continues the existing one (Resume, RunId: stale temporaries of a crashed writer are
  // removed, averaging snapshots are reloaded). With a recipe text, stores it verbatim as
  // <run_dir>/recipe.yaml (atomically), the record resume_experiment() reads back; a run
  // continued in place keeps the recipe it was started with (like SG's frozen .hydra copy).
  // Returns the run directory.
  const std::filesystem::path& start_run(const ResumePlan& plan,
                                         std::optional<std::string_view> recipe_text = std::nullopt) {
    if (started_)
      throw Error("start_run() called twice on one CheckpointManager (run \"" + run_dir_.string() + "\")");
    if (plan.new_run_dir) {
      run_dir_ = create_run_dir(plan.run_dir, config_.durable);
      if (run_dir_ != plan.run_dir)
        log("The proposed run directory \"" + plan.run_dir.string() + "\" was taken meanwhile; using \"" +
            run_dir_.string() + "\"");
    } else {
      if (!detail::is_directory(plan.run_dir))
        throw detail::path_error(ErrorKind::Usage,
                                 "cannot continue the run: its directory does not exist (any more)",
                                 plan.run_dir);
      // Checked again here, where files are written and deleted: the plan may be older than a
      // link swapped in since, or made by hand. Its root is <root>/<experiment>/<run>'s.
      detail::require_inside_root(plan.run_dir, plan.run_dir.parent_path().parent_path(), "run directory");
      run_dir_ = plan.run_dir;
      if (const std::size_t n = remove_stale_temporaries_in(run_dir_))
        log("Removed " + std::to_string(n) + " stale temporary file(s) left by an interrupted save in \"" +
            run_dir_.string() + "\"");
    }
    for (const auto& w : plan.warnings) log(w);
    log(plan.log_line());
    if (recipe_text) store_recipe(*recipe_text, plan.new_run_dir);
    if (config_.average_best_models)
      averaging_.emplace(run_dir_, config_.greater_metric_to_watch_is_better, config_.n_models_to_average,
                         config_.durable);
    started_ = true;
    return run_dir_;
  }

  // A fresh run with its recipe.
  const std::filesystem::path& start_run(std::string_view recipe_text) {
    return start_run(resolve_resume(config_.ckpt_root_dir, config_.experiment_name, {}), recipe_text);
  }

  // A fresh run without a recipe.
  const std::filesystem::path& start_run() {
    return start_run(resolve_resume(config_.ckpt_root_dir, config_.experiment_name, {}));
  }

  // ---- Resuming -------------------------------------------------------------------------------

  // Loads the plan's checkpoint and returns what the loop needs to continue; also sets the
  // manager's best metric, so that "best" keeps its meaning across the resume. A Fresh plan
  // returns resumed=false, start epoch 0. Missing required entries (net, epoch,
  // optimizer_state_dict; torch_scheduler_state_dict when config.scheduler) are an Error
  // naming the key and the file. The file is mapped by default (load_options.mmap): the
  // returned tensors are read-only views of it, which the loop copies once into its own
  // buffers (an engine's load_state_dict, clone_state for an EMA it updates in place).
  ResumeState restore(const ResumePlan& plan, const LoadOptions& load_options = LoadOptions{.mmap = true}) {
    wait_pending(/*rethrow=*/true);  // the file may be one this manager is still writing
    ResumeState rs;
    reset_best();
    rs.best_metric_name = config_.metric_to_watch;
    if (!plan.checkpoint) return rs;
    const std::filesystem::path file = *plan.checkpoint;
    const std::string where = "\"" + file.string() + "\"";
    Value ck = load(file, load_options);
    auto missing = [&](const std::string& key, const std::string& why) {
      ErrorContext c;
      c.file = file.string();
      c.key_path = key;
      return Error(ErrorKind::Schema, "checkpoint " + where + " has no '" + key + "' entry, which " + why, c);
    };
    if (!ck.is_dict())
      throw detail::path_error(ErrorKind::Schema,
                               "checkpoint " + where + " is not a dict of entries (found a " +
                                   kind_name(ck.kind()) + "), so it cannot be resumed",
                               file);
    Dict& d = ck.dict();
    auto take = [&](const char* key) -> std::optional<Value> {
      Value* v = d.find(key);
      if (v == nullptr) return std::nullopt;
      return std::move(*v);
    };
    auto warn = [&](std::string text) {
      log(text);
      rs.warnings.push_back(std::move(text));
    };

    check_identity(d, file);
    rs.resumed = true;
    rs.checkpoint = file;
    auto net = take("net");
    if (!net) throw missing("net", "holds the model weights");
    rs.net = std::move(*net);
    const Value* epoch = d.find("epoch");
    if (epoch == nullptr) throw missing("epoch", "gives the epoch to continue from");
    rs.start_epoch =
        checked_in_file(file.string(), [&] { return int_in_range<std::int64_t>(*epoch, "epoch", 0); });
    auto optimizer = take("optimizer_state_dict");
    if (!optimizer) throw missing("optimizer_state_dict", "resuming the optimizer needs");
    rs.optimizer = std::move(*optimizer);
    if (auto scaler = take("scaler_state_dict"))
      rs.scaler = std::move(*scaler);
    else
      warn("Checkpoint " + where + " has no scaler_state_dict; the GradScaler starts from its defaults.");
    rs.scheduler = take("torch_scheduler_state_dict");
    if (config_.scheduler && !rs.scheduler)
      throw missing("torch_scheduler_state_dict", "resuming the LR scheduler needs");
    rs.ema = take("ema_net");
    if (config_.ema && !rs.ema) {
      rs.ema_missing = true;
      warn("Checkpoint does not include EMA weights, continuing training without EMA.");
    }
    checked_in_file(file.string(), [&] { restore_best(d, where, rs, warn); });
    if (!plan.new_run_dir) reconcile_with_best_file(plan.run_dir, file, load_options, rs, warn);
    for (auto& [key, value] : d)
      if (!key.is_str() || !detail::is_reserved_checkpoint_key(key.str()))
        rs.extra.emplace_back(key.to_string(), value);
    std::string line = "Resumed from " + where + ": starting at epoch " + std::to_string(rs.start_epoch) +
                       ", best " + rs.best_metric_name + " = ";
    line += rs.best_metric ? detail::format_number(*rs.best_metric) : std::string("none");
    log(line);
    return rs;
  }

  // ---- Each validated epoch -------------------------------------------------------------------

  // `epoch` counts finished epochs (SG's e+1, also the next start epoch). Writes (or, with
  // async_save, starts writing) the files of this epoch; first rethrows the error of the
  // previous background write, if any (nothing of this epoch is done then).
  EpochResult on_epoch_end(std::int64_t epoch, const Metrics& metrics, TrainingState state) {
    wait_pending(/*rethrow=*/true);
    if (!started_) throw Error("on_epoch_end() before start_run(): the manager has no run directory yet");
    if (epoch < 0) throw Error("on_epoch_end(): negative epoch " + std::to_string(epoch));
    for (const auto& [key, value] : state.extra)
      if (detail::is_reserved_checkpoint_key(key))
        throw Error("extra checkpoint entry '" + key + "' collides with an entry the manager writes");
    if (state.net.is_none()) throw Error("on_epoch_end(): the state has no net");

    const std::string& name = resolve_metric(metrics.valid);
    EpochResult result;
    for (const auto& [n, v] : metrics.valid)
      if (n == name) result.metric = v;
    const double value = result.metric;
    // Strict improvement only: ties are not best, and NaN compares false either way.
    result.best = config_.greater_metric_to_watch_is_better ? value > best_value_ : value < best_value_;

    Value metrics_value = Value::make_dict();
    metrics_value["tracked_metric_name"] = name;
    metrics_value["valid"] = detail::metric_dict(metrics.valid);
    if (!metrics.train.empty()) metrics_value["train"] = detail::metric_dict(metrics.train);

    Pending pending;
    pending.epoch = epoch;
    pending.previous_best_value = best_value_;
    pending.previous_best_metrics = best_metrics_;
    if (result.best) {
      // Before the state is built, so that ckpt_best.pth records itself as the best (SG #2007).
      best_value_ = value;
      best_metrics_ = metrics_value;
      log("Best checkpoint overridden: validation " + name + ": " + detail::format_number(value));
    }

    // Build the checkpoint dict in SG's key order, then ours.
    const bool snapshot = config_.async_save;
    Value ck = Value::make_dict();
    ck["net"] = std::move(state.net);
    ck["acc"] = value;
    ck["epoch"] = Value(Int(epoch));
    ck["metrics"] = metrics_value;
    ck["_best_ckpt_metrics"] = best_metrics_;
    ck["optimizer_state_dict"] = std::move(state.optimizer);
    ck["scaler_state_dict"] = state.scaler.is_none() ? Value::make_dict() : std::move(state.scaler);
    if (state.ema) ck["ema_net"] = std::move(*state.ema);
    if (state.scheduler) ck["torch_scheduler_state_dict"] = std::move(*state.scheduler);
    ck["best_metric_name"] = name;
    ck["best_metric_value"] = best_value_;
    ck["architecture"] = config_.architecture;
    ck["num_classes"] = Value(Int(config_.num_classes));
    ck["in_channels"] = Value(Int(config_.in_channels));
    ck["sgckpt_schema_version"] = Value(Int(kCheckpointSchemaVersion));
    for (auto& [key, v] : state.extra) ck[key] = std::move(v);

    auto job = std::make_shared<Job>();
    job->dir = run_dir_;
    job->epoch = epoch;
    job->metric = value;
    job->options.durable = config_.durable;
    job->files.push_back(run_dir_ / std::string(kLatestCheckpointName));
    for (auto n : config_.save_ckpt_epoch_list)
      if (n == epoch) {
        job->files.push_back(run_dir_ / ("ckpt_epoch_" + std::to_string(epoch) + ".pth"));
        break;
      }
    if (result.best) {
      job->best_index = job->files.size();
      job->files.push_back(run_dir_ / config_.ckpt_best_name);
    }
    if (averaging_) {
      job->averaging = &*averaging_;
      // SG averages the EMA model when EMA is on (docs/supergradients.md §4). ModelAveraging::update
      // deep-copies what it keeps, so the loop's live tensors may be handed to it in sync mode.
      job->use_ema = ck.contains("ema_net");
    }
    // The loop mutates its tensors right after this returns: what it still holds is copied.
    if (snapshot) detail::snapshot_tensors(ck);
    job->checkpoint = std::move(ck);
    result.files = job->files;
    if (averaging_) result.files.push_back(run_dir_ / std::string(kAverageModelName));

    pending.job = job;
    pending.includes_best = result.best;
    if (snapshot) {
      pending_ = std::move(pending);
      worker_.submit([job] { run_job(*job); });
    } else {
      pending_ = std::move(pending);
      try {
        run_job(*job);
      } catch (...) {
        settle(std::current_exception(), /*rethrow=*/true);
      }
      settle(nullptr, true);
    }
    return result;
  }

  // Waits for the background write and rethrows its error.
  void flush() { wait_pending(/*rethrow=*/true); }

  // End of training: flush(); with remove_averaging_snapshots, deletes
  // averaging_snapshots.pkl as SG does (by default it is kept, so that the run can be
  // extended later without restarting the averaging).
  void finish(bool remove_averaging_snapshots = false) {
    flush();
    if (remove_averaging_snapshots && averaging_) averaging_->remove_snapshot_file();
  }

  // ---- State ----------------------------------------------------------------------------------

  bool started() const noexcept { return started_; }
  const std::filesystem::path& run_dir() const noexcept { return run_dir_; }
  const CheckpointConfig& config() const noexcept { return config_; }
  // The best watched-metric value so far (±inf before any best: SG's starting value).
  double best_metric_value() const noexcept { return best_value_; }
  // The metrics dict of the best epoch (None before any best).
  const Value& best_metrics() const noexcept { return best_metrics_; }
  // The averaging, once started (nullptr when off). With async_save, flush() first: the
  // worker updates it.
  ModelAveraging* averaging() noexcept { return averaging_ ? &*averaging_ : nullptr; }

 private:
  struct Job {
    Value checkpoint;
    std::filesystem::path dir;
    std::int64_t epoch = 0;
    double metric = 0;
    SaveOptions options;
    std::vector<std::filesystem::path> files;  // latest, [epoch], [best]
    std::size_t best_index = static_cast<std::size_t>(-1);
    ModelAveraging* averaging = nullptr;
    bool use_ema = false;
    // Outcome, read by the caller thread after the worker is done.
    std::size_t written = 0;
    std::vector<std::string> logs;
  };

  struct Pending {
    std::shared_ptr<Job> job;
    std::int64_t epoch = 0;
    bool includes_best = false;
    double previous_best_value = 0;
    Value previous_best_metrics;
  };

  // Runs in the worker thread (or inline without async_save). Touches nothing of the
  // manager but the averaging, which only jobs use once the run has started.
  static void run_job(Job& job) {
    try {
      for (const auto& f : job.files) {
        save(job.checkpoint, f, job.options);
        ++job.written;
      }
      if (job.averaging) {
        Dict& d = job.checkpoint.dict();
        job.averaging->update(*d.find(job.use_ema ? "ema_net" : "net"), job.metric);
        std::optional<Value> avg = job.averaging->average();
        if (!avg) {
          job.logs.push_back("No model could be averaged yet (the watched metric was never finite): " +
                             std::string(kAverageModelName) + " not written");
          return;
        }
        // SG's average_model.pth: the same dict with net replaced and the training state
        // removed (PR #1718).
        d.set("net", std::move(*avg));
        d.erase("optimizer_state_dict");
        d.erase("scaler_state_dict");
        d.erase("ema_net");
        save(job.checkpoint, job.dir / std::string(kAverageModelName), job.options);
      }
    } catch (const Error& e) {
      throw Error(e.kind(),
                  "saving the checkpoints of epoch " + std::to_string(job.epoch) + " failed: " + e.message(),
                  e.context());
    } catch (const std::exception& e) {
      throw Error(ErrorKind::Io,
                  "saving the checkpoints of epoch " + std::to_string(job.epoch) + " failed: " + e.what());
    }
  }

  // Waits for the pending write (if any), forwards its log lines, and handles its error.
  void wait_pending(bool rethrow) {
    if (!pending_) return;
    std::exception_ptr error = config_.async_save ? worker_.wait() : nullptr;
    settle(error, rethrow);
  }

  void settle(std::exception_ptr error, bool rethrow) {
    if (!pending_) {
      if (error && rethrow) std::rethrow_exception(error);
      return;
    }
    Pending p = std::move(*pending_);
    pending_.reset();
    for (const auto& line : p.job->logs) log(line);
    if (!error) return;
    // ckpt_best.pth was not (fully) written: forget that improvement, so that the next
    // strictly better epoch writes it again rather than the file lagging behind silently.
    if (p.includes_best && p.job->written <= p.job->best_index) {
      best_value_ = p.previous_best_value;
      best_metrics_ = std::move(p.previous_best_metrics);
    }
    if (rethrow) std::rethrow_exception(error);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      log(std::string("A background checkpoint save failed and could not be reported: ") + e.what());
    }
  }

  void log(const std::string& line) const {
    if (config_.log) config_.log(line);
  }

  void reset_best() {
    best_value_ = config_.greater_metric_to_watch_is_better ? -std::numeric_limits<double>::infinity()
                                                            : std::numeric_limits<double>::infinity();
    best_metrics_ = Value();
  }

  // The watched metric's title among this epoch's valid metrics: exact, else the one title
  // equal ignoring case and symbols (SG's fuzzy match, with the same warning). Resolved at
  // the first epoch and kept.
  const std::string& resolve_metric(const MetricList& valid) {
    if (!resolved_metric_) {
      std::string found;
      for (const auto& [n, v] : valid)
        if (n == config_.metric_to_watch) found = n;
      if (found.empty()) {
        const std::string want = detail::normalize_metric_name(config_.metric_to_watch);
        std::vector<std::string> matches;
        for (const auto& [n, v] : valid)
          if (detail::normalize_metric_name(n) == want) matches.push_back(n);
        if (matches.size() > 1)
          throw Error("metric_to_watch=" + config_.metric_to_watch + " matches several validation metrics (" +
                      matches[0] + ", " + matches[1] + "): name it exactly");
        if (matches.empty()) {
          std::string names;
          for (const auto& [n, v] : valid) names += (names.empty() ? "" : ", ") + n;
          throw Error(ErrorKind::Mismatch, "No match found for metric_to_watch=" + config_.metric_to_watch +
                                               " among the validation metrics [" + names + "]");
        }
        found = matches[0];
        log("metric_to_watch=" + config_.metric_to_watch +
            " is not an exact validation metric name; watching " + found);
      }
      resolved_metric_ = found;
    }
    for (const auto& [n, v] : valid)
      if (n == *resolved_metric_) return *resolved_metric_;
    throw Error(
        ErrorKind::Mismatch,
        "the validation metrics of this epoch do not include the watched metric " + *resolved_metric_);
  }

  bool same_metric(std::string_view a) const {
    if (resolved_metric_ && a == *resolved_metric_) return true;
    return detail::normalize_metric_name(a) == detail::normalize_metric_name(config_.metric_to_watch);
  }

  // ckpt_latest.pth is written before ckpt_best.pth, so a save that failed (disk full) or was
  // killed between the two leaves a latest file that records a best the best file never got.
  // Continuing in place, the best file on disk is the truth: its value is restored, so that a
  // later epoch replaces ckpt_best.pth exactly when it beats what that file holds.
  template <class Warn>
  void reconcile_with_best_file(const std::filesystem::path& run_dir, const std::filesystem::path& loaded,
                                const LoadOptions& load_options, ResumeState& rs, Warn&& warn) {
    if (!rs.best_metric) return;
    const std::filesystem::path best_file = run_dir / config_.ckpt_best_name;
    std::error_code ec;
    if (std::filesystem::equivalent(best_file, loaded, ec)) return;  // resuming from the best file itself
    const std::string latest_says = detail::format_number(*rs.best_metric);
    // No best file (deleted, renamed, or its first save failed): nothing to check against; the
    // recorded value stands, as SG would have it.
    if (!detail::is_regular_file(best_file)) return;
    std::optional<double> on_disk;
    Value on_disk_metrics;
    try {
      LoadOptions o = load_options;
      o.mmap = true;  // only two scalars are read: no tensor is copied
      const Value b = load(best_file, o);
      const Value* v = b.is_dict() ? b.dict().find("acc") : nullptr;
      const Value* m = b.is_dict() ? b.dict().find("metrics") : nullptr;
      if (v && v->is_number()) on_disk = number_in_range(*v, "acc");
      if (m && m->is_dict()) on_disk_metrics = *m;
    } catch (const Error& e) {
      warn(std::string("Cannot read the best checkpoint to check the restored best metric: ") + e.what());
      return;
    }
    if (!on_disk || *on_disk == *rs.best_metric || (std::isnan(*on_disk) && std::isnan(*rs.best_metric)))
      return;
    warn("Checkpoint records best " + rs.best_metric_name + " = " + latest_says + " but \"" +
         best_file.string() + "\" holds " + detail::format_number(*on_disk) +
         " (its save was interrupted); continuing from the best file's value.");
    best_value_ = *on_disk;
    best_metrics_ = on_disk_metrics;
    rs.best_metric = on_disk;
    rs.best_metrics = on_disk_metrics;
  }

  template <class Warn>
  void restore_best(const Dict& d, const std::string& where, ResumeState& rs, Warn&& warn) {
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
        warn("Checkpoint " + where + " tracked " + name->as_str() + " but this run watches " +
             config_.metric_to_watch + "; the best metric starts over.");
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
        warn("Checkpoint " + where + " records no best value of " + config_.metric_to_watch +
             "; the best metric starts over.");
        rs.best_metrics = Value();
      }
    } else {
      warn("Checkpoint " + where + " records no best metric; the best metric starts over.");
    }
    if (restored) {
      best_value_ = *restored;
      best_metrics_ = rs.best_metrics;
      rs.best_metric = restored;
      rs.best_metric_name = restored_name;
    }
  }

  // Refuses to resume a checkpoint written for another model configuration (issue #1303):
  // the mismatch would otherwise surface later as missing keys or size mismatches.
  void check_identity(const Dict& d, const std::filesystem::path& file) const {
    auto mismatch = [&](const std::string& key, const std::string& in_file, const std::string& configured) {
      return detail::path_error(ErrorKind::Mismatch,
                                "checkpoint \"" + file.string() + "\" was written with " + key + "=" +
                                    in_file + ", but this run is configured with " + key + "=" + configured,
                                file);
    };
    if (const Value* a = d.find("architecture"); a && a->is_str() && !a->as_str().empty() &&
                                                 !config_.architecture.empty() &&
                                                 a->as_str() != config_.architecture)
      throw mismatch("architecture", a->as_str(), config_.architecture);
    auto check_int = [&](const char* key, std::int64_t configured) {
      const Value* v = d.find(key);
      if (!v || !v->is_int()) return;
      const auto in_file =
          checked_in_file(file.string(), [&] { return int_in_range<std::int64_t>(*v, key); });
      if (in_file >= 0 && configured >= 0 && in_file != configured)
        throw mismatch(key, std::to_string(in_file), std::to_string(configured));
    };
    check_int("num_classes", config_.num_classes);
    check_int("in_channels", config_.in_channels);
  }

  void store_recipe(std::string_view text, bool new_dir) {
    const std::filesystem::path path = run_dir_ / std::string(kRecipeFileName);
    if (!new_dir && detail::is_regular_file(path)) {
      if (detail::read_text_file(path, std::uintmax_t{64} << 20) != text)
        log("Kept the recipe stored when run \"" + run_dir_.string() +
            "\" started; the recipe given now differs and is not stored");
      return;
    }
    AtomicFile f(path, config_.durable);
    f.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    f.commit();
  }

  CheckpointConfig config_;
  bool started_ = false;
  std::filesystem::path run_dir_;
  std::optional<std::string> resolved_metric_;
  double best_value_ = 0;
  Value best_metrics_;
  std::optional<ModelAveraging> averaging_;
  std::optional<Pending> pending_;
  detail::SaveWorker worker_;  // last member: destroyed (joined) first
};

}  // namespace sgckpt
