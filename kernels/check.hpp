// kernels/check.hpp: the one error funnel of the CUDA backend. SGCKPT_CUDA_CHECK(call) turns a
// failed CUDA runtime, cuDNN or cuBLASLt call into an sgckpt::Error that names the call, the
// file and line, and the library's name for the error; SGCKPT_CUDA_LAUNCHED(op) does the same
// for a kernel launch and, in the sync-debug mode, waits for the kernel so that an
// asynchronous fault is reported at the op that caused it.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "sgckpt/core/error.hpp"

namespace sgckpt::cuda::detail {

[[noreturn]] inline void fail(const char* library, int code, const char* name, const char* call,
                              const char* file, int line) {
  throw Error(std::string(library) + " error " + std::to_string(code) + " (" + name + ") in " + call +
              " at " + file + ":" + std::to_string(line));
}

inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // a failed call also sets the thread's last error: not the next op's to report
  fail("CUDA", static_cast<int>(e), cudaGetErrorName(e), call, file, line);
}
inline void check(cudnnStatus_t s, const char* call, const char* file, int line) {
  if (s != CUDNN_STATUS_SUCCESS) fail("cuDNN", static_cast<int>(s), cudnnGetErrorString(s), call, file, line);
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuBLASLt", static_cast<int>(s), cublasLtGetStatusName(s), call, file, line);
}

// Set from Options::sync_debug by the backend.
inline bool& sync_debug() {
  static bool on = false;
  return on;
}

inline void launched(const char* op, cudaStream_t stream, const char* file, int line) {
  check(cudaGetLastError(), op, file, line);
  if (sync_debug()) check(cudaStreamSynchronize(stream), op, file, line);
}

}  // namespace sgckpt::cuda::detail

#define SGCKPT_CUDA_CHECK(call) ::sgckpt::cuda::detail::check((call), #call, __FILE__, __LINE__)
#define SGCKPT_CUDA_LAUNCHED(op, stream) ::sgckpt::cuda::detail::launched(op, stream, __FILE__, __LINE__)
