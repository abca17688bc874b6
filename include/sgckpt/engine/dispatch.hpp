// sgckpt/engine/dispatch.hpp: the CPU backend (the kernels of ops/ behind the Backend
// interface) and backend(device), which every op in nn/ calls to reach the kernels of its
// tensors' device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "sgckpt/engine/backend.hpp"
#include "sgckpt/engine/ops/activation.hpp"
#include "sgckpt/engine/ops/batchnorm_act.hpp"
#include "sgckpt/engine/ops/conv2d.hpp"
#include "sgckpt/engine/ops/elementwise.hpp"
#include "sgckpt/engine/ops/gather.hpp"
#include "sgckpt/engine/ops/linear.hpp"
#include "sgckpt/engine/ops/loss.hpp"
#include "sgckpt/engine/ops/metrics.hpp"
#include "sgckpt/engine/ops/pool.hpp"
#include "sgckpt/engine/ops/sgd.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine {

// The engine's reference backend: synchronous, host memory, the kernels of ops/.
class CpuBackend final : public Backend {
 public:
  Device device() const noexcept override { return Device::CPU; }
  const char* name() const noexcept override { return "cpu"; }

  void* allocate(std::size_t nbytes) override {
    void* p = ::operator new (nbytes, std::align_val_t{64}, std::nothrow);
    if (p == nullptr) throw Error("engine: cannot allocate " + std::to_string(nbytes) + " bytes");
    return p;
  }
  void deallocate(void* p, std::size_t) noexcept override { ::operator delete (p, std::align_val_t{64}); }
  void copy_from_host(void* dst, const void* src, std::size_t n) override { copy(dst, src, n); }
  void copy_to_host(void* dst, const void* src, std::size_t n) override { copy(dst, src, n); }
  void copy(void* dst, const void* src, std::size_t n) override {
    if (n > 0 && dst != src) std::memcpy(dst, src, n);
  }
  void fill_zero(void* dst, std::size_t n) override {
    if (n > 0) std::memset(dst, 0, n);
  }
  void synchronize() override {}

  void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                      const ops::Conv2dShape& s) override {
    ops::conv2d_forward(y, x, w, b, s);
  }
  void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const ops::Conv2dShape& s) override {
    ops::conv2d_backward(dx, dw, db, dy, x, w, s);
  }
  void batchnorm_forward(const ops::BatchNormForward& a) override { ops::batchnorm_act_forward(a); }
  void batchnorm_backward(const ops::BatchNormBackward& a) override { ops::batchnorm_act_backward(a); }
  void relu_forward(float* y, const float* x, std::int64_t n) override { ops::relu_forward(y, x, n); }
  void relu_backward(float* dx, const float* dy, const float* y, std::int64_t n) override {
    ops::relu_backward(dx, dy, y, n);
  }
  void add(float* out, const float* a, const float* b, std::int64_t n) override {
    ops::add_forward(out, a, b, n);
  }
  void global_avgpool_forward(float* y, const float* x, std::int64_t NC, std::int64_t HW) override {
    ops::global_avgpool_forward(y, x, NC, HW);
  }
  void global_avgpool_backward(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) override {
    ops::global_avgpool_backward(dx, dy, NC, HW);
  }
  void linear_forward(float* y, const float* x, const float* w, const float* b, std::int64_t N,
                      std::int64_t in, std::int64_t out) override {
    ops::linear_forward(y, x, w, b, N, in, out);
  }
  void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       std::int64_t N, std::int64_t in, std::int64_t out) override {
    ops::linear_backward(dx, dw, db, dy, x, w, N, in, out);
  }
  float cross_entropy_forward(float* probs, const float* logits, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing) override {
    return ops::cross_entropy_forward(probs, logits, labels, N, C, label_smoothing);
  }
  void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing, float dloss) override {
    ops::cross_entropy_backward(dlogits, probs, labels, N, C, label_smoothing, dloss);
  }
  std::int64_t topk_correct(const float* logits, const std::int64_t* labels, std::int64_t N, std::int64_t C,
                            std::int64_t k) override {
    return ops::topk_correct(logits, labels, N, C, k);
  }
  void cross_entropy_forward_to(float* loss, float* probs, const float* logits, const std::int64_t* labels,
                                std::int64_t N, std::int64_t C, float label_smoothing) override {
    *loss = ops::cross_entropy_forward(probs, logits, labels, N, C, label_smoothing);
  }
  void topk_correct_to(std::int64_t* correct, const float* logits, const std::int64_t* labels, std::int64_t N,
                       std::int64_t C, std::int64_t k) override {
    *correct = ops::topk_correct(logits, labels, N, C, k);
  }
  std::uint64_t copy_to_host_later(void* dst, const void* src, std::size_t n) override {
    copy(dst, src, n);
    return 0;
  }
  void wait_copy(std::uint64_t) override {}
  void sgd_step(const ops::SgdStep& a, std::size_t n) override { ops::sgd_step(a, n); }
  void gather_batch(const ops::GatherBatch& g) override { ops::gather_batch(g); }
  // The CPU runs the kernels' emulation: the same bits as the device (and as the CPU loops).
  std::unique_ptr<FusedTable> make_fused_table(const ops::mt::Table& t) override {
    struct Emulated final : FusedTable {
      explicit Emulated(ops::mt::Table table) : t(std::move(table)) {}
      void run(const ops::mt::FusedOp& op) override { ops::mt::run_emulated(t, op); }
      ops::mt::Table t;
    };
    return std::make_unique<Emulated>(t);
  }
};

// The backend of a device: the built-in CPU backend, or the one registered for the device.
inline Backend& backend(Device d) {
  static CpuBackend cpu;
  if (d == Device::CPU) return cpu;
  // Registered backends live as long as the tensors they allocated (which hold a reference)
  // and, for kernels, as long as the registration: a backend is not unregistered while its
  // tensors still compute.
  return *device_backend(d);
}

// The backend of the tensors an op works on, which must all be on one device (undefined
// tensors, e.g. a missing bias, are skipped).
inline Backend& backend_for(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) {
      first = t;
    } else if (t->device() != first->device()) {
      throw Error(std::string(op) + ": tensors on " + device_name(first->device()) + " and " +
                  device_name(t->device()) + " (move the model and its inputs to one device with to())");
    }
    if (t->memory_format() != MemoryFormat::Contiguous)
      throw Error(std::string(op) + ": expected contiguous (NCHW) tensors, got one in " +
                  memory_format_name(t->memory_format()) +
                  " format (convert it with to(MemoryFormat::Contiguous))");
  }
  return backend(first != nullptr ? first->device() : Device::CPU);
}

}  // namespace sgckpt::engine
