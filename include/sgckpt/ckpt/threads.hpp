// sgckpt/ckpt/threads.hpp: the one thread setting of the library and the engine.
//
// How many threads the library's parallel loops (ema_update, average_states) and the engine's
// ops (engine/parallel.hpp) may use: $SGCKPT_NUM_THREADS when set to a positive number, else
// the number of hardware threads; set_num_threads() changes it for the whole process (what
// train_resnet18 --threads does). A loop may use fewer (streaming work below a few MiB runs
// on one thread), never more.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

namespace sgckpt {

namespace detail {
inline int default_num_threads() {
  if (const char* env = std::getenv("SGCKPT_NUM_THREADS"); env && *env) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}
inline std::atomic<int>& num_threads_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}
}  // namespace detail

inline int num_threads() {
  return detail::num_threads_setting().load(std::memory_order_relaxed);
}
inline void set_num_threads(int n) {
  detail::num_threads_setting().store(std::max(1, n), std::memory_order_relaxed);
}

}  // namespace sgckpt
