// sgckpt/engine/train/run_logger.hpp: what a training run leaves beside its checkpoints, as
// SuperGradients' default logger does (docs/tensorboard.md, docs/supergradients.md):
//
//   events.out.tfevents.*            per epoch (step = the 0-based epoch): train_<loss>,
//                                    train_<metric>..., valid_<loss>, valid_<metric>..., lr;
//                                    optionally per-step training loss (train_step_<loss>,
//                                    step = the global batch number, 1-based);
//   experiment_logs_<stamp>.txt      the recipe between SG's "config parameters" markers, then
//                                    one line per scalar group in SG's format
//                                    ("Epoch 0 (1/3)  - Train_CrossEntropyLoss: 2.3\t..."), and
//                                    the run's events (resume decision, checkpoints, warnings).
//
// Tags are SG's: the metric titles with the phase prefix, lowercased with spaces as '_' in the
// events (BaseSGLogger.add_scalars), as titled in the text log. Both files are flushed at each
// epoch, so a running TensorBoard shows progress; a resumed run cuts torn tails off the event
// files first and starts new files beside the old ones, as SG does.
#pragma once

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "sgckpt/ckpt/checkpoint_schema.hpp"
#include "sgckpt/core/float_text.hpp"
#include "sgckpt/engine/train/tensorboard.hpp"

namespace sgckpt::engine::train {

// SG's event tag: spaces as underscores and lowercase (the text log keeps the case).
inline std::string event_tag(std::string_view title, bool lowercase = true) {
  std::string t(title);
  for (char& c : t) {
    if (c == ' ') c = '_';
    if (lowercase && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return t;
}

class RunLogger {
 public:
  struct Options {
    bool tensorboard = true;
    std::int64_t step_loss_every = 0;  // batches between per-step loss scalars; 0: none
    // With a remote store (CheckpointConfig::remote), also copy the log / the event file there
    // after each epoch (SG's sg_logger_params.save_logs_remote / save_tensorboard_remote).
    bool save_logs_remote = false;
    bool save_tensorboard_remote = false;
  };

  // Opens the log (and the event file) in `run_dir`; `recipe` is written between SG's markers.
  RunLogger(const std::filesystem::path& run_dir, int max_epochs, std::string_view recipe, Options options)
      : max_epochs_(max_epochs), options_(options) {
    log_path_ = run_dir / ("experiment_logs_" + stamp() + ".txt");
    log_.open(log_path_, std::ios::app);
    if (!log_) throw Error(ErrorKind::Io, "cannot open the run log", {log_path_.string(), {}, {}, {}});
    log_ << "--------- config parameters ----------\n" << recipe;
    if (!recipe.empty() && recipe.back() != '\n') log_ << '\n';
    log_ << "------- config parameters end --------\n";
    if (options_.tensorboard) {
      repaired_bytes_ = repair_event_files(run_dir);
      events_.emplace(run_dir);
    }
    log_.flush();
  }

  const std::filesystem::path& log_path() const noexcept { return log_path_; }
  std::optional<std::filesystem::path> events_path() const {
    return events_ ? std::optional(events_->path()) : std::nullopt;
  }
  // Bytes of torn records cut off older event files when this run started.
  std::uint64_t repaired_bytes() const noexcept { return repaired_bytes_; }

  // A free-form line (resume decision, a checkpoint written, a warning).
  void note(std::string_view text) {
    log_ << text << '\n';
    log_.flush();
  }

  // A training step's loss, every options.step_loss_every batches (global_step is 1-based).
  void step(std::int64_t global_step, std::string_view loss_title, double loss) {
    if (!events_ || options_.step_loss_every <= 0 || global_step % options_.step_loss_every != 0) return;
    events_->add_scalar("train_step_" + event_tag(loss_title), loss, global_step);
  }

  // An epoch's scalars (epoch is 0-based, as SG's step), then a flush of both files.
  void epoch(int epoch, const Metrics& m, double lr) {
    group(epoch, "Train_", m.train);
    group(epoch, "Valid_", m.valid);
    group(epoch, "", {{"LR", lr}});
    if (events_) events_->flush();
    log_.flush();
  }

 private:
  static std::string stamp() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::localtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%b%d_%H_%M_%S", &tm);
    return buf;
  }

  // One of SG's add_scalars calls: a line in the log, a scalar per title in the events.
  void group(int epoch, std::string_view prefix, const MetricList& values) {
    if (values.empty()) return;
    log_ << "\nEpoch " << epoch << " (" << epoch + 1 << "/" << max_epochs_ << ")  - ";
    for (const auto& [title, value] : values) {
      const std::string full = std::string(prefix) + title;
      log_ << event_tag(full, /*lowercase=*/false) << ": " << float_text(value) << '\t';
      if (events_) events_->add_scalar(event_tag(full), value, epoch);
    }
    log_ << '\n';
  }

  int max_epochs_;
  Options options_;
  std::filesystem::path log_path_;
  std::ofstream log_;
  std::optional<EventWriter> events_;
  std::uint64_t repaired_bytes_ = 0;
};

}  // namespace sgckpt::engine::train
