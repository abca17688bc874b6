// sgckpt/core/tensor.hpp: the built-in host tensor.
//
// A Storage is a run of bytes, either owned (64-byte aligned heap memory) or a read-only
// view into memory someone else keeps alive (a memory-mapped checkpoint). A Tensor is
// torch's strided view of a storage: dtype + storage offset + shape + strides, all in
// elements. Several tensors may share one storage (views); saving keeps that sharing.
#pragma once

#include <algorithm>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/detail/huge_pages.hpp"

namespace sgckpt {

namespace detail {

// a*b and a+b on sizes, refusing overflow: hostile files lie about sizes.
inline bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}
inline bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_add_overflow(a, b, &out);
}

}  // namespace detail

// Whether elements of dtype d may be accessed as C++ type E: E is the dtype's own type
// (float for float32, std::int32_t for int32, Half, std::complex<float>, ...), or an unsigned
// integer of the same size used as the raw bits of a dtype that is not an integer (float16
// as std::uint16_t, bool or float8 as std::uint8_t). An int32 view of float32 data is not.
template <class E>
constexpr bool element_type_fits(DType d) {
  using T = std::remove_cv_t<E>;
  const bool signed_dtype = d == DType::Int8 || d == DType::Int16 || d == DType::Int32 || d == DType::Int64;
  if constexpr (std::is_same_v<T, float>)
    return d == DType::Float32;
  else if constexpr (std::is_same_v<T, double>)
    return d == DType::Float64;
  else if constexpr (std::is_same_v<T, bool>)
    return d == DType::Bool;
  else if constexpr (std::is_same_v<T, Half>)
    return d == DType::Float16;
  else if constexpr (std::is_same_v<T, BFloat16>)
    return d == DType::BFloat16;
  else if constexpr (std::is_same_v<T, std::complex<float>>)
    return d == DType::Complex64;
  else if constexpr (std::is_same_v<T, std::complex<double>>)
    return d == DType::Complex128;
  else if constexpr (std::is_same_v<T, std::byte>)
    return itemsize(d) == 1;
  else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>)
    return signed_dtype && itemsize(d) == sizeof(T);
  else if constexpr (std::is_integral_v<T>)
    return itemsize(d) == sizeof(T) && !signed_dtype;  // its own unsigned dtype, or raw bits
  else
    return false;
}

class Storage {
 public:
  // Owned, uninitialized, 64-byte aligned. `huge_pages`: memory that is filled once and kept
  // (a checkpoint being loaded): a large storage gets its own mapping advised for huge pages
  // (detail/huge_pages.hpp), whose first touch is several times cheaper. Not for buffers made
  // and freed over and over (averaging, EMA): the allocator reuses those without faulting
  // again, and a fresh mapping each time faults every time (5x slower averaging, measured).
  static std::shared_ptr<Storage> allocate(std::size_t nbytes, bool huge_pages = false) {
    auto s = std::shared_ptr<Storage>(new Storage());
    if (huge_pages && nbytes >= detail::kHugePageStorageBytes) {
      if (void* p = detail::map_huge(nbytes)) {
        s->owner_ = std::shared_ptr<void>(p, [nbytes](void* q) { detail::unmap_huge(q, nbytes); });
        s->data_ = static_cast<std::byte*>(p);
      }
    }
    if (nbytes > 0 && s->data_ == nullptr) {
      void* p = ::operator new (nbytes, std::align_val_t{64}, std::nothrow);
      if (p == nullptr)
        throw Error(ErrorKind::Limit,
                    "cannot allocate " + std::to_string(nbytes) + " bytes for a tensor storage");
      s->owner_ = std::shared_ptr<void>(p, [](void* q) { ::operator delete (q, std::align_val_t{64}); });
      s->data_ = static_cast<std::byte*>(p);
    }
    s->nbytes_ = nbytes;
    return s;
  }

  // Owned, zero-filled.
  static std::shared_ptr<Storage> zeros(std::size_t nbytes) {
    auto s = allocate(nbytes);
    if (nbytes) std::memset(s->data_, 0, nbytes);
    return s;
  }

  // Owned copy of the given bytes.
  static std::shared_ptr<Storage> copy_of(std::span<const std::byte> bytes) {
    auto s = allocate(bytes.size());
    if (!bytes.empty()) std::memcpy(s->data_, bytes.data(), bytes.size());
    return s;
  }

  // A read-only view of memory kept alive by `owner` (e.g. a file mapping).
  static std::shared_ptr<Storage> view(std::shared_ptr<const void> owner, const std::byte* data,
                                       std::size_t nbytes) {
    auto s = std::shared_ptr<Storage>(new Storage());
    s->owner_ = std::const_pointer_cast<void>(owner);
    s->data_ = const_cast<std::byte*>(data);
    s->nbytes_ = nbytes;
    s->read_only_ = true;
    return s;
  }

  // A writable view of memory that someone else owns (an engine's parameter buffer), kept
  // alive by `owner` (may be null when the caller guarantees the memory outlives the view).
  // Lets the library copy straight into a foreign tensor's memory (load_checkpoint_to_model).
  static std::shared_ptr<Storage> borrow(std::shared_ptr<void> owner, std::byte* data, std::size_t nbytes) {
    auto s = std::shared_ptr<Storage>(new Storage());
    s->owner_ = std::move(owner);
    s->data_ = data;
    s->nbytes_ = nbytes;
    s->borrowed_ = true;
    return s;
  }

  const std::byte* data() const noexcept { return data_; }
  std::byte* mutable_data() {
    if (read_only_)
      throw Error("storage is a read-only view of a memory-mapped file; clone the tensor to modify it");
    return data_;
  }
  std::size_t nbytes() const noexcept { return nbytes_; }
  bool read_only() const noexcept { return read_only_; }
  // Memory someone else owns and may change (Storage::borrow): never assumed to be a snapshot.
  bool borrowed() const noexcept { return borrowed_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, nbytes_}; }

 private:
  Storage() = default;
  std::shared_ptr<void> owner_;
  std::byte* data_ = nullptr;
  std::size_t nbytes_ = 0;
  bool read_only_ = false;
  bool borrowed_ = false;
};

using Shape = std::vector<std::int64_t>;

// "[2, 3]": the one way a shape is written in messages.
inline std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Row-major strides (in elements) of a contiguous tensor of this shape.
inline Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

// Number of elements; throws on negative dims or overflow.
inline std::uint64_t checked_numel(const Shape& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw Error("negative dimension " + std::to_string(d) + " in tensor shape");
    if (detail::mul_overflows(n, static_cast<std::uint64_t>(d), n))
      throw Error(ErrorKind::Limit, "tensor shape overflows 64 bits");
  }
  return n;
}

// Bytes of a tensor of this shape and dtype. Every Tensor is built through this check, so
// numel() and nbytes() never wrap afterwards: a view with stride 0 and a huge shape (one
// element of storage) would otherwise make numel * itemsize wrap to a small number and every
// loop bounded by nbytes() read past its buffer. torch keeps sizes in int64, so does this.
inline std::uint64_t checked_nbytes(const Shape& shape, DType dtype) {
  const std::uint64_t n = checked_numel(shape);
  std::uint64_t bytes;
  if (detail::mul_overflows(n, sgckpt::itemsize(dtype), bytes) ||
      bytes > static_cast<std::uint64_t>(INT64_MAX))
    throw Error(ErrorKind::Limit, "tensor of " + std::to_string(n) + " elements of " +
                                      std::string(name(dtype)) +
                                      " is too large: its size in bytes does not fit in 63 bits");
  return bytes;
}

class Tensor {
 public:
  Tensor() = default;

  // A new contiguous tensor; contents uninitialized.
  static Tensor empty(DType dtype, Shape shape) {
    const std::uint64_t bytes = checked_nbytes(shape, dtype);
    Tensor t;
    t.storage_ = Storage::allocate(static_cast<std::size_t>(bytes));
    t.dtype_ = dtype;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    return t;
  }

  static Tensor zeros(DType dtype, Shape shape) {
    Tensor t = empty(dtype, std::move(shape));
    if (t.nbytes()) std::memset(t.storage_->mutable_data(), 0, t.nbytes());
    return t;
  }

  // A contiguous tensor holding a copy of the given values (E must match the dtype's size).
  template <class E>
  static Tensor from_values(DType dtype, Shape shape, std::span<const E> values) {
    Tensor t = empty(dtype, std::move(shape));
    if (!element_type_fits<E>(dtype) || values.size() != t.numel())
      throw Error("from_values: element size or count does not match the dtype and shape");
    if (!values.empty()) std::memcpy(t.storage_->mutable_data(), values.data(), t.nbytes());
    return t;
  }

  // A view of an existing storage. Checks that every element lies inside the storage.
  static Tensor view_of(std::shared_ptr<Storage> storage, DType dtype, std::int64_t storage_offset,
                        Shape shape, Shape strides) {
    if (!storage) throw Error("tensor view of a null storage");
    if (shape.size() != strides.size())
      throw Error("tensor has " + std::to_string(shape.size()) + " dimensions but " +
                  std::to_string(strides.size()) + " strides");
    if (storage_offset < 0) throw Error("negative storage offset " + std::to_string(storage_offset));
    const std::uint64_t numel = checked_nbytes(shape, dtype) / sgckpt::itemsize(dtype);
    const std::uint64_t storage_numel = storage->nbytes() / sgckpt::itemsize(dtype);
    if (numel > 0) {
      // Last element reached: offset + sum((size_i - 1) * stride_i) must be < storage numel.
      std::uint64_t extent = static_cast<std::uint64_t>(storage_offset);
      for (std::size_t i = 0; i < shape.size(); ++i) {
        if (strides[i] < 0) throw Error("negative stride " + std::to_string(strides[i]));
        std::uint64_t step;
        if (detail::mul_overflows(static_cast<std::uint64_t>(shape[i] - 1),
                                  static_cast<std::uint64_t>(strides[i]), step) ||
            detail::add_overflows(extent, step, extent))
          throw Error("tensor view extent overflows 64 bits");
      }
      if (extent >= storage_numel)
        throw Error("tensor view (offset " + std::to_string(storage_offset) + ", last element " +
                    std::to_string(extent) + ") reaches outside its storage of " +
                    std::to_string(storage_numel) + " elements");
    } else {
      for (auto s : strides)
        if (s < 0) throw Error("negative stride " + std::to_string(s));
      if (static_cast<std::uint64_t>(storage_offset) > storage_numel)
        throw Error("storage offset " + std::to_string(storage_offset) +
                    " is past the end of its storage of " + std::to_string(storage_numel) + " elements");
    }
    Tensor t;
    t.storage_ = std::move(storage);
    t.dtype_ = dtype;
    t.offset_ = storage_offset;
    t.shape_ = std::move(shape);
    t.strides_ = std::move(strides);
    return t;
  }

  bool defined() const noexcept { return storage_ != nullptr; }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  const Shape& strides() const noexcept { return strides_; }
  std::int64_t storage_offset() const noexcept { return offset_; }
  std::size_t dim() const noexcept { return shape_.size(); }
  std::size_t numel() const noexcept {
    std::size_t n = 1;
    for (auto d : shape_) n *= static_cast<std::size_t>(d);
    return n;
  }
  std::size_t itemsize() const noexcept { return sgckpt::itemsize(dtype_); }
  std::size_t nbytes() const noexcept { return numel() * itemsize(); }
  const std::shared_ptr<Storage>& storage() const noexcept { return storage_; }

  bool is_contiguous() const noexcept {
    std::int64_t expected = 1;
    for (std::size_t i = shape_.size(); i-- > 0;) {
      if (shape_[i] == 1) continue;
      if (shape_[i] == 0) return true;
      if (strides_[i] != expected) return false;
      expected *= shape_[i];
    }
    return true;
  }

  // Pointer to the first element (storage data + offset). Raw: honour strides yourself.
  const std::byte* raw_data() const noexcept {
    return storage_ ? storage_->data() + static_cast<std::size_t>(offset_) * itemsize() : nullptr;
  }
  std::byte* mutable_raw_data() {
    return storage_ ? storage_->mutable_data() + static_cast<std::size_t>(offset_) * itemsize() : nullptr;
  }

  // Typed pointer to the first element of a contiguous tensor.
  template <class E>
  const E* data() const {
    check_access<E>();
    return reinterpret_cast<const E*>(raw_data());
  }
  template <class E>
  E* mutable_data() {
    check_access<E>();
    return reinterpret_cast<E*>(mutable_raw_data());
  }

  // Element at a multi-index (any layout).
  template <class E>
  E at(std::span<const std::int64_t> index) const {
    check_element_type<E>();
    if (index.size() != shape_.size()) throw Error("wrong number of indices");
    std::int64_t off = 0;
    for (std::size_t i = 0; i < index.size(); ++i) {
      if (index[i] < 0 || index[i] >= shape_[i]) throw Error("index out of range");
      off += index[i] * strides_[i];
    }
    E e;
    std::memcpy(&e, raw_data() + static_cast<std::size_t>(off) * itemsize(), sizeof(E));
    return e;
  }
  template <class E>
  E at(std::initializer_list<std::int64_t> index) const {
    return at<E>(std::span<const std::int64_t>(index.begin(), index.size()));
  }
  // The value of a 0-dim or 1-element tensor.
  template <class E>
  E item() const {
    if (numel() != 1) throw Error("item() needs a tensor with exactly one element");
    E e;
    check_element_type<E>();
    std::memcpy(&e, raw_data(), sizeof(E));
    return e;
  }

  // Element i of the row-major order as a double (complex: real part). For tests and tools.
  double element_as_double(std::size_t linear) const;

  // Calls f(pointer to element) for each element in row-major order.
  template <class F>
  void for_each_element(F&& f) const {
    const std::size_t n = numel();
    if (n == 0) return;
    const std::size_t isz = itemsize();
    if (is_contiguous()) {
      const std::byte* p = raw_data();
      for (std::size_t i = 0; i < n; ++i) f(p + i * isz);
      return;
    }
    std::vector<std::int64_t> idx(shape_.size(), 0);
    const std::byte* base = storage_->data();
    for (std::size_t k = 0; k < n; ++k) {
      std::int64_t off = offset_;
      for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides_[d];
      f(base + static_cast<std::size_t>(off) * isz);
      for (std::size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < shape_[d]) break;
        idx[d] = 0;
      }
    }
  }

  // The elements in row-major order as contiguous bytes (copies).
  std::vector<std::byte> contiguous_bytes() const {
    std::vector<std::byte> out;
    try {
      out.resize(nbytes());
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::Limit,
                  "cannot allocate " + std::to_string(nbytes()) + " bytes for a copy of a tensor");
    }
    copy_elements_to(out.data());
    return out;
  }

  // A contiguous tensor with the same elements: *this if already contiguous, else a copy.
  Tensor contiguous() const {
    if (is_contiguous() && offset_ == 0 && storage_ && storage_->nbytes() == nbytes()) return *this;
    return clone();
  }

  // A contiguous, owned, writable copy (one copy, straight into the new storage).
  Tensor clone() const {
    Tensor t = empty(dtype_, shape_);
    if (t.nbytes()) copy_elements_to(t.storage_->mutable_data());
    return t;
  }

  // Same storage, new shape (contiguous tensors only).
  Tensor reshape(Shape shape) const {
    if (checked_numel(shape) != numel()) throw Error("reshape changes the number of elements");
    if (!is_contiguous()) return contiguous().reshape(std::move(shape));
    Tensor t = *this;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    return t;
  }

  // True when both tensors have the same dtype, shape and element values (bytes), whatever
  // their layout. NaNs with equal bits compare equal. Walks the elements in place: a
  // broadcast view (stride 0) is never materialized.
  bool equal(const Tensor& o) const {
    if (dtype_ != o.dtype_ || shape_ != o.shape_) return false;
    if (numel() == 0) return true;
    if (is_contiguous() && o.is_contiguous()) return std::memcmp(raw_data(), o.raw_data(), nbytes()) == 0;
    const std::size_t isz = itemsize();
    bool same = true;
    std::vector<std::int64_t> idx(shape_.size(), 0);
    const std::byte* a = storage_->data();
    const std::byte* b = o.storage_->data();
    for (std::size_t k = 0, n = numel(); k < n && same; ++k) {
      std::int64_t oa = offset_, ob = o.offset_;
      for (std::size_t d = 0; d < idx.size(); ++d) {
        oa += idx[d] * strides_[d];
        ob += idx[d] * o.strides_[d];
      }
      same = std::memcmp(a + static_cast<std::size_t>(oa) * isz, b + static_cast<std::size_t>(ob) * isz,
                         isz) == 0;
      for (std::size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < shape_[d]) break;
        idx[d] = 0;
      }
    }
    return same;
  }

 private:
  // Writes the elements in row-major order to `out` (nbytes() bytes).
  void copy_elements_to(std::byte* out) const {
    if (nbytes() == 0) return;
    if (is_contiguous()) {
      std::memcpy(out, raw_data(), nbytes());
      return;
    }
    const std::size_t isz = itemsize();
    for_each_element([&](const std::byte* p) {
      std::memcpy(out, p, isz);
      out += isz;
    });
  }

  template <class E>
  void check_element_type() const {
    if (!element_type_fits<E>(dtype_))
      throw Error("a " + std::string(name(dtype_)) + " tensor cannot be accessed as this " +
                  std::to_string(sizeof(E)) +
                  "-byte C++ type: use its own element type, unsigned raw bits of a non-integer dtype, or "
                  "cast() to convert");
  }
  template <class E>
  void check_access() const {
    check_element_type<E>();
    if (!is_contiguous()) throw Error("typed data access needs a contiguous tensor; call contiguous()");
  }

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::Float32;
  std::int64_t offset_ = 0;
  Shape shape_;
  Shape strides_;
};

inline double Tensor::element_as_double(std::size_t linear) const {
  if (linear >= numel()) throw Error("element index out of range");
  std::vector<std::int64_t> idx(shape_.size());
  std::size_t rest = linear;
  for (std::size_t d = shape_.size(); d-- > 0;) {
    idx[d] = static_cast<std::int64_t>(rest % static_cast<std::size_t>(shape_[d]));
    rest /= static_cast<std::size_t>(shape_[d]);
  }
  std::int64_t off = offset_;
  for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides_[d];
  const std::byte* p = storage_->data() + static_cast<std::size_t>(off) * itemsize();
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (dtype_) {
    case DType::Float64:
      return load(double{});
    case DType::Float32:
      return load(float{});
    case DType::Float16:
      return half_to_float(load(std::uint16_t{}));
    case DType::BFloat16:
      return bfloat16_to_float(load(std::uint16_t{}));
    case DType::Int64:
      return static_cast<double>(load(std::int64_t{}));
    case DType::Int32:
      return load(std::int32_t{});
    case DType::Int16:
      return load(std::int16_t{});
    case DType::Int8:
      return load(std::int8_t{});
    case DType::UInt8:
      return load(std::uint8_t{});
    case DType::Bool:
      return load(std::uint8_t{}) != 0;
    case DType::Complex64:
      return load(float{});
    case DType::Complex128:
      return load(double{});
    case DType::Complex32:
      return half_to_float(load(std::uint16_t{}));
    case DType::UInt16:
      return load(std::uint16_t{});
    case DType::UInt32:
      return load(std::uint32_t{});
    case DType::UInt64:
      return static_cast<double>(load(std::uint64_t{}));
    default:
      throw Error("element_as_double does not support dtype " + std::string(name(dtype_)));
  }
}

}  // namespace sgckpt
