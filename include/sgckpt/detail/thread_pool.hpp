// sgckpt/detail/thread_pool.hpp: the persistent worker threads behind the engine's
// parallel_for and the library's EMA and averaging loops.
//
// Starting and joining threads for every op and every EMA update (once per batch) costs more
// than many of them take; the workers here are started once, on first use, and wait for work.
//
//   thread_pool().run(parts, f);   // f(p) for p in [0, parts): p = 0 on the calling thread
//
// run() returns when every part has finished and rethrows the exception of the lowest part
// that threw. One run uses the workers at a time: a run started while another is in flight
// (from another thread, or nested inside a part) executes its parts one after another on its
// own thread. The callers make their results depend only on how the work is split into parts,
// never on which thread runs a part, so that changes nothing but speed. Workers that cannot be
// started leave their parts to the calling thread. A child process made by fork() (which has
// none of the parent's threads) starts with a new, empty pool.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sgckpt::detail {

class ThreadPool {
 public:
  ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  // Never destroyed (see thread_pool()): workers blocked at exit end with the process.

  // True on a thread that is running a part (a worker, or a caller inside run()).
  static bool inside() noexcept { return inside_flag(); }

  ThreadPool* abandoned = nullptr;  // pools a forked child left behind (thread_pool())

  template <class F>
  void run(std::size_t parts, F&& f) {
    if (parts == 0) return;
    std::unique_lock<std::mutex> turn(turn_, std::defer_lock);
    if (parts == 1 || inside() || !turn.try_lock()) {
      run_serially(parts, f);
      return;
    }
    const std::function<void(std::size_t)> fn = [&f](std::size_t p) { f(p); };
    std::vector<std::exception_ptr> errors(parts);
    const std::size_t helpers = start_workers(parts - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = {&fn, parts, &errors};
      pending_ = helpers;
      ++generation_;
    }
    work_.notify_all();
    inside_flag() = true;
    run_part(fn, 0, errors);
    for (std::size_t p = helpers + 1; p < parts; ++p) run_part(fn, p, errors);  // no worker for these
    inside_flag() = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return pending_ == 0; });
    }
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  struct Job {
    const std::function<void(std::size_t)>* f = nullptr;
    std::size_t parts = 0;
    std::vector<std::exception_ptr>* errors = nullptr;
  };

  static bool& inside_flag() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  static void run_part(const std::function<void(std::size_t)>& f, std::size_t p,
                       std::vector<std::exception_ptr>& errors) noexcept {
    try {
      f(p);
    } catch (...) {
      errors[p] = std::current_exception();
    }
  }

  template <class F>
  static void run_serially(std::size_t parts, F& f) {
    std::exception_ptr first;
    for (std::size_t p = 0; p < parts; ++p) {
      try {
        f(p);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }

  // Makes sure `n` workers exist (fewer if the system refuses threads); returns how many do.
  std::size_t start_workers(std::size_t n) {
    while (workers_.size() < n) {
      try {
        // A new worker waits for the NEXT job (the current generation's is over or not yet
        // published: run() publishes after this).
        workers_.emplace_back([this, index = workers_.size(), start = generation_] { work(index, start); });
      } catch (...) {
        break;
      }
    }
    return std::min(n, workers_.size());
  }

  // Worker `index` runs part index + 1 of each job that has one.
  void work(std::size_t index, std::uint64_t seen) {
    inside_flag() = true;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      const std::size_t p = index + 1;
      if (p >= job.parts) continue;
      run_part(*job.f, p, *job.errors);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex turn_;  // held by the run that uses the workers
  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::vector<std::thread> workers_;
  Job job_;
  std::uint64_t generation_ = 0;
  std::size_t pending_ = 0;  // workers still running a part of the current job
};

namespace thread_pool_detail {
inline std::atomic<ThreadPool*>& slot() {
  static std::atomic<ThreadPool*> pool{nullptr};
  return pool;
}
// In a forked child the parent's workers do not exist and the pool's locks may be held by
// them: the child abandons that pool (never touched again, so never joined) and makes anew.
// The abandoned pools stay reachable (a chain through ThreadPool::abandoned), so a leak
// checker in the child does not report them.
inline std::atomic<ThreadPool*>& abandoned() {
  static std::atomic<ThreadPool*> pools{nullptr};
  return pools;
}
inline void forget_pool_in_child() {
  if (ThreadPool* old = slot().exchange(nullptr)) {
    old->abandoned = abandoned().exchange(nullptr);
    abandoned().store(old);
  }
}
}  // namespace thread_pool_detail

// The process's pool, made on first use and never deleted.
inline ThreadPool& thread_pool() {
  static std::once_flag atfork_registered;
  std::call_once(atfork_registered,
                 [] { pthread_atfork(nullptr, nullptr, &thread_pool_detail::forget_pool_in_child); });
  std::atomic<ThreadPool*>& slot = thread_pool_detail::slot();
  ThreadPool* pool = slot.load();
  if (pool == nullptr) {
    auto* made = new ThreadPool();  // no thread yet: cheap to throw away if another call wins
    if (slot.compare_exchange_strong(pool, made)) return *made;
    delete made;
  }
  return *pool;
}

}  // namespace sgckpt::detail
