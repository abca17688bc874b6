// sgckpt/engine/grad_mode.hpp: whether forward passes keep what backward needs.
//
// As torch.no_grad(): inside a NoGradGuard, modules do not cache their inputs, so evaluation
// of a large batch holds only the current activations. Per thread.
#pragma once

namespace sgckpt::engine {

namespace detail {
inline bool& grad_enabled_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

inline bool grad_enabled() {
  return detail::grad_enabled_flag();
}

class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_enabled()) { detail::grad_enabled_flag() = false; }
  ~NoGradGuard() { detail::grad_enabled_flag() = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace sgckpt::engine
