// sgckpt/detail/utf8.hpp: UTF-8 decoding steps, shared by the pickle reader (which must
// accept exactly the strings Python's decoder accepts) and the tool's text and JSON output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sgckpt::detail {

// One step of a UTF-8 scan: what the bytes at the current position are.
struct Utf8Step {
  enum Kind { Ascii, Valid, Surrogate, Invalid } kind;
  std::size_t length;       // bytes consumed (>= 1)
  std::uint32_t codepoint;  // for Ascii, Valid and Surrogate
};

// Decodes one sequence at s[i] (i < s.size()), following Unicode's table of well-formed
// byte sequences. An ill-formed sequence consumes its maximal subpart (at least one byte).
// An encoded surrogate (ED A0..BF xx) is reported as such: Python's "surrogatepass" accepts
// it, strict decoding does not.
inline Utf8Step utf8_step(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[k]); };
  const std::uint8_t b0 = byte(i);
  if (b0 < 0x80) return {Utf8Step::Ascii, 1, b0};
  std::size_t need;
  std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  std::uint32_t cp;
  bool surrogate_lead = false;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) surrogate_lead = true;  // 80..9F valid, A0..BF an encoded surrogate
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {Utf8Step::Invalid, 1, 0};
  }
  std::size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= s.size()) return {Utf8Step::Invalid, k, 0};
    const std::uint8_t b = byte(i + k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return {Utf8Step::Invalid, k, 0};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (surrogate_lead && cp >= 0xD800) return {Utf8Step::Surrogate, k, cp};
  return {Utf8Step::Valid, k, cp};
}

// The offset of the first byte that Python's UTF-8 decoder refuses, or npos when all of
// `s` decodes. `surrogatepass`: encoded surrogates are accepted (pickle's BINUNICODE).
inline std::size_t utf8_first_invalid(std::string_view s, bool surrogatepass) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<std::uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Step st = utf8_step(s, i);
    if (st.kind == Utf8Step::Invalid || (st.kind == Utf8Step::Surrogate && !surrogatepass)) return i;
    i += st.length;
  }
  return std::string_view::npos;
}

}  // namespace sgckpt::detail
