// sgckpt/engine/device.hpp: where an engine tensor's memory lives (Device) and how its
// elements are laid out in it (MemoryFormat).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sgckpt::engine {

enum class Device : std::uint8_t {
  CPU,   // host memory; the engine's own kernels (ops/)
  CUDA,  // memory and kernels of the backend registered for it (backend.hpp)
};
inline constexpr std::size_t kDeviceCount = 2;

inline const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

// The order of a 4-D tensor's elements in its buffer; the shape is always the logical
// [N, C, H, W]. The CPU kernels take Contiguous (NCHW); ChannelsLast (NHWC) is the layout
// tensor-core convolutions prefer. Saved tensors keep it: to_host() gives torch's
// channels_last strides, as a torch tensor in that format is saved.
enum class MemoryFormat : std::uint8_t {
  Contiguous,    // row-major over the shape
  ChannelsLast,  // 4-D only: strides (H*W*C, 1, W*C, C)
};

inline const char* memory_format_name(MemoryFormat f) {
  return f == MemoryFormat::Contiguous ? "contiguous" : "channels_last";
}

}  // namespace sgckpt::engine
