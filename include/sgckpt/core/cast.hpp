// sgckpt/core/cast.hpp: dtype conversion of host tensors, element by element as torch's
// Tensor.to(dtype) and copy_ convert on the CPU (docs/casting.md).
//
//   Tensor h = cast(t, DType::Float16);   // a new contiguous tensor
//   copy_into(model_weight, checkpoint_weight);   // converts into dst's dtype and layout
//
// The rules are torch's: floats to integers truncate (out of range and NaN give what x86's
// cvttsd2si gives, as torch on x86 does), integers to floats round once, complex to real drops
// the imaginary part, anything to bool is "!= 0". float8 values are encoded with
// round-to-nearest-even; a value past the largest finite one becomes inf (e5m2) or NaN (the
// formats without inf), -0 becomes +0 in the fnuz formats; a double is rounded to float first,
// as torch does. Casting INTO float8_e8m0fnu is refused: its rounding could not be checked
// against a torch here (reading it is exact).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/tensor.hpp"

namespace sgckpt {

// Whether cast() and copy_into() can convert `from` to `to`.
constexpr bool can_cast(DType from, DType to) {
  return from == to || to != DType::Float8_e8m0fnu;
}

namespace detail {

// ---- float8 ------------------------------------------------------------------------------------

struct Float8Format {
  int exp_bits;
  int man_bits;
  int bias;
  bool has_inf;  // e5m2: exponent all ones and mantissa 0 is inf
  bool fnuz;     // no -0 and no inf; the one NaN is 0x80
  double max_finite;
};

constexpr Float8Format float8_format(DType d) {
  switch (d) {
    case DType::Float8_e4m3fn:
      return {4, 3, 7, false, false, 448.0};
    case DType::Float8_e5m2:
      return {5, 2, 15, true, false, 57344.0};
    case DType::Float8_e4m3fnuz:
      return {4, 3, 8, false, true, 240.0};
    case DType::Float8_e5m2fnuz:
      return {5, 2, 16, false, true, 57344.0};
    default:  // Float8_e8m0fnu: exponent only, unsigned (handled apart)
      return {8, 0, 127, false, false, 0x1p127};
  }
}

constexpr bool is_float8(DType d) {
  return d == DType::Float8_e4m3fn || d == DType::Float8_e5m2 || d == DType::Float8_e4m3fnuz ||
         d == DType::Float8_e5m2fnuz || d == DType::Float8_e8m0fnu;
}

inline float float8_to_float(DType d, std::uint8_t bits) {
  if (d == DType::Float8_e8m0fnu)
    return bits == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int{bits} - 127);
  const Float8Format f = float8_format(d);
  const bool negative = bits & 0x80;
  const int e = (bits >> f.man_bits) & ((1 << f.exp_bits) - 1);
  const int m = bits & ((1 << f.man_bits) - 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (f.fnuz && bits == 0x80) return nan;
  if (!f.fnuz && e == (1 << f.exp_bits) - 1) {
    if (f.has_inf) return m == 0 ? (negative ? -INFINITY : INFINITY) : nan;
    if (m == (1 << f.man_bits) - 1) return nan;  // e4m3fn: only S.1111.111 is NaN
  }
  const double mag = e == 0 ? std::ldexp(double(m), 1 - f.bias - f.man_bits)
                            : std::ldexp(double(m + (1 << f.man_bits)), e - f.bias - f.man_bits);
  return static_cast<float>(negative ? -mag : mag);
}

inline std::uint8_t float_to_float8(DType d, float x) {
  if (d == DType::Float8_e8m0fnu)
    throw Error(ErrorKind::Refused, "casting into float8_e8m0fnu is not supported");
  const Float8Format f = float8_format(d);
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const std::uint8_t nan = f.fnuz ? 0x80 : static_cast<std::uint8_t>(sign | 0x7F);
  if (std::isnan(x)) return nan;
  const std::uint8_t overflow =
      f.has_inf ? static_cast<std::uint8_t>(sign | (((1 << f.exp_bits) - 1) << f.man_bits)) : nan;
  const double a = std::fabs(static_cast<double>(x));
  if (std::isinf(a)) return overflow;
  // Round |x| to the format's grid (round to nearest, ties to even): the spacing is that of
  // x's binade, or the subnormal spacing below the smallest normal.
  const int emin = 1 - f.bias;
  const int binade = a >= std::ldexp(1.0, emin) ? std::ilogb(a) : emin;
  const double quantum = std::ldexp(1.0, binade - f.man_bits);
  const double r = std::nearbyint(a / quantum) * quantum;
  if (r > f.max_finite) return overflow;
  if (r == 0) return f.fnuz ? 0 : sign;
  int e = 0;
  double m = r / std::ldexp(1.0, emin - f.man_bits);  // subnormal mantissa
  if (r >= std::ldexp(1.0, emin)) {
    const int k = std::ilogb(r);
    e = k + f.bias;
    m = r / std::ldexp(1.0, k - f.man_bits) - (1 << f.man_bits);
  }
  const auto bits = static_cast<std::uint8_t>((e << f.man_bits) | static_cast<int>(m));
  return f.fnuz ? static_cast<std::uint8_t>(bits | (sign && bits ? 0x80 : 0))
                : static_cast<std::uint8_t>(bits | sign);
}

// ---- one element ---------------------------------------------------------------------------------

// An element on its way from one dtype to another: a double (floats, the real part of a
// complex), int64 or uint64 (uint64 above INT64_MAX stays exact).
struct Num {
  enum Kind { Float, Int, UInt, Complex } kind = Float;
  double re = 0, im = 0;
  std::int64_t i = 0;
  std::uint64_t u = 0;
};

template <class V>
V load_as(const std::byte* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Num int_num(std::int64_t i) {
  return {Num::Int, 0, 0, i, 0};
}
inline Num float_num(double d) {
  return {Num::Float, d, 0, 0, 0};
}
inline Num complex_num(double re, double im) {
  return {Num::Complex, re, im, 0, 0};
}

inline Num read_num(DType d, const std::byte* p) {
  if (is_float8(d)) return float_num(float8_to_float(d, load_as<std::uint8_t>(p)));
  switch (d) {
    case DType::Float64:
      return float_num(load_as<double>(p));
    case DType::Float32:
      return float_num(load_as<float>(p));
    case DType::Float16:
      return float_num(half_to_float(load_as<std::uint16_t>(p)));
    case DType::BFloat16:
      return float_num(bfloat16_to_float(load_as<std::uint16_t>(p)));
    case DType::Int64:
      return int_num(load_as<std::int64_t>(p));
    case DType::Int32:
      return int_num(load_as<std::int32_t>(p));
    case DType::Int16:
      return int_num(load_as<std::int16_t>(p));
    case DType::Int8:
      return int_num(load_as<std::int8_t>(p));
    case DType::UInt8:
      return int_num(load_as<std::uint8_t>(p));
    case DType::Bool:
      return int_num(load_as<std::uint8_t>(p) != 0);
    case DType::UInt16:
      return int_num(load_as<std::uint16_t>(p));
    case DType::UInt32:
      return int_num(load_as<std::uint32_t>(p));
    case DType::UInt64: {
      Num n;
      n.kind = Num::UInt, n.u = load_as<std::uint64_t>(p);
      return n;
    }
    case DType::Complex32:
      return complex_num(half_to_float(load_as<std::uint16_t>(p)),
                         half_to_float(load_as<std::uint16_t>(p + 2)));
    case DType::Complex64:
      return complex_num(load_as<float>(p), load_as<float>(p + 4));
    case DType::Complex128:
      return complex_num(load_as<double>(p), load_as<double>(p + 8));
    default:
      // Every dtype is a case above; this is an invalid enum value.
      throw Error("no conversion from dtype number " + std::to_string(static_cast<int>(d)));
  }
}

// Float to integer as x86's cvttsd2si: truncation, out-of-range and NaN -> INT64_MIN (C++
// leaves it undefined; torch inherits whatever the CPU does).
inline std::int64_t float_to_int64(double x) {
  if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0))
    return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(x);
}

template <class F>
F num_to_float(const Num& n) {
  switch (n.kind) {
    case Num::Int:
      return static_cast<F>(n.i);  // one rounding, as static_cast<float>(int64)
    case Num::UInt:
      return static_cast<F>(n.u);
    default:
      return static_cast<F>(n.re);  // complex -> real part (torch warns and drops imag)
  }
}

inline std::int64_t num_to_int(const Num& n) {
  switch (n.kind) {
    case Num::Int:
      return n.i;
    case Num::UInt:
      return static_cast<std::int64_t>(n.u);
    default:
      return float_to_int64(n.re);
  }
}

inline void write_num(DType d, std::byte* p, const Num& n) {
  auto st = [p](auto v) { std::memcpy(p, &v, sizeof(v)); };
  const double im = n.kind == Num::Complex ? n.im : 0.0;
  if (is_float8(d)) return st(float_to_float8(d, num_to_float<float>(n)));
  switch (d) {
    case DType::Float64:
      return st(num_to_float<double>(n));
    case DType::Float32:
      return st(num_to_float<float>(n));
    case DType::Float16:
      return st(float_to_half(num_to_float<float>(n)));
    case DType::BFloat16:
      return st(float_to_bfloat16(num_to_float<float>(n)));
    case DType::Int64:
      return st(num_to_int(n));
    case DType::Int32:
      return st(static_cast<std::int32_t>(num_to_int(n)));
    case DType::Int16:
      return st(static_cast<std::int16_t>(num_to_int(n)));
    case DType::Int8:
      return st(static_cast<std::int8_t>(num_to_int(n)));
    case DType::UInt8:
      return st(static_cast<std::uint8_t>(num_to_int(n)));
    case DType::UInt16:
      return st(static_cast<std::uint16_t>(num_to_int(n)));
    case DType::UInt32:
      return st(static_cast<std::uint32_t>(num_to_int(n)));
    case DType::UInt64:
      return st(n.kind == Num::UInt ? n.u : static_cast<std::uint64_t>(num_to_int(n)));
    case DType::Bool: {
      const bool b = n.kind == Num::Int ? n.i != 0 : n.kind == Num::UInt ? n.u != 0 : (n.re != 0 || im != 0);
      return st(static_cast<std::uint8_t>(b));
    }
    case DType::Complex32: {
      const std::uint16_t c[2] = {float_to_half(num_to_float<float>(n)),
                                  float_to_half(static_cast<float>(im))};
      std::memcpy(p, c, sizeof c);
      return;
    }
    case DType::Complex64: {
      const float c[2] = {num_to_float<float>(n), static_cast<float>(im)};
      std::memcpy(p, c, sizeof c);
      return;
    }
    case DType::Complex128: {
      const double c[2] = {num_to_float<double>(n), im};
      std::memcpy(p, c, sizeof c);
      return;
    }
    default:
      throw Error("no conversion to dtype number " + std::to_string(static_cast<int>(d)));
  }
}

// Writes src's elements, converted to `to`, in row-major order to `out` (room for numel items).
inline void convert_elements(std::byte* out, DType to, const Tensor& src) {
  const std::size_t osz = itemsize(to);
  const DType from = src.dtype();
  src.for_each_element([&](const std::byte* p) {
    write_num(to, out, read_num(from, p));
    out += osz;
  });
}

// The elements of `src` in row-major order, as contiguous bytes of dtype `to`.
inline std::vector<std::byte> converted_bytes(const Tensor& src, DType to) {
  if (src.dtype() == to) return src.contiguous_bytes();
  if (!can_cast(src.dtype(), to))
    throw Error("cannot cast " + std::string(name(src.dtype())) + " to " + std::string(name(to)));
  std::vector<std::byte> out(src.numel() * itemsize(to));
  convert_elements(out.data(), to, src);
  return out;
}

// dst (any layout) <- row-major contiguous bytes of dst's dtype.
inline void scatter_into(Tensor& dst, const std::vector<std::byte>& bytes) {
  if (bytes.empty()) return;
  if (dst.is_contiguous()) {
    std::memmove(dst.mutable_raw_data(), bytes.data(), bytes.size());
    return;
  }
  std::byte* base = dst.storage()->mutable_data();
  const std::size_t isz = dst.itemsize();
  std::vector<std::int64_t> idx(dst.dim(), 0);
  for (std::size_t k = 0; k < dst.numel(); ++k) {
    std::int64_t off = dst.storage_offset();
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * dst.strides()[d];
    std::memcpy(base + static_cast<std::size_t>(off) * isz, bytes.data() + k * isz, isz);
    for (std::size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < dst.shape()[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace detail

// A new contiguous tensor with src's elements converted to `to` (src.to(to) in torch).
inline Tensor cast(const Tensor& src, DType to) {
  Tensor out = Tensor::empty(to, src.shape());
  detail::scatter_into(out, detail::converted_bytes(src, to));
  return out;
}

namespace detail {

// Whether the storages behind a and b share any byte (conservative: whole storages compared).
inline bool storages_overlap(const Tensor& a, const Tensor& b) noexcept {
  if (!a.defined() || !b.defined()) return false;
  const std::byte* a0 = a.storage()->data();
  const std::byte* b0 = b.storage()->data();
  return a0 < b0 + b.storage()->nbytes() && b0 < a0 + a.storage()->nbytes();
}

}  // namespace detail

// dst <- src, converted to dst's dtype and written in dst's layout (dst.copy_(src) in torch,
// without broadcasting: the shapes must be equal). src may share memory with dst. Each element
// is read once and written once when dst is contiguous and apart from src (the load path:
// checkpoint tensor -> model buffer); otherwise it is staged through one buffer.
inline void copy_into(Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape())
    throw Error(ErrorKind::Mismatch, "copy_into: shapes differ (" + std::to_string(dst.dim()) + "-d and " +
                                         std::to_string(src.dim()) + "-d, or different sizes)");
  if (!can_cast(src.dtype(), dst.dtype()))
    throw Error(ErrorKind::Mismatch,
                "cannot cast " + std::string(name(src.dtype())) + " to " + std::string(name(dst.dtype())));
  if (dst.numel() == 0) return;
  if (dst.is_contiguous() && !detail::storages_overlap(dst, src)) {
    if (src.dtype() == dst.dtype() && src.is_contiguous())
      std::memcpy(dst.mutable_raw_data(), src.raw_data(), dst.nbytes());
    else
      detail::convert_elements(dst.mutable_raw_data(), dst.dtype(), src);
    return;
  }
  detail::scatter_into(dst, detail::converted_bytes(src, dst.dtype()));
}

}  // namespace sgckpt
