// sgckpt/core/dtype.hpp: every torch dtype a checkpoint can hold.
//
// A dtype is named the way torch names it (without "torch."), knows its element size,
// and, where one exists, the legacy storage class torch pickles for it ("FloatStorage").
// Dtypes without a legacy storage class (float8, uint16/32/64, complex32) came with torch
// 2.1-2.7, which pickles them through UntypedStorage + _rebuild_tensor_v3 and a dtype global;
// the writer does the same for them, and only for them, so files holding only the older
// dtypes still load in torch 1.x (docs/pth-format.md).
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace sgckpt {

enum class DType : std::uint8_t {
  Float64,
  Float32,
  Float16,
  BFloat16,
  Int64,
  Int32,
  Int16,
  Int8,
  UInt8,
  Bool,
  Complex64,
  Complex128,
  // torch 2.x dtypes (no legacy storage class; UntypedStorage + _rebuild_tensor_v3):
  Float8_e5m2,
  Float8_e4m3fn,
  Float8_e5m2fnuz,
  Float8_e4m3fnuz,
  Float8_e8m0fnu,
  UInt16,
  UInt32,
  UInt64,
  Complex32,
};

inline constexpr int kNumDTypes = 21;

struct DTypeInfo {
  DType dtype;
  std::string_view name;           // torch's name without "torch.", e.g. "float32"
  std::string_view storage_class;  // legacy storage class, empty if none
  std::uint8_t itemsize;           // bytes per element
  bool is_floating;                // float or bfloat/half/float8
  bool is_complex;
};

inline constexpr std::array<DTypeInfo, kNumDTypes> kDTypes = {{
    {DType::Float64, "float64", "DoubleStorage", 8, true, false},
    {DType::Float32, "float32", "FloatStorage", 4, true, false},
    {DType::Float16, "float16", "HalfStorage", 2, true, false},
    {DType::BFloat16, "bfloat16", "BFloat16Storage", 2, true, false},
    {DType::Int64, "int64", "LongStorage", 8, false, false},
    {DType::Int32, "int32", "IntStorage", 4, false, false},
    {DType::Int16, "int16", "ShortStorage", 2, false, false},
    {DType::Int8, "int8", "CharStorage", 1, false, false},
    {DType::UInt8, "uint8", "ByteStorage", 1, false, false},
    {DType::Bool, "bool", "BoolStorage", 1, false, false},
    {DType::Complex64, "complex64", "ComplexFloatStorage", 8, false, true},
    {DType::Complex128, "complex128", "ComplexDoubleStorage", 16, false, true},
    {DType::Float8_e5m2, "float8_e5m2", "", 1, true, false},
    {DType::Float8_e4m3fn, "float8_e4m3fn", "", 1, true, false},
    {DType::Float8_e5m2fnuz, "float8_e5m2fnuz", "", 1, true, false},
    {DType::Float8_e4m3fnuz, "float8_e4m3fnuz", "", 1, true, false},
    {DType::Float8_e8m0fnu, "float8_e8m0fnu", "", 1, true, false},
    {DType::UInt16, "uint16", "", 2, false, false},
    {DType::UInt32, "uint32", "", 4, false, false},
    {DType::UInt64, "uint64", "", 8, false, false},
    {DType::Complex32, "complex32", "", 4, false, true},
}};

constexpr const DTypeInfo& info(DType d) {
  return kDTypes[static_cast<std::size_t>(d)];
}
constexpr std::string_view name(DType d) {
  return info(d).name;
}
constexpr std::size_t itemsize(DType d) {
  return info(d).itemsize;
}
constexpr bool is_floating(DType d) {
  return info(d).is_floating;
}
constexpr bool is_complex(DType d) {
  return info(d).is_complex;
}

// "float32" -> Float32. Also accepts torch's aliases ("float", "half", "long", ...).
inline std::optional<DType> dtype_from_name(std::string_view n) {
  for (const auto& i : kDTypes)
    if (i.name == n) return i.dtype;
  struct Alias {
    std::string_view name;
    DType dtype;
  };
  static constexpr Alias aliases[] = {
      {"double", DType::Float64},   {"float", DType::Float32},      {"half", DType::Float16},
      {"long", DType::Int64},       {"int", DType::Int32},          {"short", DType::Int16},
      {"cfloat", DType::Complex64}, {"cdouble", DType::Complex128}, {"chalf", DType::Complex32},
  };
  for (const auto& a : aliases)
    if (a.name == n) return a.dtype;
  return std::nullopt;
}

// "FloatStorage" -> Float32. torch maps storage classes by name alone, ignoring the module
// ("torch" or "torch.cuda"), and so do we.
inline std::optional<DType> dtype_from_storage_class(std::string_view n) {
  for (const auto& i : kDTypes)
    if (!i.storage_class.empty() && i.storage_class == n) return i.dtype;
  return std::nullopt;
}

// ---- 16-bit floating point, as plain bit containers with float conversions -------------

struct Half {
  std::uint16_t bits = 0;
};
struct BFloat16 {
  std::uint16_t bits = 0;
};

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FFu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

// Round to nearest even, as torch does.
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) {  // inf or nan
    return static_cast<std::uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // overflow
  if (absx < 0x38800000u) {                                                    // subnormal or zero in half
    const float af = std::bit_cast<float>(absx);
    // Scale so that the half subnormal unit (2^-24) becomes 1, then round to even.
    const float scaled = af * 16777216.0f;
    auto r = static_cast<std::uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(r);
    if (rem > 0.5f || (rem == 0.5f && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t mant = absx & 0x7FFFFFu;
  std::uint32_t exp = (absx >> 23) - 127 + 15;
  std::uint32_t h = (exp << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

inline float bfloat16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

inline std::uint16_t float_to_bfloat16(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

}  // namespace sgckpt
