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
// The buffer lives on a Device: CPU memory now; CUDA is reserved for the CUDA backend, which
// will allocate device memory behind the same interface.
//
// sgckpt::tensor_traits<engine::Tensor> (end of this file) lets sgckpt::State<engine::Tensor>
// save and load engine tensors; conversions copy (a saved state is a snapshot).
#pragma once

#include <sgckpt/sgckpt.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace sgckpt::engine {

enum class Device : std::uint8_t {
  CPU,
  CUDA,  // reserved for the CUDA backend
};

inline const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

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

// Raw memory of one tensor (shared by its copies and reshapes).
class Buffer {
 public:
  Buffer(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (device != Device::CPU) throw Error("engine: the CUDA device is not available in this build");
    if (nbytes > 0) {
      data_ = ::operator new (nbytes, std::align_val_t{64}, std::nothrow);
      if (data_ == nullptr) throw Error("engine: cannot allocate " + std::to_string(nbytes) + " bytes");
    }
  }
  ~Buffer() {
    if (data_ != nullptr) ::operator delete (data_, std::align_val_t{64});
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const noexcept { return data_; }
  std::size_t nbytes() const noexcept { return nbytes_; }
  Device device() const noexcept { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_ = Device::CPU;
};

class Tensor {
 public:
  Tensor() = default;

  // A new tensor; contents uninitialized.
  static Tensor empty(Shape shape, DType dtype = DType::Float32, Device device = Device::CPU) {
    if (!engine_supports(dtype))
      throw Error("engine: unsupported dtype " + std::string(sgckpt::name(dtype)) +
                  " (float32, float16, bfloat16, int64 and uint8 are)");
    const std::uint64_t n = sgckpt::checked_numel(shape);
    Tensor t;
    t.buffer_ = std::make_shared<Buffer>(static_cast<std::size_t>(n) * sgckpt::itemsize(dtype), device);
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
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

  void* raw_data() const noexcept { return buffer_ ? buffer_->data() : nullptr; }
  // Typed pointer; E must be exactly the dtype's element type.
  template <class E>
  E* data() const {
    if (dtype_of<E>() != dtype_)
      throw Error("engine: tensor of dtype " + std::string(sgckpt::name(dtype_)) + " accessed as " +
                  std::string(sgckpt::name(dtype_of<E>())));
    return static_cast<E*>(raw_data());
  }
  // True when both share one buffer.
  bool shares_buffer_with(const Tensor& o) const noexcept { return buffer_ && buffer_ == o.buffer_; }

  // Same buffer, another shape with the same number of elements.
  Tensor reshape(Shape shape) const {
    if (sgckpt::checked_numel(shape) != numel())
      throw Error("engine: cannot reshape " + shape_text(shape_) + " to " + shape_text(shape));
    Tensor t = *this;
    t.shape_ = std::move(shape);
    return t;
  }
  // A copy with its own buffer.
  Tensor clone() const {
    if (!defined()) return {};
    Tensor t = empty(shape_, dtype_, device());
    if (nbytes()) std::memcpy(t.raw_data(), raw_data(), nbytes());
    return t;
  }
  void zero_() {
    if (nbytes()) std::memset(raw_data(), 0, nbytes());
  }
  // Copies the elements of `src` (same dtype and number of elements) into this buffer.
  void copy_(const Tensor& src) {
    if (src.dtype_ != dtype_ || src.numel() != numel())
      throw Error("engine: copy_ from " + std::string(sgckpt::name(src.dtype_)) + shape_text(src.shape_) +
                  " into " + std::string(sgckpt::name(dtype_)) + shape_text(shape_));
    if (nbytes() && raw_data() != src.raw_data()) std::memcpy(raw_data(), src.raw_data(), nbytes());
  }

  // ---- the library's host tensor ----
  // A view of this tensor's memory as a library tensor (no copy; writes go to this tensor),
  // keeping the buffer alive. What load_state_dict hands the library's load path, so that a
  // checkpoint tensor is copied once, straight into the module's buffer.
  sgckpt::Tensor host_view() const {
    if (!defined()) throw Error("engine: host_view of an undefined tensor");
    if (device() != Device::CPU) throw Error("engine: host_view of a tensor that is not in host memory");
    auto storage = sgckpt::Storage::borrow(buffer_, static_cast<std::byte*>(raw_data()), nbytes());
    return sgckpt::Tensor::view_of(std::move(storage), dtype_, 0, shape_, sgckpt::contiguous_strides(shape_));
  }
  // Copies:
  sgckpt::Tensor to_host() const {
    if (!defined()) throw Error("engine: to_host of an undefined tensor");
    sgckpt::Tensor h = sgckpt::Tensor::empty(dtype_, shape_);
    if (nbytes()) std::memcpy(h.mutable_raw_data(), raw_data(), nbytes());
    return h;
  }
  static Tensor from_host(const sgckpt::Tensor& h, Device device = Device::CPU) {
    if (!engine_supports(h.dtype()))
      throw Error("engine: cannot hold a tensor of dtype " + std::string(sgckpt::name(h.dtype())));
    Tensor t = empty(h.shape(), h.dtype(), device);
    if (t.nbytes() == 0) return t;
    if (h.is_contiguous()) {
      std::memcpy(t.raw_data(), h.raw_data(), t.nbytes());
    } else {
      const auto bytes = h.contiguous_bytes();
      std::memcpy(t.raw_data(), bytes.data(), bytes.size());
    }
    return t;
  }

 private:
  std::shared_ptr<Buffer> buffer_;
  DType dtype_ = DType::Float32;
  Shape shape_;
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
