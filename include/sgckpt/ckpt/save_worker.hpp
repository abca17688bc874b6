// sgckpt/ckpt/save_worker.hpp: what lets CheckpointManager write in the background: a
// snapshot of the state that the training loop may go on changing, and one worker thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "sgckpt/core/state.hpp"

namespace sgckpt::detail {

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

}  // namespace sgckpt::detail
