// sgckpt/engine/data/prefetcher.hpp: one epoch's batches, prepared on a background thread
// while the current batch trains.
//
//   loader.start_epoch(gen);
//   {
//     Prefetcher batches(loader, gen, /*depth=*/2);
//     for (std::int64_t b = 0; b < loader.num_batches(); ++b) train(batches.next());
//   }  // joins the thread; gen is the caller's again
//
// The thread calls loader.batch(0, gen), batch(1, gen), ... in order, exactly as the caller
// would, so the batches, their augmentation and the generator's final state are the same as
// without it (a resumed run stays bit-exact). While a Prefetcher lives, only its thread may
// touch `gen`. It prepares at most `depth` batches ahead; depth 0 prepares each batch in
// next() on the calling thread (no thread at all). An exception on the thread is rethrown
// by next(); destroying the Prefetcher early (a diverged loss) stops and joins the thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "sgckpt/engine/data/loader.hpp"

namespace sgckpt::engine::data {

class Prefetcher {
 public:
  Prefetcher(const DataLoader& loader, Generator& gen, std::size_t depth)
      : loader_(loader), gen_(gen), depth_(depth), total_(loader.num_batches()) {
    if (depth_ > 0) thread_ = std::thread([this] { produce(); });
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    space_.notify_all();
    thread_.join();
  }

  // The next batch of the epoch, in order.
  Batch next() {
    if (next_ >= total_) throw Error("Prefetcher: all " + std::to_string(total_) + " batches were taken");
    if (depth_ == 0) return loader_.batch(next_++, gen_);
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return !queue_.empty() || error_; });
    if (queue_.empty()) std::rethrow_exception(error_);  // batches made before the error come first
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    ++next_;
    lock.unlock();
    space_.notify_one();
    return b;
  }

 private:
  void produce() {
    try {
      for (std::int64_t b = 0; b < total_; ++b) {
        {
          std::unique_lock lock(mu_);
          space_.wait(lock, [&] { return stop_ || queue_.size() < depth_; });
          if (stop_) return;
        }
        Batch batch = loader_.batch(b, gen_);  // outside the lock: this is the work
        {
          std::lock_guard lock(mu_);
          queue_.push_back(std::move(batch));
        }
        ready_.notify_one();
      }
    } catch (...) {
      {
        std::lock_guard lock(mu_);
        error_ = std::current_exception();
      }
      ready_.notify_one();
    }
  }

  const DataLoader& loader_;
  Generator& gen_;
  const std::size_t depth_;
  const std::int64_t total_;
  std::int64_t next_ = 0;  // batches handed out (the caller's thread only)

  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: started after everything it uses exists
};

}  // namespace sgckpt::engine::data
