// tools/sgckpt/json_writer.hpp: the JSON mirror of a checkpoint's object tree
// (`sgckpt inspect --json`).
//
// The contract (tests in other languages compare against it):
//   - dicts of every kind (dict, OrderedDict, Counter) -> JSON objects, keys in file order;
//     int keys written in decimal. OrderedDict attributes (`_metadata`) are not written.
//     (A dict holding both 1 and "1" as keys yields an object with a repeated name.)
//   - list, tuple -> arrays; None -> null; bool -> true/false; str -> string.
//   - bytes (Kind::Bytes) has no mirror: writing one throws sgckpt::Error naming its key
//     path (the tool then exits 1), like any other value outside the contract.
//   - int -> JSON integer, exact at any size.
//   - float -> a JSON number that always contains '.' or an exponent: the shortest text that
//     round-trips (std::to_chars), with ".0" appended when it has neither; NaN, +inf, -inf
//     -> the strings "nan", "inf", "-inf".
//   - tensor or Parameter -> {"$tensor": {"dtype": "float32", "shape": [3, 5], "sha256": "<hex>"}}
//     with the SHA-256 of the elements in row-major order as contiguous little-endian bytes
//     (see tensor_hash.hpp).
//   - Layout: Python's json.dumps style separators (", " and ": "), one line, no trailing
//     newline (the command adds one).
//   - Strings: UTF-8 is written as is; '"', '\\' and control characters are escaped (\b \f \n
//     \r \t, others as \u00XX, lowercase hex). Byte sequences that are not UTF-8 never make
//     the output invalid:
//       * an encoded surrogate (ED A0..BF 80..BF, which Python's pickle writes for a str
//         holding a lone surrogate, 'surrogatepass') -> the escape \udXXX, exactly what
//         Python's json.dumps writes for that str;
//       * any other ill-formed sequence -> U+FFFD, one per maximal ill-formed subpart (the
//         Unicode / Python `errors="replace"` convention).
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "tensor_hash.hpp"

namespace sgckpt::tool {

// ---- UTF-8 scanning (shared with the text output) -------------------------------------------

// One step of a UTF-8 scan: what the bytes at the current position are.
struct Utf8Step {
  enum Kind { Ascii, Valid, Surrogate, Invalid } kind;
  std::size_t length;       // bytes consumed (>= 1)
  std::uint32_t codepoint;  // for Ascii, Valid and Surrogate
};

// Decodes one sequence at s[i] (i < s.size()), following Unicode's table of well-formed
// byte sequences. An ill-formed sequence consumes its maximal subpart (at least one byte).
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

namespace json {

// ---- Scalars --------------------------------------------------------------------------------

// Shortest text that round-trips to the same double, always with '.' or an exponent
// ("1.0", "0.1", "1e+16", "-0.0", "5e-324"). NaN and infinities: "nan", "inf", "-inf".
inline std::string format_double(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// A double as a JSON value: a number, or the string "nan"/"inf"/"-inf".
inline void append_double(std::string& out, double d) {
  if (std::isfinite(d)) {
    out += format_double(d);
  } else {
    out += '"';
    out += format_double(d);
    out += '"';
  }
}

inline void append_hex4(std::string& out, std::uint32_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kDigits[(v >> shift) & 0xFu];
}

// A JSON string literal, quotes included (see the header comment for the escaping rules).
inline void append_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // Copy the longest run of plain ASCII at once.
    std::size_t j = i;
    while (j < s.size()) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= s.size()) break;
    const Utf8Step step = utf8_step(s, i);
    switch (step.kind) {
      case Utf8Step::Ascii:
        switch (step.codepoint) {
          case '"':
            out += "\\\"";
            break;
          case '\\':
            out += "\\\\";
            break;
          case '\b':
            out += "\\b";
            break;
          case '\f':
            out += "\\f";
            break;
          case '\n':
            out += "\\n";
            break;
          case '\r':
            out += "\\r";
            break;
          case '\t':
            out += "\\t";
            break;
          default:
            append_hex4(out, step.codepoint);
            break;
        }
        break;
      case Utf8Step::Valid:
        out.append(s.data() + i, step.length);
        break;
      case Utf8Step::Surrogate:
        append_hex4(out, step.codepoint);
        break;
      case Utf8Step::Invalid:
        out += "\xEF\xBF\xBD";
        break;  // U+FFFD
    }
    i += step.length;
  }
  out += '"';
}

// ---- The tree ---------------------------------------------------------------------------------

inline void append_tensor(std::string& out, const Tensor& t) {
  out += "{\"$tensor\": {\"dtype\": \"";
  out += name(t.dtype());
  out += "\", \"shape\": [";
  for (std::size_t d = 0; d < t.dim(); ++d) {
    if (d) out += ", ";
    out += std::to_string(t.shape()[d]);
  }
  out += "], \"sha256\": \"";
  out += tensor_sha256(t);
  out += "\"}}";
}

// Appends the JSON mirror of `v`. Errors (a tensor without storage) carry the key path.
inline void append_value(std::string& out, const Value& v, const std::string& path = "") {
  switch (v.kind()) {
    case Kind::None:
      out += "null";
      break;
    case Kind::Bool:
      out += v.as_bool() ? "true" : "false";
      break;
    case Kind::Int:
      out += v.as_big_int().to_string();
      break;
    case Kind::Float:
      append_double(out, v.as_float());
      break;
    case Kind::Str:
      append_string(out, v.as_str());
      break;
    case Kind::Tensor:
      try {
        append_tensor(out, v.tensor());
      } catch (const Error& e) {
        throw e.with_key_path(path);
      }
      break;
    case Kind::List:
    case Kind::Tuple: {
      out += '[';
      const auto& items = v.items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        append_value(out, items[i], Value::join(path, std::to_string(i)));
      }
      out += ']';
      break;
    }
    case Kind::Bytes:
      throw Error("a bytes value has no JSON mirror (the inspect --json contract has no bytes type)",
                  ErrorContext::at_key(path.empty() ? "<root>" : path));
    case Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [key, child] : v.dict()) {
        if (!first) out += ", ";
        first = false;
        const std::string k = key.to_string();
        append_string(out, k);
        out += ": ";
        append_value(out, child, Value::join(path, k));
      }
      out += '}';
      break;
    }
  }
}

inline std::string to_json(const Value& v) {
  std::string out;
  append_value(out, v);
  return out;
}

}  // namespace json
}  // namespace sgckpt::tool
