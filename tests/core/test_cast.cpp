// Casting host tensors between dtypes as torch does (tests/python/test_cast.py checks every
// pair against torch element by element; these cases document the rules).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "sgckpt/core/cast.hpp"

using namespace sgckpt;

namespace {

std::uint8_t byte_of(const Tensor& t, std::size_t i) {
  return static_cast<std::uint8_t>(t.raw_data()[i]);
}

template <class E>
Tensor values(DType d, Shape shape, const std::vector<E>& v) {
  return Tensor::from_values<E>(d, std::move(shape), v);
}

Tensor floats(const std::vector<float>& v) {
  return values<float>(DType::Float32, {std::int64_t(v.size())}, v);
}

}  // namespace

TEST_SUITE("cast") {
  TEST_CASE("float8 codes decode to the values the formats define") {
    using detail::float8_to_float;
    CHECK(float8_to_float(DType::Float8_e4m3fn, 0x7E) == 448.0f);  // largest finite
    CHECK(std::isnan(float8_to_float(DType::Float8_e4m3fn, 0x7F)));
    CHECK(float8_to_float(DType::Float8_e4m3fn, 0x01) == std::ldexp(1.0f, -9));  // smallest subnormal
    CHECK(float8_to_float(DType::Float8_e4m3fn, 0x78) == 256.0f);  // e=15 is a normal binade here
    CHECK(float8_to_float(DType::Float8_e5m2, 0x7B) == 57344.0f);
    CHECK(float8_to_float(DType::Float8_e5m2, 0xFC) == -INFINITY);
    CHECK(std::isnan(float8_to_float(DType::Float8_e5m2, 0x7D)));
    CHECK(std::isnan(float8_to_float(DType::Float8_e4m3fnuz, 0x80)));  // the one NaN; no -0
    CHECK(float8_to_float(DType::Float8_e4m3fnuz, 0x7F) == 240.0f);
    CHECK(float8_to_float(DType::Float8_e5m2fnuz, 0x7F) == 57344.0f);
    CHECK(float8_to_float(DType::Float8_e8m0fnu, 127) == 1.0f);
    CHECK(float8_to_float(DType::Float8_e8m0fnu, 0) == std::ldexp(1.0f, -127));
    CHECK(std::isnan(float8_to_float(DType::Float8_e8m0fnu, 0xFF)));
  }

  TEST_CASE("every finite float8 code survives decode then encode") {
    for (DType d :
         {DType::Float8_e4m3fn, DType::Float8_e5m2, DType::Float8_e4m3fnuz, DType::Float8_e5m2fnuz}) {
      CAPTURE(name(d));
      for (int code = 0; code < 256; ++code) {
        const float x = detail::float8_to_float(d, static_cast<std::uint8_t>(code));
        if (std::isnan(x) || std::isinf(x)) continue;
        CHECK(int{detail::float_to_float8(d, x)} == code);
      }
    }
  }

  TEST_CASE("float8 encoding rounds to nearest, ties to even, and overflows as each format says") {
    const Tensor x = floats({1.0625f, 1.1875f, 464.0f, 470.0f, 1e6f, -1e6f, -0.0f, NAN, 61439.0f, 61440.0f});
    const Tensor e4 = cast(x, DType::Float8_e4m3fn);
    CHECK(byte_of(e4, 0) == 0x38);  // 1.0625 is halfway between 1 and 1.125: even mantissa, 1
    CHECK(byte_of(e4, 1) == 0x3A);  // 1.1875 halfway between 1.125 and 1.25: 1.25
    CHECK(byte_of(e4, 2) == 0x7E);  // 464 halfway between 448 and (absent) 480: 448
    CHECK(byte_of(e4, 3) == 0x7F);  // above it: NaN, e4m3fn has no inf
    CHECK(byte_of(e4, 4) == 0x7F);
    CHECK(byte_of(e4, 5) == 0xFF);
    CHECK(byte_of(e4, 6) == 0x80);  // -0 kept
    const Tensor e5 = cast(x, DType::Float8_e5m2);
    CHECK(byte_of(e5, 4) == 0x7C);  // +inf
    CHECK(byte_of(e5, 5) == 0xFC);
    CHECK(byte_of(e5, 8) == 0x7B);  // 61439 rounds down to 57344
    CHECK(byte_of(e5, 9) == 0x7C);  // 61440 is the tie: to the even neighbour, past the max: inf
    const Tensor fnuz = cast(x, DType::Float8_e4m3fnuz);
    CHECK(byte_of(fnuz, 4) == 0x80);  // overflow: the NaN
    CHECK(byte_of(fnuz, 6) == 0x00);  // no -0
    CHECK(byte_of(fnuz, 7) == 0x80);
  }

  TEST_CASE("cast keeps the shape, reads any layout and gives a contiguous tensor") {
    const Tensor base = values<std::int32_t>(DType::Int32, {2, 3}, {1, -2, 3, -4, 5, -6});
    const Tensor t = Tensor::view_of(base.storage(), DType::Int32, 0, {3, 2}, {1, 3});  // the transpose
    const Tensor h = cast(t, DType::Float16);
    CHECK(h.shape() == Shape{3, 2});
    CHECK(h.is_contiguous());
    const auto* bits = reinterpret_cast<const std::uint16_t*>(h.raw_data());
    const float want[] = {1, -4, -2, 5, 3, -6};
    for (int i = 0; i < 6; ++i) CHECK(half_to_float(bits[i]) == want[i]);
  }

  TEST_CASE("copy_into converts into the destination's dtype and layout; casting into e8m0fnu is refused") {
    Tensor dst_base = Tensor::zeros(DType::Float64, {2, 2});
    Tensor dst = Tensor::view_of(dst_base.storage(), DType::Float64, 0, {2, 2}, {1, 2});
    copy_into(dst, values<std::uint8_t>(DType::UInt8, {2, 2}, {1, 2, 3, 255}));
    const auto* d = reinterpret_cast<const double*>(dst_base.raw_data());
    CHECK(d[0] == 1);
    CHECK(d[2] == 2);  // dst[0][1] lives at offset 2
    CHECK(d[1] == 3);
    CHECK(d[3] == 255);
    CHECK_THROWS_AS(copy_into(dst, floats({1, 2, 3})), Error);  // shapes differ
    CHECK_FALSE(can_cast(DType::Float32, DType::Float8_e8m0fnu));
    CHECK(can_cast(DType::Float8_e8m0fnu, DType::Float32));
    CHECK_THROWS_WITH_AS(cast(floats({1}), DType::Float8_e8m0fnu), doctest::Contains("float8_e8m0fnu"),
                         Error);
  }

  TEST_CASE("complex32 holds two halves; complex to real drops the imaginary part") {
    const float parts[] = {1.5f, -2.25f};
    Tensor c = Tensor::empty(DType::Complex64, {1});
    std::memcpy(c.mutable_raw_data(), parts, sizeof parts);
    const Tensor h = cast(c, DType::Complex32);
    const auto* bits = reinterpret_cast<const std::uint16_t*>(h.raw_data());
    CHECK(half_to_float(bits[0]) == 1.5f);
    CHECK(half_to_float(bits[1]) == -2.25f);
    const Tensor r = cast(h, DType::Float32);
    CHECK(*reinterpret_cast<const float*>(r.raw_data()) == 1.5f);
  }

  TEST_CASE("typed access needs the element's own type (or unsigned raw bits of a float)") {
    Tensor f = floats({1.0f, 2.0f});
    CHECK(f.data<float>()[1] == 2.0f);
    CHECK(f.data<std::uint32_t>()[0] == 0x3f800000u);  // raw bits of a float32
    CHECK_THROWS_WITH_AS(f.data<std::int32_t>(), doctest::Contains("float32 tensor cannot be accessed"),
                         Error);
    Tensor i = values<std::int32_t>(DType::Int32, {1}, {7});
    CHECK(i.data<std::int32_t>()[0] == 7);
    CHECK_THROWS_AS(i.data<float>(), Error);
    CHECK_THROWS_AS(i.data<std::uint32_t>(), Error);  // an int32 read as uint32 is a conversion
    CHECK_THROWS_AS(i.item<float>(), Error);
    CHECK(values<std::uint16_t>(DType::Float16, {1}, {0x3c00}).data<std::uint16_t>()[0] == 0x3c00);
    CHECK_THROWS_AS((values<std::int16_t>(DType::Float16, {1}, {0})), Error);
  }

  TEST_CASE("copy_into writes straight into a contiguous target, or stages when memory overlaps") {
    Tensor src = floats({1.5f, -2.5f, 3.0f});
    Tensor dst = Tensor::zeros(DType::Float16, {3});
    copy_into(dst, src);
    CHECK(half_to_float(dst.data<std::uint16_t>()[1]) == -2.5f);
    // Overlapping: dst is src shifted by one element, in one storage.
    Tensor base = floats({0.0f, 1.0f, 2.0f, 3.0f});
    Tensor a = Tensor::view_of(base.storage(), DType::Float32, 0, {3}, {1});
    Tensor b = Tensor::view_of(base.storage(), DType::Float32, 1, {3}, {1});
    copy_into(b, a);  // the source is staged, as if cloned first (torch refuses a partial overlap)
    CHECK(base.data<float>()[1] == 0.0f);
    CHECK(base.data<float>()[2] == 1.0f);
    CHECK(base.data<float>()[3] == 2.0f);
    // A borrowed target (someone else's memory) is written in place.
    float outside[3] = {};
    Tensor view =
        Tensor::view_of(Storage::borrow(nullptr, reinterpret_cast<std::byte*>(outside), sizeof outside),
                        DType::Float32, 0, {3}, {1});
    copy_into(view, values<std::int64_t>(DType::Int64, {3}, {4, 5, 6}));
    CHECK(outside[2] == 6.0f);
    CHECK(view.storage()->borrowed());
  }
}
