// sgckpt/engine/tensor.hpp: the engine's tensor, and its adapter to sgckpt::State.
//
// An engine tensor is deliberately simple: a dtype, a shape and one contiguous, 64-byte
// aligned buffer (row-major, no strides, no offsets). Copying a Tensor shares the buffer,
// as torch tensors do; clone() copies the data. Views that only change the shape
// (reshape) share the buffer too.
//
// The engine computes in float32. float16 / bfloat16 (mixed precision later), int64
// (labels, num_batches_tracked) and uint8 (images) exist for storage and conversion.
//
// The buffer lives on a Device (device.hpp): host memory, or the memory of the backend
// registered for the device (backend.hpp), which allocates, copies and frees it. Host code
// reads elements only of CPU tensors (data<E>()); data_ptr<E>() is the pointer handed to the
// kernels of the tensor's device. to(device) copies between devices. A 4-D tensor may also be
// laid out channels-last (MemoryFormat); the shape stays [N, C, H, W].
//
// sgckpt::tensor_traits<engine::Tensor> (end of this file) lets sgckpt::State<engine::Tensor>
// save and load engine tensors; conversions copy (a saved state is a snapshot).
#pragma once

#include <sgckpt/sgckpt.hpp>

#include "sgckpt/engine/backend.hpp"
#include "sgckpt/engine/device.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace sgckpt::engine {

using sgckpt::DType;
using Shape = std::vector<std::int64_t>;

// The dtypes an engine tensor can hold.
inline bool engine_supports(DType d) {
  return d == DType::Float32 || d == DType::Float16 || d == DType::BFloat16 || d == DType::Int64 ||
         d == DType::UInt8;
}

// The dtype of a C++ element type (float, std::int64_t, std::uint8_t, sgckpt::Half,
// sgckpt::BFloat16).
template <class E>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<E, float>)
    return DType::Float32;
  else if constexpr (std::is_same_v<E, std::int64_t>)
    return DType::Int64;
  else if constexpr (std::is_same_v<E, std::uint8_t>)
    return DType::UInt8;
  else if constexpr (std::is_same_v<E, sgckpt::Half>)
    return DType::Float16;
  else if constexpr (std::is_same_v<E, sgckpt::BFloat16>)
    return DType::BFloat16;
  else
    static_assert(sizeof(E) == 0, "not an engine element type");
}

using sgckpt::shape_text;

// Raw memory of one tensor (shared by its copies and reshapes): host memory for the CPU,
// else memory of the device's backend, which the buffer keeps alive until it is freed.
class Buffer {
 public:
  Buffer(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (device != Device::CPU) backend_ = device_backend(device);
    if (nbytes == 0) return;
    if (backend_) {
      data_ = backend_->allocate(nbytes);
    } else {
      data_ = ::operator new (nbytes, std::align_val_t{64}, std::nothrow);
      if (data_ == nullptr) throw Error("engine: cannot allocate " + std::to_string(nbytes) + " bytes");
    }
  }
  ~Buffer() {
    if (data_ == nullptr) return;
    if (backend_)
      backend_->deallocate(data_, nbytes_);
    else
      ::operator delete (data_, std::align_val_t{64});
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const noexcept { return data_; }
  std::size_t nbytes() const noexcept { return nbytes_; }
  Device device() const noexcept { return device_; }
  // The device's backend; null for host memory.
  Backend* backend() const noexcept { return backend_.get(); }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_ = Device::CPU;
  std::shared_ptr<Backend> backend_;
};

// Copies n bytes from memory of backend `sb` to memory of backend `db` (null: host memory),
// through the host when they are two different devices.
inline void copy_bytes(void* dst, Backend* db, const void* src, Backend* sb, std::size_t n) {
  if (n == 0 || (dst == src && db == sb)) return;
  if (db == nullptr) {  // into host memory
    if (sb == nullptr)
      std::memcpy(dst, src, n);
    else
      sb->copy_to_host(dst, src, n);
  } else if (sb == nullptr) {  // from host memory
    db->copy_from_host(dst, src, n);
  } else if (db == sb) {
    db->copy(dst, src, n);
  } else {
    std::vector<std::byte> staging(n);
    sb->copy_to_host(staging.data(), src, n);
    db->copy_from_host(dst, staging.data(), n);
  }
}

class Tensor {
 public:
  Tensor() = default;

  // A new tensor; contents uninitialized.
  static Tensor empty(Shape shape, DType dtype = DType::Float32, Device device = Device::CPU,
                      MemoryFormat format = MemoryFormat::Contiguous) {
    if (!engine_supports(dtype))
      throw Error("engine: unsupported dtype " + std::string(sgckpt::name(dtype)) +
                  " (float32, float16, bfloat16, int64 and uint8 are)");
    if (format == MemoryFormat::ChannelsLast && shape.size() != 4)
      throw Error("engine: channels_last needs a 4-D tensor, not " + shape_text(shape));
    const std::uint64_t n = sgckpt::checked_numel(shape);
    Tensor t;
    t.buffer_ = std::make_shared<Buffer>(static_cast<std::size_t>(n) * sgckpt::itemsize(dtype), device);
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.format_ = format;
    return t;
  }
  static Tensor zeros(Shape shape, DType dtype = DType::Float32, Device device = Device::CPU) {
    Tensor t = empty(std::move(shape), dtype, device);
    t.zero_();
    return t;
  }
  // A float32 tensor filled with `value`.
  static Tensor full(Shape shape, float value) {
    Tensor t = empty(std::move(shape), DType::Float32);
    float* p = t.data<float>();
    for (std::size_t i = 0; i < t.numel(); ++i) p[i] = value;
    return t;
  }
  // A tensor holding a copy of `values` (its element type gives the dtype).
  template <class E>
  static Tensor from_vector(Shape shape, const std::vector<E>& values) {
    Tensor t = empty(std::move(shape), dtype_of<E>());
    if (values.size() != t.numel())
      throw Error("engine: " + std::to_string(values.size()) + " values for shape " + shape_text(t.shape_));
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), t.nbytes());
    return t;
  }
  // A 0-dim int64 tensor (num_batches_tracked).
  static Tensor scalar_int64(std::int64_t v) {
    Tensor t = empty({}, DType::Int64);
    *t.data<std::int64_t>() = v;
    return t;
  }

  bool defined() const noexcept { return buffer_ != nullptr; }
  DType dtype() const noexcept { return dtype_; }
  Device device() const noexcept { return buffer_ ? buffer_->device() : Device::CPU; }
  MemoryFormat memory_format() const noexcept { return format_; }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t dim() const noexcept { return shape_.size(); }
  // Size of dimension d; negative d counts from the end.
  std::int64_t size(int d) const {
    const int n = static_cast<int>(shape_.size());
    if (d < 0) d += n;
    if (d < 0 || d >= n) throw Error("engine: dimension " + std::to_string(d) + " out of range");
    return shape_[static_cast<std::size_t>(d)];
  }
  std::size_t numel() const noexcept {
    std::size_t n = 1;
    for (auto d : shape_) n *= static_cast<std::size_t>(d);
    return n;
  }
  std::size_t itemsize() const noexcept { return sgckpt::itemsize(dtype_); }
  std::size_t nbytes() const noexcept { return numel() * itemsize(); }

  // The buffer's address on its device (not readable by the host unless the device is the CPU).
  void* raw_data() const noexcept { return buffer_ ? buffer_->data() : nullptr; }
  // Typed pointer for the host: the tensor must be in host memory and E exactly its element type.
  template <class E>
  E* data() const {
    if (device() != Device::CPU)
      throw Error(std::string("engine: host access to a tensor on ") + device_name(device()) +
                  " (copy it with to(Device::CPU))");
    return data_ptr<E>();
  }
  // Typed pointer on the tensor's device: what the device's kernels take.
  template <class E>
  E* data_ptr() const {
    if (dtype_of<E>() != dtype_)
      throw Error("engine: tensor of dtype " + std::string(sgckpt::name(dtype_)) + " accessed as " +
                  std::string(sgckpt::name(dtype_of<E>())));
    return static_cast<E*>(raw_data());
  }
  // True when both share one buffer.
  bool shares_buffer_with(const Tensor& o) const noexcept { return buffer_ && buffer_ == o.buffer_; }

  // Same buffer, another shape with the same number of elements (contiguous tensors only).
  Tensor reshape(Shape shape) const {
    if (sgckpt::checked_numel(shape) != numel())
      throw Error("engine: cannot reshape " + shape_text(shape_) + " to " + shape_text(shape));
    if (format_ != MemoryFormat::Contiguous) throw Error("engine: reshape of a channels_last tensor");
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
  }
  // A copy with its own buffer, on the same device and in the same format.
  Tensor clone() const {
    if (!defined()) return {};
    Tensor t = empty(shape_, dtype_, device(), format_);
    copy_bytes(t.raw_data(), t.buffer_->backend(), raw_data(), buffer_->backend(), nbytes());
    return t;
  }
  // This tensor on `device` (itself when it is there already).
  Tensor to(Device device) const {
    if (!defined() || device == this->device()) return *this;
    Tensor t = empty(shape_, dtype_, device, format_);
    copy_bytes(t.raw_data(), t.buffer_->backend(), raw_data(), buffer_->backend(), nbytes());
    return t;
  }
  // This tensor in `format` (itself when it is in it already); the layout changes through
  // the host.
  Tensor to(MemoryFormat format) const {
    if (!defined() || format == format_) return *this;
    Tensor host = to(Device::CPU);
    Tensor t = empty(shape_, dtype_, Device::CPU, format);
    permute_layout(static_cast<std::byte*>(t.raw_data()), static_cast<const std::byte*>(host.raw_data()),
                   shape_, itemsize(), format_ == MemoryFormat::Contiguous);
    return t.to(device());
  }
  void zero_() {
    if (nbytes() == 0) return;
    if (Backend* b = buffer_->backend())
      b->fill_zero(raw_data(), nbytes());
    else
      std::memset(raw_data(), 0, nbytes());
  }
  // Copies the elements of `src` (same dtype, number of elements and format; any device)
  // into this buffer.
  void copy_(const Tensor& src) {
    if (src.dtype_ != dtype_ || src.numel() != numel() || src.format_ != format_)
      throw Error("engine: copy_ from " + std::string(sgckpt::name(src.dtype_)) + shape_text(src.shape_) +
                  " into " + std::string(sgckpt::name(dtype_)) + shape_text(shape_));
    if (nbytes())
      copy_bytes(raw_data(), buffer_->backend(), src.raw_data(), src.buffer_->backend(), nbytes());
  }

  // ---- the library's host tensor ----
  // A view of this tensor's memory as a library tensor (no copy; writes go to this tensor),
  // keeping the buffer alive. What load_state_dict hands the library's load path, so that a
  // checkpoint tensor is copied once, straight into the module's buffer. Host memory only.
  sgckpt::Tensor host_view() const {
    if (!defined()) throw Error("engine: host_view of an undefined tensor");
    if (device() != Device::CPU)
      throw Error(std::string("engine: host_view of a tensor on ") + device_name(device()));
    auto storage = sgckpt::Storage::borrow(buffer_, static_cast<std::byte*>(raw_data()), nbytes());
    return sgckpt::Tensor::view_of(std::move(storage), dtype_, 0, shape_, library_strides());
  }
  // Copies (a synchronization for device tensors). A channels_last tensor keeps its layout:
  // the host tensor has torch's channels_last strides.
  sgckpt::Tensor to_host() const {
    if (!defined()) throw Error("engine: to_host of an undefined tensor");
    auto storage = sgckpt::Storage::allocate(nbytes());
    if (nbytes()) copy_bytes(storage->mutable_data(), nullptr, raw_data(), buffer_->backend(), nbytes());
    return sgckpt::Tensor::view_of(std::move(storage), dtype_, 0, shape_, library_strides());
  }
  // A contiguous tensor on `device` holding the elements of `h` (any strides).
  static Tensor from_host(const sgckpt::Tensor& h, Device device = Device::CPU) {
    if (!engine_supports(h.dtype()))
      throw Error("engine: cannot hold a tensor of dtype " + std::string(sgckpt::name(h.dtype())));
    Tensor t = empty(h.shape(), h.dtype(), device);
    if (t.nbytes() == 0) return t;
    if (h.is_contiguous()) {
      copy_bytes(t.raw_data(), t.buffer_->backend(), h.raw_data(), nullptr, t.nbytes());
    } else {
      const auto bytes = h.contiguous_bytes();
      copy_bytes(t.raw_data(), t.buffer_->backend(), bytes.data(), nullptr, bytes.size());
    }
    return t;
  }

 private:
  sgckpt::Shape library_strides() const {
    if (format_ == MemoryFormat::Contiguous) return sgckpt::contiguous_strides(shape_);
    const std::int64_t C = shape_[1], H = shape_[2], W = shape_[3];
    return {H * W * C, 1, W * C, C};
  }
  // NCHW <-> NHWC of a [N, C, H, W] tensor's bytes.
  static void permute_layout(std::byte* dst, const std::byte* src, const Shape& s, std::size_t isz,
                             bool to_channels_last) {
    const auto N = static_cast<std::size_t>(s[0]), C = static_cast<std::size_t>(s[1]);
    const auto HW = static_cast<std::size_t>(s[2] * s[3]);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t p = 0; p < HW; ++p) {
          const std::size_t nchw = (n * C + c) * HW + p, nhwc = (n * HW + p) * C + c;
          std::memcpy(dst + (to_channels_last ? nhwc : nchw) * isz,
                      src + (to_channels_last ? nchw : nhwc) * isz, isz);
        }
  }

  std::shared_ptr<Buffer> buffer_;
  DType dtype_ = DType::Float32;
  Shape shape_;
  MemoryFormat format_ = MemoryFormat::Contiguous;
};

}  // namespace sgckpt::engine

// sgckpt::State<sgckpt::engine::Tensor> works through this adapter.
template <>
struct sgckpt::tensor_traits<sgckpt::engine::Tensor> {
  static sgckpt::Tensor to_host(const sgckpt::engine::Tensor& t) { return t.to_host(); }
  static sgckpt::engine::Tensor from_host(const sgckpt::Tensor& t) {
    return sgckpt::engine::Tensor::from_host(t);
  }
};
