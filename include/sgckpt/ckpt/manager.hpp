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
// with SG's keys and sgckpt's (checkpoint_schema.hpp). The manager orchestrates three parts,
// each testable alone: the checkpoint schema (pure functions between the training state and
// the checkpoint dict), the best-metric rule with rollback (best_metric.hpp), and the
// background writer (save_worker.hpp).
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
// Remote copies (docs/remote.md): with config.remote set, every file the manager writes
// (checkpoints, average, averaging snapshots, recipe) is handed after its local atomic save
// to a remote::RemoteSync that uploads it in the background under
// <store>/<experiment>/<run_id>/<name>; finish() waits for the uploads up to
// remote_finish_timeout. A store that fails never fails the training: it is logged and
// tried again at the next checkpoint.
//
// The library never prints: log lines go to the `log` hook of the config, always from the
// thread that calls the manager (lines produced by the worker are handed over at the next
// wait). The manager is not thread-safe: one thread (the training loop) drives it.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/best_metric.hpp"
#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/checkpoint_schema.hpp"
#include "sgckpt/ckpt/remote/sync.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/ckpt/save_worker.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt {

inline constexpr std::string_view kAverageModelName = "average_model.pth";

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
  ModelIdentity identity() const { return {architecture, num_classes, in_channels}; }
  // What the loop uses, for restore(): EMA on (a checkpoint without ema_net is then reported)
  // and a stateful scheduler (a checkpoint without its state is then an Error).
  bool ema = false;
  bool scheduler = false;
  std::function<void(std::string_view)> log;  // receives every log line; nothing is printed
  // Remote copies of the run (SG's sg_logger_params.save_checkpoints_remote); null: none.
  std::shared_ptr<remote::Store> remote;
  remote::SyncOptions remote_options;
  std::chrono::milliseconds remote_finish_timeout{std::chrono::minutes(10)};
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

class CheckpointManager {
 public:
  explicit CheckpointManager(CheckpointConfig config)
      : config_(std::move(config)),
        best_(config_.metric_to_watch, config_.greater_metric_to_watch_is_better) {
    (void)experiment_dir(config_.ckpt_root_dir, config_.experiment_name);  // validates both
    if (config_.average_best_models && config_.n_models_to_average == 0)
      throw Error("n_models_to_average must be at least 1 when average_best_models is on");
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
  // continued in place with a different recipe stores the new one and keeps the earlier
  // (store_recipe).
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
    if (config_.remote)
      sync_ = std::make_unique<remote::RemoteSync>(config_.remote, remote_prefix(), config_.remote_options);
    if (recipe_text) store_recipe(*recipe_text, plan.new_run_dir);
    if (sync_ && detail::is_regular_file(run_dir_ / std::string(kRecipeFileName)))
      sync_->enqueue(run_dir_ / std::string(kRecipeFileName));
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
    best_.reset();
    rs.best_metric_name = config_.metric_to_watch;
    if (!plan.checkpoint) return rs;
    const std::filesystem::path file = *plan.checkpoint;
    const std::string where = "\"" + file.string() + "\"";
    Value ck = load(file, load_options);
    if (!ck.is_dict())
      throw detail::path_error(ErrorKind::Schema,
                               "checkpoint " + where + " is not a dict of entries (found a " +
                                   kind_name(ck.kind()) + "), so it cannot be resumed",
                               file);
    Dict& d = ck.dict();
    auto warn = [&](std::string text) {
      log(text);
      rs.warnings.push_back(std::move(text));
    };
    check_identity(d, file.string(), config_.identity());
    rs.resumed = true;
    rs.checkpoint = file;
    take_training_state(d, file.string(), {.scheduler = config_.scheduler, .ema = config_.ema}, rs, warn);
    checked_in_file(file.string(), [&] { best_.restore(d, where, rs, warn); });
    if (!plan.new_run_dir) reconcile_with_best_file(plan.run_dir, file, load_options, rs, warn);
    rs.extra = extra_entries(d);
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
      if (is_reserved_checkpoint_key(key))
        throw Error("extra checkpoint entry '" + key + "' collides with an entry the manager writes");
    if (state.net.is_none()) throw Error("on_epoch_end(): the state has no net");

    const std::string& name = best_.resolve(metrics.valid, [&](const std::string& line) { log(line); });
    EpochResult result;
    for (const auto& [n, v] : metrics.valid)
      if (n == name) result.metric = v;
    const double value = result.metric;
    result.best = best_.improves(value);
    Value metrics_value = epoch_metrics(name, metrics);

    Pending pending;
    pending.epoch = epoch;
    if (result.best) {
      // Before the state is built, so that ckpt_best.pth records itself as the best (SG #2007).
      pending.previous_best = best_.set_best(value, metrics_value);
      log("Best checkpoint overridden: validation " + name + ": " + detail::format_number(value));
    }
    const bool snapshot = config_.async_save;
    Value ck = make_checkpoint(std::move(state),
                               {.epoch = epoch,
                                .acc = value,
                                .metrics = std::move(metrics_value),
                                .best_metrics = best_.metrics(),
                                .best_metric_name = name,
                                .best_metric_value = best_.value()},
                               config_.identity());

    auto job = std::make_shared<Job>();
    job->dir = run_dir_;
    job->epoch = epoch;
    job->metric = value;
    job->options.durable = config_.durable;
    job->sync = sync_.get();
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
  // extended later without restarting the averaging). With a remote store, then waits for
  // the uploads (at most config.remote_finish_timeout) and logs what did not go up.
  void finish(bool remove_averaging_snapshots = false) {
    flush();
    if (remove_averaging_snapshots && averaging_) averaging_->remove_snapshot_file();
    if (!sync_) return;
    const remote::SyncReport r = sync_->finish(config_.remote_finish_timeout);
    forward_remote_logs();
    std::string line = "Remote copies in " + config_.remote->url() + "/" + remote_prefix() + ": " +
                       std::to_string(r.uploaded) + " uploads (" + std::to_string(r.bytes) + " bytes), " +
                       std::to_string(r.superseded) + " superseded before they went up, " +
                       std::to_string(r.failures) + " failed tries";
    if (!r.not_uploaded.empty()) {
      line += "; NOT uploaded (the store did not answer in time):";
      for (const auto& n : r.not_uploaded) line += " " + n;
    }
    log(line);
    if (remove_averaging_snapshots && averaging_) {  // the store's copy goes too, as the local one did
      try {
        config_.remote->remove(remote::join_key(remote_prefix(), ModelAveraging::kFileName));
      } catch (const std::exception& e) {
        log(std::string("Could not delete the remote averaging snapshots: ") + e.what());
      }
    }
  }

  // Uploads another file of the run directory (the run log, TensorBoard events) to the
  // store, in the background; nothing without a remote store.
  void upload(const std::filesystem::path& file) {
    if (sync_) sync_->enqueue(file);
  }

  // ---- State ----------------------------------------------------------------------------------

  bool started() const noexcept { return started_; }
  const std::filesystem::path& run_dir() const noexcept { return run_dir_; }
  const CheckpointConfig& config() const noexcept { return config_; }
  // The best watched-metric value so far (±inf before any best: SG's starting value).
  double best_metric_value() const noexcept { return best_.value(); }
  // The metrics dict of the best epoch (None before any best).
  const Value& best_metrics() const noexcept { return best_.metrics(); }
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
    remote::RemoteSync* sync = nullptr;  // uploads each file once it is saved
    bool use_ema = false;
    // Outcome, read by the caller thread after the worker is done.
    std::size_t written = 0;
    std::vector<std::string> logs;
  };

  struct Pending {
    std::shared_ptr<Job> job;
    std::int64_t epoch = 0;
    bool includes_best = false;
    BestMetric::Saved previous_best;  // what the best was before this epoch (includes_best)
  };

  // Runs in the worker thread (or inline without async_save). Touches nothing of the
  // manager but the averaging, which only jobs use once the run has started.
  static void run_job(Job& job) {
    try {
      for (const auto& f : job.files) {
        save(job.checkpoint, f, job.options);
        ++job.written;
        if (job.sync) job.sync->enqueue(f);
      }
      if (job.averaging) {
        Dict& d = job.checkpoint.dict();
        const bool changed = job.averaging->update(*d.find(job.use_ema ? "ema_net" : "net"), job.metric);
        std::optional<Value> avg = job.averaging->average();
        if (!avg) {
          job.logs.push_back("No model could be averaged yet (the watched metric was never finite): " +
                             std::string(kAverageModelName) + " not written");
          return;
        }
        make_average_checkpoint(job.checkpoint, std::move(*avg));
        save(job.checkpoint, job.dir / std::string(kAverageModelName), job.options);
        if (job.sync && changed) {  // unchanged snapshots give the same average: nothing new to upload
          job.sync->enqueue(job.dir / std::string(kAverageModelName));
          job.sync->enqueue(job.averaging->snapshot_path());
        }
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
    forward_remote_logs();
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
    if (p.includes_best && p.job->written <= p.job->best_index) best_.rollback(std::move(p.previous_best));
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

  // Where the run's files go in the store: <experiment>/<run_id>, the run directory's layout.
  std::string remote_prefix() const { return config_.experiment_name + "/" + run_dir_.filename().string(); }

  void forward_remote_logs() {
    if (sync_)
      for (const auto& line : sync_->take_logs()) log(line);
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
    best_.set_best(*on_disk, on_disk_metrics);
    rs.best_metric = on_disk;
    rs.best_metrics = on_disk_metrics;
  }

  // A run continued with another recipe (overrides given on resume: more epochs) stores the
  // one it now runs with, so that the next resume continues with it too; each earlier one is
  // kept beside it as recipe.yaml.1, recipe.yaml.2, ...
  void store_recipe(std::string_view text, bool new_dir) {
    const std::filesystem::path path = run_dir_ / std::string(kRecipeFileName);
    if (!new_dir && detail::is_regular_file(path)) {
      const std::string earlier = detail::read_text_file(path, std::uintmax_t{64} << 20);
      if (earlier == text) return;
      std::filesystem::path kept;
      for (int i = 1;; ++i) {
        kept = path;
        kept += "." + std::to_string(i);
        std::error_code ec;  // any entry, a dangling link included, takes the name
        if (!std::filesystem::exists(std::filesystem::symlink_status(kept, ec))) break;
      }
      write_text(kept, earlier);
      log("The run continues with another recipe than the one it stored: stored it, the earlier one is kept "
          "as \"" +
          kept.filename().string() + "\"");
    }
    write_text(path, text);
  }

  void write_text(const std::filesystem::path& path, std::string_view text) const {
    detail::fs::AtomicFile f(path, config_.durable);
    f.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    f.commit();
  }

  CheckpointConfig config_;
  bool started_ = false;
  std::filesystem::path run_dir_;
  BestMetric best_;
  std::optional<ModelAveraging> averaging_;
  std::optional<Pending> pending_;
  std::unique_ptr<remote::RemoteSync> sync_;  // with config.remote, once the run started
  detail::SaveWorker worker_;                 // last member: destroyed (joined) first
};

}  // namespace sgckpt
