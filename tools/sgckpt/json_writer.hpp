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
//   - numpy array or scalar -> {"$numpy": {"dtype": "float64", "shape": [2, 2], "scalar": false,
//     "sha256": "<hex>"}}: dtype by torch's name (numpy's is the same for every dtype read),
//     the hash as for a tensor; a scalar has shape [].
//   - torch.dtype -> {"$dtype": "float32"}; torch.device -> {"$device": "cuda:1"} (torch's str());
//     torch.Size -> an array of ints, as any tuple.
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
#include <map>
#include <string>
#include <string_view>
#include <tuple>

#include "expansion_budget.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/float_text.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/detail/utf8.hpp"
#include "tensor_hash.hpp"

namespace sgckpt::tool {

// UTF-8 scanning (shared with the text output and the pickle reader).
using sgckpt::detail::utf8_step;
using sgckpt::detail::Utf8Step;

namespace json {

// ---- Scalars --------------------------------------------------------------------------------

// Shortest round-trip text with '.' or an exponent, as Python prints floats (core/float_text.hpp).
inline std::string format_double(double d) {
  return float_text(d);
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

// What one JSON document may cost: its size and the bytes hashed are bounded by the budget
// (expansion_budget.hpp), and a view seen before (same storage, dtype, offset, shape and
// strides) is hashed once: 2,000 views of one 16 MB storage hashed it 2,000 times.
struct Context {
  ExpansionBudget budget;       // the document's size
  ExpansionBudget hash_budget;  // bytes hashed
  std::uint64_t hashed = 0;
  std::map<std::tuple<const Storage*, DType, std::int64_t, Shape, Shape>, std::string> hashes;
  KeyPath path;  // of the value being written, for errors
};

// The SHA-256 of a tensor's elements, once per distinct view (the hash budget counts it).
inline const std::string& tensor_hash(const Tensor& t, Context& ctx) {
  auto [it, fresh] =
      ctx.hashes.try_emplace({t.storage().get(), t.dtype(), t.storage_offset(), t.shape(), t.strides()});
  if (fresh) {
    ctx.hashed += t.nbytes();
    try {
      ctx.hash_budget.check(ctx.hashed, "hashing the tensors' elements");
    } catch (...) {
      ctx.hashes.erase(it);
      throw;
    }
    it->second = tensor_sha256(t);
  }
  return it->second;
}

inline void append_shape(std::string& out, const Tensor& t) {
  out += "\"shape\": [";
  for (std::size_t d = 0; d < t.dim(); ++d) {
    if (d) out += ", ";
    out += std::to_string(t.shape()[d]);
  }
  out += ']';
}

inline void append_tensor(std::string& out, const Tensor& t, Context& ctx) {
  out += "{\"$tensor\": {\"dtype\": \"";
  out += name(t.dtype());
  out += "\", ";
  append_shape(out, t);
  out += ", \"sha256\": \"" + tensor_hash(t, ctx) + "\"}}";
}

inline void append_numpy(std::string& out, const NumpyValue& n, Context& ctx) {
  out += "{\"$numpy\": {\"dtype\": \"";
  out += name(n.data.dtype());
  out += "\", ";
  append_shape(out, n.data);
  out += n.scalar ? ", \"scalar\": true" : ", \"scalar\": false";
  out += ", \"sha256\": \"" + tensor_hash(n.data, ctx) + "\"}}";
}

// Appends the JSON mirror of `v`. Errors (a tensor without storage, the budget) carry the
// key path. Depth is bounded by the loader's (Limits::max_depth).
inline void append_value(std::string& out, const Value& v, Context& ctx) {
  const std::string& path = ctx.path.str();
  ctx.budget.check(out.size(), "the JSON document");
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
        append_tensor(out, v.tensor(), ctx);
      } catch (const Error& e) {
        throw e.with_key_path(path);
      }
      break;
    case Kind::Numpy:
      try {
        append_numpy(out, v.numpy(), ctx);
      } catch (const Error& e) {
        throw e.with_key_path(path);
      }
      break;
    case Kind::DType:
      out += "{\"$dtype\": ";
      append_string(out, std::string(name(v.as_dtype())));
      out += '}';
      break;
    case Kind::Device:
      out += "{\"$device\": ";
      append_string(out, v.as_device().to_string());
      out += '}';
      break;
    case Kind::List:
    case Kind::Tuple: {
      out += '[';
      const auto& items = v.items();
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        auto level = ctx.path.index(i);
        append_value(out, items[i], ctx);
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
        append_string(out, key.to_string());
        out += ": ";
        auto level = key.is_str() ? ctx.path.key(key.str()) : ctx.path.key(key.integer());
        append_value(out, child, ctx);
      }
      out += '}';
      break;
    }
  }
}

inline void append_value(std::string& out, const Value& v) {
  Context ctx;
  append_value(out, v, ctx);
}

inline std::string to_json(const Value& v) {
  std::string out;
  append_value(out, v);
  return out;
}

}  // namespace json
}  // namespace sgckpt::tool
