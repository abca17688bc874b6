// sgckpt/ckpt/remote/sync.hpp: the background uploader behind CheckpointManager's remote
// copies (docs/remote.md). The local atomic save stays the source of truth; after it, the
// file is handed here and uploaded by one worker thread, so the training loop never waits
// for the network.
//
//   - enqueue() opens the file at once (its bytes are those of that moment: files are
//     replaced by rename, never rewritten) and returns; it never blocks on the network.
//   - A newer file under the same name supersedes a pending older one (ckpt_latest.pth saved
//     again before the last one went up): only the newest is uploaded.
//   - A failed upload is tried again attempts_per_round times with exponential backoff and
//     jitter; when the store stays down it waits, with a warning in the log, until the next
//     enqueue() (the next checkpoint) and tries again then. Training never stops for it. An
//     error that trying again cannot fix (wrong credentials, no such bucket: not transient)
//     drops that file at once, with an error in the log.
//   - finish(timeout) waits for the queue, trying failures again until the timeout, and says
//     what did not go up. The destructor cancels what is in flight.
// Thread-safe: the manager's background writer enqueues while the loop takes the log lines.
#pragma once

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/remote/store.hpp"

namespace sgckpt::remote {

struct SyncOptions {
  int attempts_per_round = 4;                    // tries of one file before waiting for the next checkpoint
  std::chrono::milliseconds backoff{1000};       // first wait between tries; doubles, up to max_backoff
  std::chrono::milliseconds max_backoff{30000};  // each wait gets +-50 % jitter
  // The uploader's threads run this much nicer than the training loop (Linux; 0: as nice as
  // it), so that hashing and sending yield the cores to training.
  int nice = 10;
};

namespace detail {

// Makes the calling thread `delta` nicer (Linux: nice is per thread, and threads it starts
// inherit it). Best effort: only ever lowers the priority, so it needs no privilege, and a
// failure changes nothing else.
inline void make_this_thread_nicer(int delta) {
#ifdef __linux__
  if (delta <= 0) return;
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, tid);
  if (errno != 0) return;
  (void)::setpriority(PRIO_PROCESS, tid, std::min(19, now + delta));
#else
  (void)delta;
#endif
}

}  // namespace detail

struct SyncReport {
  std::size_t uploaded = 0;    // files that went up
  std::uint64_t bytes = 0;     // their bytes
  std::size_t superseded = 0;  // pending files replaced by a newer one before they went up
  std::size_t failures = 0;    // failed tries
  // "<name> (<why>)" of each file that did not go up: refused by the store (credentials, no
  // such bucket: never tried again) or still pending when finish() timed out.
  std::vector<std::string> not_uploaded;
};

class RemoteSync {
 public:
  // Files go to <key_prefix>/<name> in `store`.
  RemoteSync(std::shared_ptr<Store> store, std::string key_prefix, SyncOptions options = {})
      : store_(std::move(store)), prefix_(std::move(key_prefix)), o_(options) {
    if (!store_) throw Error("RemoteSync needs a store");
    thread_ = std::jthread([this](std::stop_token stop) { loop(stop); });
  }
  RemoteSync(const RemoteSync&) = delete;
  RemoteSync& operator=(const RemoteSync&) = delete;
  ~RemoteSync() {
    thread_.request_stop();
    cv_.notify_all();
  }

  // Where `name` goes: "s3://bucket/prefix/<key_prefix>/<name>".
  std::string url_of(const std::string& name) const { return store_->url() + "/" + join_key(prefix_, name); }

  // Queues `file` under `name` (default: its file name). A file that cannot be opened is
  // reported in the log, not thrown: the remote copy never fails the local save.
  void enqueue(const std::filesystem::path& file, std::string name = {}) {
    if (name.empty()) name = file.filename().string();
    std::optional<SourceFile> src;
    try {
      src = SourceFile::open(file);
    } catch (const std::exception& e) {
      std::lock_guard lock(m_);
      logs_.push_back("Remote copy of \"" + file.string() + "\" skipped: " + e.what());
      return;
    }
    {
      std::lock_guard lock(m_);
      if (finished_) {
        logs_.push_back("Remote copy of \"" + file.string() + "\" skipped: the uploads already finished");
        return;
      }
      auto it = pending_.find(name);
      if (it != pending_.end()) {
        it->second = std::move(*src);
        ++report_.superseded;
      } else {
        pending_.emplace(name, std::move(*src));
        queue_.push_back(name);
      }
      round_open_ = true;  // a new checkpoint: what waited after failures is tried again
      ++enqueued_;
    }
    cv_.notify_all();
  }

  // The log lines produced since the last call (warnings about the store, a summary).
  std::vector<std::string> take_logs() {
    std::lock_guard lock(m_);
    return std::exchange(logs_, {});
  }

  SyncReport report() const {
    std::lock_guard lock(m_);
    return report_;
  }

  // Waits until everything queued went up, trying failures again (backoff included) until
  // `timeout`; then stops (the transfer in flight is cancelled). The report's not_uploaded
  // names what did not go up. Later calls return the same report at once.
  SyncReport finish(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    if (finished_) return report_;
    finishing_ = true;
    cv_.notify_all();
    idle_cv_.wait_for(lock, timeout, [this] { return queue_.empty() && in_flight_.empty(); });
    lock.unlock();
    thread_.request_stop();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    lock.lock();
    for (const auto& n : queue_) report_.not_uploaded.push_back(n + " (the store did not take it in time)");
    queue_.clear();
    pending_.clear();
    finished_ = true;
    return report_;
  }

 private:
  enum class Outcome { Uploaded, Failed, Refused, Cancelled };

  void loop(std::stop_token stop) {
    detail::make_this_thread_nicer(o_.nice);
    std::mt19937_64 rng{std::random_device{}()};
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, stop, [this] { return !queue_.empty() && (round_open_ || finishing_); });
      if (stop.stop_requested()) return;
      const std::string name = queue_.front();
      queue_.pop_front();
      SourceFile src = std::move(pending_.at(name));
      pending_.erase(name);
      in_flight_ = name;
      const std::uint64_t enqueued_before = enqueued_;
      lock.unlock();
      std::string why;
      const Outcome outcome = upload(name, src, stop, rng, why);
      lock.lock();
      in_flight_.clear();
      switch (outcome) {
        case Outcome::Uploaded:
          ++report_.uploaded;
          report_.bytes += src.size();
          break;
        case Outcome::Refused:  // trying again cannot help (credentials, no bucket, a bad key)
          report_.not_uploaded.push_back(name + " (" + why + ")");
          break;
        case Outcome::Failed:
        case Outcome::Cancelled:
          if (pending_.count(name)) break;  // superseded meanwhile: the newer one goes up
          pending_.emplace(name, std::move(src));
          queue_.push_back(name);  // behind the others: one failing file blocks nothing
          // The store is down: wait for the next checkpoint, unless one arrived meanwhile.
          if (outcome == Outcome::Failed && enqueued_ == enqueued_before) round_open_ = false;
          break;
      }
      idle_cv_.notify_all();
    }
  }

  // One round of tries (all of them until finish() stops it, when finishing); logs a failed
  // round, a refusal, and the first success after a failed round.
  Outcome upload(const std::string& name, const SourceFile& src, std::stop_token stop, std::mt19937_64& rng,
                 std::string& why) {
    const std::string key = join_key(prefix_, name);
    const int attempts = std::max(1, o_.attempts_per_round);
    for (int attempt = 1;; ++attempt) {
      if (stop.stop_requested()) return Outcome::Cancelled;
      try {
        store_->put(src, key, stop);
        if (failing_) {
          failing_ = false;
          log("Remote store " + store_->url() + " works again: \"" + name + "\" uploaded");
        }
        return Outcome::Uploaded;
      } catch (const StoreError& e) {
        why = e.what();
        count_failure();
        if (!e.transient() && !stop.stop_requested()) {
          log("Uploading \"" + name + "\" to " + url_of(name) +
              " failed and will not be tried again: " + why);
          return Outcome::Refused;
        }
      } catch (const std::exception& e) {  // the local file (read error): not the store's fault
        why = e.what();
        count_failure();
        log("Uploading \"" + name + "\" to " + url_of(name) + " failed and will not be tried again: " + why);
        return Outcome::Refused;
      }
      if (stop.stop_requested()) return Outcome::Cancelled;
      if (attempt >= attempts && !finishing()) break;
      const double base =
          std::min<double>(static_cast<double>(std::max<std::int64_t>(0, o_.max_backoff.count())),
                           static_cast<double>(std::max<std::int64_t>(1, o_.backoff.count())) *
                               static_cast<double>(1u << std::min(attempt - 1, 16)));
      const auto wait = std::chrono::duration<double, std::milli>(
          base * std::uniform_real_distribution<double>(0.5, 1.5)(rng));
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock l(m);
      cv.wait_for(l, stop, wait, [] { return false; });
    }
    failing_ = true;
    log("Uploading \"" + name + "\" to " + url_of(name) + " failed " + std::to_string(attempts) +
        " times (last: " + why +
        "); training continues and the upload is tried again at the next checkpoint");
    return Outcome::Failed;
  }

  void count_failure() {
    std::lock_guard lock(m_);
    ++report_.failures;
  }

  bool finishing() {
    std::lock_guard lock(m_);
    return finishing_;
  }

  void log(std::string line) {
    std::lock_guard lock(m_);
    logs_.push_back(std::move(line));
  }

  std::shared_ptr<Store> store_;
  std::string prefix_;
  SyncOptions o_;
  mutable std::mutex m_;
  std::condition_variable_any cv_;
  std::condition_variable_any idle_cv_;
  std::deque<std::string> queue_;              // names in upload order
  std::map<std::string, SourceFile> pending_;  // name -> the newest file under it
  std::string in_flight_;
  bool round_open_ = true;
  std::uint64_t enqueued_ = 0;  // counts enqueue() calls: a round fails "quietly" only if none came
  bool finishing_ = false;
  bool finished_ = false;
  bool failing_ = false;  // the worker's own: the last round failed
  std::vector<std::string> logs_;
  SyncReport report_;
  std::jthread thread_;  // last: stopped and joined first
};

}  // namespace sgckpt::remote
