// sgckpt/engine/backend.hpp: the seam between the engine and a device.
//
// A Backend owns a device's memory and runs the engine's kernels on it. The modules in nn/
// never call a kernel directly: they ask backend(device) (dispatch.hpp) for the backend of
// their tensors' device and call the kernel there. The CPU backend (cpu_backend.hpp) runs the
// kernels of ops/; a device library (the CUDA backend) implements this interface and
// registers itself with register_backend(). This header includes no device headers, so code
// that only dispatches compiles without a device toolkit.
//
// The contract a device backend keeps (docs/engine.md, "The device seam"):
//  * Kernels and copies are issued in order on one stream and may run later (asynchronously);
//    the pointers they take stay valid until then (the engine keeps its tensors alive).
//  * copy_from_host() reads `src` before it returns (the host buffer may be reused at once).
//  * copy_to_host(), synchronize() and the kernels returning a value to the host
//    (cross_entropy_forward, topk_correct) wait for the work issued before them: these are
//    the host synchronizations, and the only ones. wait_copy() waits for one queued copy
//    (copy_to_host_later), not for the work issued after it. A backend may wait more where
//    the hardware leaves no choice, and says where (the CUDA backend: a copy from the host
//    larger than its 64 MiB staging buffers, or the first one that grows a staging buffer).
//  * Results are those of the CPU kernels: the element math is shared (engine/math.hpp,
//    ops/sgd.hpp), reductions may differ in order (docs/engine.md says where).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "sgckpt/core/error.hpp"
#include "sgckpt/engine/device.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"
#include "sgckpt/engine/ops/multi_tensor.hpp"

namespace sgckpt::engine {

// A multi-tensor table (ops/multi_tensor.hpp) placed where a backend's kernels read it: built
// once, then each run() is one fused update over every tensor of it, issued like a kernel.
class FusedTable {
 public:
  virtual ~FusedTable() = default;
  virtual void run(const ops::mt::FusedOp& op) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const noexcept = 0;
  virtual const char* name() const noexcept = 0;  // for messages: "cpu", "cuda (H200)", "fake"

  // ---- memory (bytes; allocate() aligns to 64 bytes and throws sgckpt::Error when full) ----
  virtual void* allocate(std::size_t nbytes) = 0;
  virtual void deallocate(void* p, std::size_t nbytes) noexcept = 0;
  virtual void copy_from_host(void* dst, const void* src, std::size_t nbytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, std::size_t nbytes) = 0;  // synchronizes
  virtual void copy(void* dst, const void* src, std::size_t nbytes) = 0;          // device to device
  virtual void fill_zero(void* dst, std::size_t nbytes) = 0;
  virtual void synchronize() = 0;

  // ---- kernels: float32, NCHW; the arguments of the CPU kernels in ops/ ----
  virtual void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                              const ops::Conv2dShape& s) = 0;
  virtual void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                               const float* w, const ops::Conv2dShape& s) = 0;
  virtual void batchnorm_forward(const ops::BatchNormForward& a) = 0;
  virtual void batchnorm_backward(const ops::BatchNormBackward& a) = 0;
  virtual void relu_forward(float* y, const float* x, std::int64_t n) = 0;
  virtual void relu_backward(float* dx, const float* dy, const float* y, std::int64_t n) = 0;
  virtual void add(float* out, const float* a, const float* b, std::int64_t n) = 0;
  virtual void global_avgpool_forward(float* y, const float* x, std::int64_t NC, std::int64_t HW) = 0;
  virtual void global_avgpool_backward(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) = 0;
  virtual void linear_forward(float* y, const float* x, const float* w, const float* b, std::int64_t N,
                              std::int64_t in, std::int64_t out) = 0;
  virtual void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                               const float* w, std::int64_t N, std::int64_t in, std::int64_t out) = 0;
  // The mean loss, returned to the host (a synchronization).
  virtual float cross_entropy_forward(float* probs, const float* logits, const std::int64_t* labels,
                                      std::int64_t N, std::int64_t C, float label_smoothing) = 0;
  virtual void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* labels,
                                      std::int64_t N, std::int64_t C, float label_smoothing, float dloss) = 0;
  // Samples whose label is among the k highest logits, returned to the host (a synchronization).
  virtual std::int64_t topk_correct(const float* logits, const std::int64_t* labels, std::int64_t N,
                                    std::int64_t C, std::int64_t k) = 0;
  // The same two results written to device memory (one float, one int64): no synchronization.
  virtual void cross_entropy_forward_to(float* loss, float* probs, const float* logits,
                                        const std::int64_t* labels, std::int64_t N, std::int64_t C,
                                        float label_smoothing) = 0;
  virtual void topk_correct_to(std::int64_t* correct, const float* logits, const std::int64_t* labels,
                               std::int64_t N, std::int64_t C, std::int64_t k) = 0;

  // ---- reading results a step late ----
  // Queues a copy of `nbytes` (at most 64) of device memory into host memory `dst` behind the
  // work issued so far and returns its ticket; `dst` holds the bytes once wait_copy(ticket)
  // returns, which waits for that copy only, not for the work issued after it. A training loop
  // reads step b's loss while the device runs step b + 1.
  virtual std::uint64_t copy_to_host_later(void* dst, const void* src, std::size_t nbytes) = 0;
  virtual void wait_copy(std::uint64_t ticket) = 0;
  virtual void sgd_step(const ops::SgdStep& a, std::size_t n) = 0;
  // A training batch gathered (cropped, flipped) from a dataset's images (ops/gather.hpp).
  virtual void gather_batch(const ops::GatherBatch& g) = 0;

  // ---- fused multi-tensor updates over this device's tensors (ops/multi_tensor.hpp) ----
  // The table's pointers must stay valid while the returned table is used.
  virtual std::unique_ptr<FusedTable> make_fused_table(const ops::mt::Table& t) = 0;
};

namespace detail {

struct BackendRegistry {
  std::mutex mutex;
  std::shared_ptr<Backend> slots[kDeviceCount];
};
inline BackendRegistry& backend_registry() {
  static BackendRegistry r;
  return r;
}

}  // namespace detail

// Makes `b` the backend of b->device(); returns the one it replaces (null if none). The CPU
// backend is built in and cannot be replaced. Tensors keep the backend that allocated them
// alive, so replacing a backend does not strand their memory.
inline std::shared_ptr<Backend> register_backend(std::shared_ptr<Backend> b) {
  if (!b) throw Error("engine: register_backend(nullptr)");
  if (b->device() == Device::CPU) throw Error("engine: the CPU backend is built in and cannot be replaced");
  auto& r = detail::backend_registry();
  std::lock_guard lock(r.mutex);
  auto& slot = r.slots[static_cast<std::size_t>(b->device())];
  std::swap(slot, b);
  return b;
}

// Removes the backend of `d` (tests restoring the state they found); returns it.
inline std::shared_ptr<Backend> unregister_backend(Device d) {
  auto& r = detail::backend_registry();
  std::lock_guard lock(r.mutex);
  return std::exchange(r.slots[static_cast<std::size_t>(d)], nullptr);
}

// The registered backend of a device other than the CPU; throws when there is none.
inline std::shared_ptr<Backend> device_backend(Device d) {
  auto& r = detail::backend_registry();
  std::shared_ptr<Backend> b;
  {
    std::lock_guard lock(r.mutex);
    b = r.slots[static_cast<std::size_t>(d)];
  }
  if (!b)
    throw Error(std::string("engine: no backend is registered for device ") + device_name(d) +
                " (this build has no CUDA backend)");
  return b;
}

}  // namespace sgckpt::engine
