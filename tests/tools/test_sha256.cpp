// Tests of tools/sgckpt/sha256.hpp (FIPS 180-4 vectors) and tensor_hash.hpp.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "../../tools/sgckpt/sha256.hpp"
#include "../../tools/sgckpt/tensor_hash.hpp"

using sgckpt::DType;
using sgckpt::Storage;
using sgckpt::Tensor;
using sgckpt::tool::Sha256;
using sgckpt::tool::sha256_hex;
using sgckpt::tool::tensor_sha256;

namespace {

std::string hash_of_bytes(const std::vector<std::byte>& b) {
  return sha256_hex(b.data(), b.size());
}

// A contiguous float32 tensor holding 0, 1, 2, ... (numel - 1).
Tensor iota_f32(sgckpt::Shape shape) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  auto* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i);
  return t;
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 / NIST vectors") {
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(
      sha256_hex(
          "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsm"
          "nopqrstnopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: incremental updates of any chunk size give the same digest") {
  const std::string million(1000000, 'a');
  for (std::size_t chunk : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 1000u, 4099u}) {
    Sha256 h;
    for (std::size_t i = 0; i < million.size(); i += chunk)
      h.update(million.data() + i, std::min(chunk, million.size() - i));
    CHECK(h.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
  // Lengths around the padding boundary (55/56/64 bytes) against the one-shot hash.
  for (std::size_t n = 50; n <= 130; ++n) {
    const std::string s(n, 'x');
    Sha256 h;
    h.update(s.substr(0, n / 2));
    h.update(s.substr(n / 2));
    CHECK(h.hex() == sha256_hex(s));
  }
  Sha256 h;
  h.update("abc");
  CHECK(h.hex() == h.hex());  // digest() is idempotent
  h.reset();
  CHECK(h.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("tensor_sha256: contiguous tensors hash their bytes") {
  const Tensor z = Tensor::zeros(DType::Float32, {3, 5});
  CHECK(tensor_sha256(z) == "5dcc1b5872dd9ff1c234501f1fefda01f664164e1583c3e1bb3dbea47588ab31");
  const float v = 3.5f;
  const Tensor s = Tensor::from_values<float>(DType::Float32, {}, std::span<const float>(&v, 1));
  CHECK(tensor_sha256(s) == "e21712a06022eecab9f5bd25414b4af9adeb316bb03947134cea060c78afd2d9");
  const float c[] = {1, 2, 3, 4};
  const Tensor cx = Tensor::from_values<std::uint64_t>(
      DType::Complex64, {2}, std::span<const std::uint64_t>(reinterpret_cast<const std::uint64_t*>(c), 2));
  CHECK(tensor_sha256(cx) == "ad73b9acd6e4a74b2f5bb5386658ce3bb146cd040a1867646ab3b973fb6632b1");
  CHECK(tensor_sha256(Tensor::empty(DType::Float32, {0, 3})) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("tensor_sha256: views hash their elements in row-major order") {
  const Tensor base = iota_f32({3, 4});
  const auto& st = base.storage();
  const Tensor t = Tensor::view_of(st, DType::Float32, 0, {4, 3}, {1, 4});          // base.t()
  const Tensor sl = Tensor::view_of(st, DType::Float32, 5, {2, 2}, {4, 1});         // base[1:, 1:3]
  const Tensor step = Tensor::view_of(st, DType::Float32, 1, {6}, {2});             // base.view(-1)[1::2]
  const Tensor one = Tensor::view_of(st, DType::Float32, 7, {1, 1, 1}, {9, 9, 9});  // one element
  CHECK_FALSE(t.is_contiguous());
  CHECK(tensor_sha256(t) == "5ad8a91ce86568a3d934ee2a80909d4292384e7ca8f5b721ce930a7d377cd709");
  CHECK(tensor_sha256(sl) == "d5c5d1822d821c589ef86c46d52d65b1b490b9a4ed2c1f4584328a8992596e8e");
  CHECK(tensor_sha256(step) == "060b367a3e320a31389398af58ec01b8e879f3f3fd45cc661c28478d449e8984");
  for (const Tensor& x : {t, sl, step, one}) CHECK(tensor_sha256(x) == hash_of_bytes(x.contiguous_bytes()));
}

TEST_CASE("tensor_sha256: large and mergeable strided layouts match contiguous_bytes()") {
  const Tensor big = iota_f32({300, 200});
  const auto& st = big.storage();
  // Transpose: one element per run, gathered through the buffer (240000 bytes > 64 KiB).
  const Tensor t = Tensor::view_of(st, DType::Float32, 0, {200, 300}, {1, 200});
  CHECK(tensor_sha256(t) == hash_of_bytes(t.contiguous_bytes()));
  // [2, 3, 4] out of [.., 6, 4] rows: the inner two dimensions merge into runs of 12.
  const Tensor m = Tensor::view_of(st, DType::Float32, 3, {2, 3, 4}, {24, 4, 1});
  CHECK(tensor_sha256(m) == hash_of_bytes(m.contiguous_bytes()));
  // Long dense rows (> 4 KiB) are passed through without gathering.
  const Tensor rows = Tensor::view_of(st, DType::Float32, 0, {30, 1500}, {1600, 1});
  CHECK(tensor_sha256(rows) == hash_of_bytes(rows.contiguous_bytes()));
  // A zero stride (expand) and size-1 dimensions with odd strides.
  const Tensor ex = Tensor::view_of(st, DType::Float32, 10, {1, 5, 1, 3}, {7, 0, 13, 1});
  CHECK(tensor_sha256(ex) == hash_of_bytes(ex.contiguous_bytes()));
  // Empty views.
  const Tensor e = Tensor::view_of(st, DType::Float32, 0, {5, 0}, {1, 5});
  CHECK(tensor_sha256(e) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("tensor_sha256: bool as 0/1 bytes, bfloat16 as raw 16-bit little-endian") {
  const std::uint8_t b[] = {1, 0, 2};  // a non-canonical true byte still hashes as 1
  const Tensor bt = Tensor::from_values<std::uint8_t>(DType::Bool, {3}, std::span<const std::uint8_t>(b, 3));
  CHECK(tensor_sha256(bt) == "85f90dfea1d8027e1463e5ca971a250110a20df0119d204a74220bc63516d15b");
  // The same through a strided view (every other byte of 1, 9, 0, 9, 2, 9).
  const std::uint8_t b6[] = {1, 9, 0, 9, 2, 9};
  const Tensor b6t =
      Tensor::from_values<std::uint8_t>(DType::Bool, {6}, std::span<const std::uint8_t>(b6, 6));
  const Tensor bv = Tensor::view_of(b6t.storage(), DType::Bool, 0, {3}, {2});
  CHECK(tensor_sha256(bv) == "85f90dfea1d8027e1463e5ca971a250110a20df0119d204a74220bc63516d15b");

  const std::uint16_t bf[] = {sgckpt::float_to_bfloat16(1.0f), sgckpt::float_to_bfloat16(2.0f),
                              sgckpt::float_to_bfloat16(-3.0f)};
  const Tensor bft =
      Tensor::from_values<std::uint16_t>(DType::BFloat16, {3}, std::span<const std::uint16_t>(bf, 3));
  CHECK(tensor_sha256(bft) == "f01074d507bea64ffc5529e335999671d3a68d871929e9794753718732772eff");
}

TEST_CASE("tensor_sha256: a tensor without storage is an error, not a crash") {
  CHECK_THROWS_AS(tensor_sha256(Tensor()), sgckpt::Error);
}
