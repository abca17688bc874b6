// kernels/runtime.cu: what the CUDA runtime says about the machine (probe), and the versions of
// the libraries in use. Neither needs a device, and neither throws.
#include <string>

#include "check.hpp"
#include "sgckpt/cuda/cuda.hpp"

namespace sgckpt::cuda {

namespace {

std::string version_text(int v) {  // CUDA's 1000 * major + 10 * minor
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

}  // namespace

DeviceStatus probe() noexcept {
  DeviceStatus s;
  try {
    cudaRuntimeGetVersion(&s.runtime_version);
    cudaDriverGetVersion(&s.driver_version);
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      s.error = static_cast<int>(e != cudaSuccess ? e : cudaErrorNoDevice);
      const auto code = static_cast<cudaError_t>(s.error);
      const char* what = code == cudaErrorInsufficientDriver
                             ? "no CUDA driver (or one older than the runtime)"
                         : code == cudaErrorNoDevice ? "no CUDA device"
                                                     : "the CUDA runtime cannot start";
      s.reason =
          std::string(what) + " (CUDA error " + std::to_string(s.error) + ": " + cudaGetErrorName(code) + ")";
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
      return s;
    }
    cudaDeviceProp prop{};
    const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
    if (pe != cudaSuccess) {
      s.error = static_cast<int>(pe);
      s.reason = std::string("cannot read device 0's properties (CUDA error ") + std::to_string(s.error) +
                 ": " + cudaGetErrorName(pe) + ")";
      return s;
    }
    s.usable = true;
    s.name = prop.name;
    s.major = prop.major;
    s.minor = prop.minor;
    s.memory = prop.totalGlobalMem;
  } catch (...) {  // std::string allocation only
    s.usable = false;
    s.reason = "out of memory while probing the CUDA device";
  }
  return s;
}

std::string library_versions() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  const std::size_t cudnn = cudnnGetVersion();
  return "CUDA runtime " + version_text(runtime) + " (built with " + version_text(CUDART_VERSION) +
         "), driver " + (driver > 0 ? version_text(driver) : std::string("none")) + ", cuDNN " +
         std::to_string(cudnn / 10000) + "." + std::to_string(cudnn % 10000 / 100) + "." +
         std::to_string(cudnn % 100) + " (built with " + std::to_string(CUDNN_MAJOR) + "." +
         std::to_string(CUDNN_MINOR) + "), cuBLASLt " + std::to_string(cublasLtGetVersion());
}

}  // namespace sgckpt::cuda
