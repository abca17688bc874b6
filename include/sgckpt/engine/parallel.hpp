// sgckpt/engine/parallel.hpp: how the CPU ops use several cores.
//
// parallel_for(n, f) splits [0, n) into at most num_threads() contiguous ranges and calls
// f(begin, end, thread_index) for each, the first on the calling thread, the others on the
// persistent pool's workers. The split depends only on n and num_threads(), so results are
// deterministic for a given thread count (the ops reduce per-thread partial sums in thread
// order), whichever thread runs a range. A parallel_for inside a parallel_for runs serially.
//
// The thread count is the process-wide setting of sgckpt/ckpt/threads.hpp ($SGCKPT_NUM_THREADS
// if set, else the number of hardware threads; set_num_threads() changes it), the same one
// the library's EMA and averaging loops honour.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "sgckpt/ckpt/threads.hpp"
#include "sgckpt/detail/thread_pool.hpp"

namespace sgckpt::engine {

// The one thread setting (sgckpt/ckpt/threads.hpp), shared with the library's loops.
using sgckpt::num_threads;
using sgckpt::set_num_threads;

// Number of ranges parallel_for(n, ...) uses.
inline int parallel_chunks(std::int64_t n) {
  if (n <= 0) return 0;
  if (sgckpt::detail::ThreadPool::inside()) return 1;
  return static_cast<int>(std::min<std::int64_t>(n, num_threads()));
}

// Chunk t is [n * t / chunks, n * (t + 1) / chunks), run by the persistent pool
// (sgckpt/detail/thread_pool.hpp): chunk 0 on the calling thread.
template <class F>
void parallel_for(std::int64_t n, F&& f) {
  const int chunks = parallel_chunks(n);
  if (chunks == 0) return;
  if (chunks == 1) {
    f(std::int64_t{0}, n, 0);
    return;
  }
  sgckpt::detail::thread_pool().run(static_cast<std::size_t>(chunks), [&](std::size_t part) {
    const auto t = static_cast<std::int64_t>(part);
    f(n * t / chunks, n * (t + 1) / chunks, static_cast<int>(part));
  });
}

}  // namespace sgckpt::engine
