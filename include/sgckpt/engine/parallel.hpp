// sgckpt/engine/parallel.hpp: how the CPU ops use several cores.
//
// parallel_for(n, f) splits [0, n) into at most num_threads() contiguous ranges and calls
// f(begin, end, thread_index) for each, the first on the calling thread. The split depends
// only on n and num_threads(), so results are deterministic for a given thread count (the
// ops reduce per-thread partial sums in thread order). A parallel_for inside a parallel_for
// runs serially.
//
// The thread count is the process-wide setting of sgckpt/ckpt/threads.hpp ($SGCKPT_NUM_THREADS
// if set, else the number of hardware threads; set_num_threads() changes it), the same one
// the library's EMA and averaging loops honour.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "sgckpt/ckpt/threads.hpp"

namespace sgckpt::engine {

namespace detail {
inline bool& inside_parallel_region() {
  thread_local bool inside = false;
  return inside;
}
}  // namespace detail

// The one thread setting (sgckpt/ckpt/threads.hpp), shared with the library's loops.
using sgckpt::num_threads;
using sgckpt::set_num_threads;

// Number of ranges parallel_for(n, ...) uses.
inline int parallel_chunks(std::int64_t n) {
  if (n <= 0) return 0;
  if (detail::inside_parallel_region()) return 1;
  return static_cast<int>(std::min<std::int64_t>(n, num_threads()));
}

template <class F>
void parallel_for(std::int64_t n, F&& f) {
  const int chunks = parallel_chunks(n);
  if (chunks == 0) return;
  auto range = [&](int t, std::int64_t& b, std::int64_t& e) {
    b = n * t / chunks;
    e = n * (t + 1) / chunks;
  };
  if (chunks == 1) {
    f(std::int64_t{0}, n, 0);
    return;
  }
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(chunks));
  workers.reserve(static_cast<std::size_t>(chunks - 1));
  for (int t = 1; t < chunks; ++t) {
    workers.emplace_back([&, t] {
      detail::inside_parallel_region() = true;
      try {
        std::int64_t b, e;
        range(t, b, e);
        f(b, e, t);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
      }
    });
  }
  detail::inside_parallel_region() = true;
  try {
    std::int64_t b, e;
    range(0, b, e);
    f(b, e, 0);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  detail::inside_parallel_region() = false;
  for (auto& w : workers) w.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
}

}  // namespace sgckpt::engine
