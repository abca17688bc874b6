// Smoke test of the build: the library's headers compile and a State holds a tensor and an int.
#include <doctest/doctest.h>

#include <array>
#include <span>

#include "sgckpt/core/state.hpp"

TEST_CASE("State<> stores a tensor and an int") {
  sgckpt::State<> state;
  const std::array<float, 4> w{1.0f, 2.0f, 3.0f, 4.0f};
  state["weight"] =
      sgckpt::Tensor::from_values<float>(sgckpt::DType::Float32, {2, 2}, std::span<const float>(w));
  state["epoch"] = 7;

  REQUIRE(state.contains("weight"));
  REQUIRE(state.contains("epoch"));
  const auto& t = state.at("weight").tensor();
  CHECK(t.dtype() == sgckpt::DType::Float32);
  CHECK(t.shape() == sgckpt::Shape{2, 2});
  CHECK(t.at<float>({1, 0}) == 3.0f);
  CHECK(state.at("epoch").as_int() == 7);
  CHECK_FALSE(state.contains("missing"));
}

TEST_CASE(
    "large storages (own mappings, huge pages where the system allows) are writable, and zeros() is zero") {
  const std::size_t n = sgckpt::detail::kHugePageStorageBytes + 12345;
  auto s = sgckpt::Storage::allocate(n, /*huge_pages=*/true);
  REQUIRE(s->nbytes() == n);
  CHECK(reinterpret_cast<std::uintptr_t>(s->data()) % 64 == 0);
  s->mutable_data()[0] = std::byte{1};
  s->mutable_data()[n - 1] = std::byte{2};
  CHECK(s->data()[n - 1] == std::byte{2});
  const auto z = sgckpt::Tensor::zeros(sgckpt::DType::Float32, {static_cast<std::int64_t>(n / 4)});
  const float* p = z.data<float>();
  CHECK(p[0] == 0.0f);
  CHECK(p[n / 4 - 1] == 0.0f);
}
