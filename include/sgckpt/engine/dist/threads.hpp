// sgckpt/engine/dist/threads.hpp: ranks as threads of one process, for tests and for trying
// data-parallel code without a launcher.
//
//   auto ranks = dist::ThreadGroup::create(2);          // one Collective per rank
//   std::thread t([&] { ranks[1]->all_reduce(grads1, dist::ReduceOp::Mean); });
//   ranks[0]->all_reduce(grads0, dist::ReduceOp::Mean);
//
// Every operation is an exchange of byte blobs: each rank deposits its contribution, the last
// to arrive publishes all of them, and each rank computes its result from the published blobs
// in rank order, so all ranks reduce in the same order and agree bit for bit. A rank that waits
// longer than the timeout fails with ErrorKind::Timeout naming the ranks that did not arrive,
// and the group is broken from then on: the others fail at once instead of waiting too.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "sgckpt/engine/dist/collective.hpp"

namespace sgckpt::engine::dist {

namespace threads_detail {

using Blobs = std::vector<std::vector<std::byte>>;

class Exchange {
 public:
  Exchange(int world, std::chrono::milliseconds timeout)
      : world_(world),
        timeout_(timeout),
        slots_(static_cast<std::size_t>(world)),
        present_(static_cast<std::size_t>(world), false) {}

  Blobs exchange(int rank, std::span<const std::byte> mine, std::string_view operation) {
    std::unique_lock lock(mutex_);
    if (!broken_.empty()) throw Error(ErrorKind::Timeout, broken_);
    const auto r = static_cast<std::size_t>(rank);
    slots_[r].assign(mine.begin(), mine.end());
    present_[r] = true;
    const std::uint64_t generation = generation_;
    if (++arrived_ == world_) {
      published_ = std::move(slots_);
      slots_.assign(static_cast<std::size_t>(world_), {});
      present_.assign(static_cast<std::size_t>(world_), false);
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return published_;
    }
    // The next generation cannot be published before this rank arrives at it, so published_
    // still holds this generation's blobs when the wait ends.
    if (!changed_.wait_for(lock, timeout_, [&] { return generation_ != generation || !broken_.empty(); })) {
      broken_ =
          timeout_error(rank, operation, timeout_, "rank(s) " + missing() + " did not arrive").message();
      changed_.notify_all();
      throw Error(ErrorKind::Timeout, broken_);
    }
    if (generation_ == generation) throw Error(ErrorKind::Timeout, broken_);
    return published_;
  }

 private:
  std::string missing() const {
    std::string s;
    for (std::size_t i = 0; i < present_.size(); ++i)
      if (!present_[i]) s += (s.empty() ? "" : ", ") + std::to_string(i);
    return s;
  }

  const int world_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Blobs slots_, published_;
  std::vector<bool> present_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
  std::string broken_;  // the first timeout's message, once one happened
};

template <class T>
void reduce_into(std::span<T> data, const Blobs& blobs, ReduceOp op, int rank) {
  for (const auto& b : blobs)
    if (b.size() != data.size_bytes())
      throw Error(ErrorKind::Usage, "rank " + std::to_string(rank) + ": all_reduce of " +
                                        std::to_string(data.size()) + " elements, another rank passed " +
                                        std::to_string(b.size() / sizeof(T)));
  // Rank order, starting from rank 0's values (no 0 + x, which turns -0 into +0): every rank
  // sums alike.
  std::vector<T> value(data.size());
  if (!value.empty()) std::memcpy(value.data(), blobs[0].data(), blobs[0].size());
  for (std::size_t b = 1; b < blobs.size(); ++b) {
    const T* x = reinterpret_cast<const T*>(blobs[b].data());
    for (std::size_t i = 0; i < value.size(); ++i) value[i] += x[i];
  }
  const T world = static_cast<T>(blobs.size());
  for (std::size_t i = 0; i < value.size(); ++i) data[i] = op == ReduceOp::Mean ? value[i] / world : value[i];
}

}  // namespace threads_detail

class ThreadGroup final : public Collective {
 public:
  // One Collective per rank, sharing one exchange; hand ranks[i] to thread i.
  static std::vector<std::unique_ptr<Collective>> create(
      int world_size, std::chrono::milliseconds timeout = kDefaultTimeout) {
    if (world_size < 1) throw Error(ErrorKind::Usage, "a thread group needs at least one rank");
    auto exchange = std::make_shared<threads_detail::Exchange>(world_size, timeout);
    std::vector<std::unique_ptr<Collective>> ranks;
    for (int r = 0; r < world_size; ++r)
      ranks.push_back(std::unique_ptr<Collective>(new ThreadGroup(exchange, r, world_size)));
    return ranks;
  }

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return world_; }
  const char* backend() const noexcept override { return "threads"; }

  void all_reduce(std::span<float> data, ReduceOp op) override { reduce(data, op); }
  void all_reduce(std::span<double> data, ReduceOp op) override { reduce(data, op); }

  void broadcast(std::span<std::byte> data, int root) override {
    if (root < 0 || root >= world_)
      throw Error(ErrorKind::Usage,
                  "broadcast from rank " + std::to_string(root) + " in a world of " + std::to_string(world_));
    const auto blobs = exchange_->exchange(rank_, data, "broadcast");
    const auto& from = blobs[static_cast<std::size_t>(root)];
    if (from.size() != data.size())
      throw Error(ErrorKind::Usage, "rank " + std::to_string(rank_) + ": broadcast of " +
                                        std::to_string(data.size()) + " bytes, the root sent " +
                                        std::to_string(from.size()));
    if (!from.empty()) std::memcpy(data.data(), from.data(), from.size());
  }

  void barrier() override { exchange_->exchange(rank_, {}, "barrier"); }

  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> blob) override {
    return exchange_->exchange(rank_, blob, "all_gather");
  }

 private:
  ThreadGroup(std::shared_ptr<threads_detail::Exchange> exchange, int rank, int world)
      : exchange_(std::move(exchange)), rank_(rank), world_(world) {}

  template <class T>
  void reduce(std::span<T> data, ReduceOp op) {
    const auto blobs = exchange_->exchange(rank_, std::as_bytes(data), "all_reduce");
    threads_detail::reduce_into(data, blobs, op, rank_);
  }

  std::shared_ptr<threads_detail::Exchange> exchange_;
  int rank_, world_;
};

}  // namespace sgckpt::engine::dist
