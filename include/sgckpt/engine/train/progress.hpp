// sgckpt/engine/train/progress.hpp: the training progress a person watches.
//
// Per epoch: batches done, the running loss and accuracy, images per second, elapsed time and
// the time left in the epoch. On a terminal, ProgressLine redraws one line in place (at most
// ten times a second) that stays, complete, when the epoch ends; where output is not a
// terminal (a log file, a pipe), a caller prints plain lines instead, so logs stay greppable
// (train_resnet18 --log-every). No terminal library: Debian has no C++ progress-bar package,
// and a carriage return is all a redrawn line needs.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace sgckpt::engine::train {

// What a progress line shows.
struct Progress {
  int epoch = 0;  // 1-based
  int epochs = 0;
  std::int64_t batch = 0;  // batches done
  std::int64_t batches = 0;
  double loss = 0;      // running mean over the epoch so far
  double accuracy = 0;  // running top-1 over the epoch so far
  double images_per_second = 0;
  double elapsed = 0;  // seconds since the epoch started
};

// "m:ss", or "h:mm:ss" from an hour on.
inline std::string clock_text(double seconds) {
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

// "epoch 2/10 [#########...........] 45/100 loss 0.4123 acc 0.8512 1234 img/s 0:12<0:15".
inline std::string progress_text(const Progress& p, int bar_width = 20) {
  const double done = p.batches > 0 ? static_cast<double>(p.batch) / static_cast<double>(p.batches) : 0.0;
  const int filled = static_cast<int>(done * bar_width + 1e-9);
  const double left =
      p.batch > 0 ? p.elapsed / static_cast<double>(p.batch) * static_cast<double>(p.batches - p.batch) : 0.0;
  char nums[160];
  std::snprintf(nums, sizeof nums, " %lld/%lld loss %.4f acc %.4f %.0f img/s ",
                static_cast<long long>(p.batch), static_cast<long long>(p.batches), p.loss, p.accuracy,
                p.images_per_second);
  return "epoch " + std::to_string(p.epoch) + "/" + std::to_string(p.epochs) + " [" +
         std::string(filled, '#') + std::string(bar_width - filled, '.') + "]" + nums +
         clock_text(p.elapsed) + "<" + clock_text(left);
}

// One line on a terminal, redrawn in place.
class ProgressLine {
 public:
  explicit ProgressLine(std::FILE* out) : out_(out) {}

  void update(const Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool last = p.batch == p.batches;
    if (!last && now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    const std::string text = progress_text(p);
    // Spaces erase what a longer previous line left.
    const std::size_t pad = width_ > text.size() ? width_ - text.size() : 0;
    width_ = last ? 0 : text.size();
    std::fprintf(out_, "\r%s%s%s", text.c_str(), std::string(pad, ' ').c_str(), last ? "\n" : "");
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  std::size_t width_ = 0;
  std::chrono::steady_clock::time_point drawn_{};
};

}  // namespace sgckpt::engine::train
