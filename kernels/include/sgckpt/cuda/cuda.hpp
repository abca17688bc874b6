// sgckpt/cuda/cuda.hpp: the CUDA backend of the engine (static library sgckpt::cuda), seen
// from the host. No CUDA header is included here: a program that links sgckpt::cuda compiles
// with any C++20 compiler, and runs, with or without a GPU (docs/cuda.md).
//
//   auto status = sgckpt::cuda::probe();          // never throws: is there a usable device?
//   if (status.usable) sgckpt::cuda::install();    // registers the backend for Device::CUDA
//
// Every CUDA, cuDNN and cuBLASLt error becomes an sgckpt::Error naming the call, the file and
// line and the library's name for the error. With Options::sync_debug every kernel launch is
// followed by a synchronization, so an asynchronous fault names the op that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sgckpt/engine/backend.hpp"
#include "sgckpt/engine/ops/multi_tensor.hpp"

namespace sgckpt::cuda {

// What the CUDA runtime says about the machine. `error` is the runtime's code when no device
// is usable (35: cudaErrorInsufficientDriver, no driver; 100: cudaErrorNoDevice).
struct DeviceStatus {
  bool usable = false;
  int error = 0;
  std::string reason;  // empty when usable; otherwise e.g. "no CUDA driver (CUDA error 35: ...)"
  std::string name;    // "NVIDIA H200"
  int major = 0, minor = 0;
  std::size_t memory = 0;  // bytes
  int driver_version = 0, runtime_version = 0;
};
DeviceStatus probe() noexcept;

// Versions of the libraries this build links (known without a device).
std::string library_versions();

struct Options {
  int device = 0;
  bool poison = false;      // fill fresh allocations with NaN (0xFF bytes): unwritten memory shows
  bool sync_debug = false;  // synchronize after every op: an asynchronous error names its op
};

// The backend of device `o.device`; throws sgckpt::Error (with probe()'s reason) when there is
// no usable device.
std::shared_ptr<engine::Backend> make_backend(const Options& o = {});
// make_backend() registered as the backend of engine::Device::CUDA; returns it.
std::shared_ptr<engine::Backend> install(const Options& o = {});

// The fused multi-tensor kernels are the backend's make_fused_table() (engine/backend.hpp):
//   auto t = backend->make_fused_table(table);  t->run(engine::ops::mt::EmaOp{d, a});

// GradScaler.update() on the device (optim_math::scaler_update in one thread); clears *found_inf.
void scaler_update(engine::Backend& backend, float* scale, std::int64_t* tracker, std::int32_t* found_inf,
                   float growth, float backoff, std::int64_t interval);

}  // namespace sgckpt::cuda
