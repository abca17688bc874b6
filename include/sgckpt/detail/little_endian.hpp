// sgckpt/detail/little_endian.hpp: the one little-endian codec of the formats sgckpt reads
// and writes (zip headers, pickle operands). Byte by byte, so neither alignment nor the
// host's byte order matters, and any byte type works (std::byte, unsigned char, uint8_t).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sgckpt::detail {

constexpr std::uint64_t le_byte(std::byte b) {
  return std::to_integer<std::uint64_t>(b);
}
constexpr std::uint64_t le_byte(unsigned char b) {
  return b;
}

// The unsigned integer in the `width` (at most 8) bytes at p, least significant first.
template <class Byte>
constexpr std::uint64_t load_le(const Byte* p, std::size_t width) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i) v |= le_byte(p[i]) << (8 * i);
  return v;
}

// Appends v to `out` as `width` bytes, least significant first: its low `width` bytes, or, for
// a width beyond 8 (zip's 16-byte fields), all 8 followed by zero bytes.
template <class Out>
void append_le(Out& out, std::uint64_t v, std::size_t width) {
  using Byte = typename Out::value_type;
  for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<Byte>(i < 8 ? (v >> (8 * i)) & 0xFF : 0));
}

}  // namespace sgckpt::detail
