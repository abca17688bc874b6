// sgckpt/io/safetensors.hpp: the safetensors format, read and written by load() and save().
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (a map from
// tensor name to {"dtype", "shape", "data_offsets"} plus an optional "__metadata__" map of
// strings), then the tensors' bytes, back to back (docs/safetensors.md). load() recognizes it
// by content, whatever the file is called, and returns an OrderedDict of tensors (a state dict,
// in name order, as safe_open's keys() lists them) whose "__metadata__" map, if any, is the
// dict's attribute of that name (so that it survives a trip through a .pth file). Reading applies the
// format's own checks and nothing lax: the header is at most 100,000,000 bytes (the safetensors package's
// bound), valid UTF-8 JSON without duplicate names; every dtype is known; each tensor's byte length is its
// shape's; the tensors tile the data area exactly, with no gap, overlap or byte left over. save() writes what
// safetensors.torch.save_file writes for the same tensors (same order, header and padding).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/json_cursor.hpp"
#include "sgckpt/detail/little_endian.hpp"
#include "sgckpt/detail/utf8.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::safetensors {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
inline constexpr std::size_t kMaxRank = 64;

// The format's dtypes, in the order of its Dtype enum: files sort tensors by it.
struct DTypeName {
  std::string_view name;
  DType dtype;
};
inline constexpr std::array<DTypeName, 15> kDTypes = {{
    {"BOOL", DType::Bool},
    {"U8", DType::UInt8},
    {"I8", DType::Int8},
    {"F8_E5M2", DType::Float8_e5m2},
    {"F8_E4M3", DType::Float8_e4m3fn},
    {"I16", DType::Int16},
    {"U16", DType::UInt16},
    {"F16", DType::Float16},
    {"BF16", DType::BFloat16},
    {"I32", DType::Int32},
    {"U32", DType::UInt32},
    {"F32", DType::Float32},
    {"F64", DType::Float64},
    {"I64", DType::Int64},
    {"U64", DType::UInt64},
}};

inline const DTypeName* find_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return &d;
  return nullptr;
}
inline std::optional<std::size_t> dtype_rank(DType dtype) {
  for (std::size_t i = 0; i < kDTypes.size(); ++i)
    if (kDTypes[i].dtype == dtype) return i;
  return std::nullopt;
}

// Whether `bytes` look like a safetensors file: a header length of at most 2^48 (so that a
// truncated file or one claiming terabytes is still read, and refused with the reason), then '{'.
inline bool sniff(std::span<const std::byte> bytes) {
  return bytes.size() >= 9 && load_le(bytes.data(), 8) < (std::uint64_t{1} << 48) &&
         bytes[8] == std::byte{'{'};
}

struct Entry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape{};
  std::uint64_t begin = 0, end = 0;
  std::uint64_t at = 0;  // byte offset of the entry in the file, for errors
};

struct Header {
  std::vector<Entry> entries;
  std::vector<std::pair<std::string, std::string>> metadata;
  bool has_metadata = false;
  std::uint64_t data_start = 0;
};

inline Entry read_entry(JsonCursor& json, std::string name) {
  Entry e{std::move(name), DType::Float32, {}, 0, 0, json.offset()};
  bool dtype = false, shape = false, offsets = false;
  json.object([&](const std::string& field) {
    if (field == "dtype") {
      const std::string d = json.string();
      const DTypeName* known = find_dtype(d);
      if (known == nullptr)
        throw Error(ErrorKind::Refused,
                    "tensor '" + e.name + "' has dtype '" + d + "', which sgckpt does not read",
                    ErrorContext::at_offset(e.at));
      e.dtype = known->dtype;
      dtype = true;
    } else if (field == "shape") {
      json.array([&] {
        if (e.shape.size() == kMaxRank) json.fail("tensor '" + e.name + "' has more than 64 dimensions");
        const std::uint64_t dim = json.uint();
        if (dim > static_cast<std::uint64_t>(INT64_MAX)) json.fail("a dimension does not fit in 63 bits");
        e.shape.push_back(static_cast<std::int64_t>(dim));
      });
      shape = true;
    } else if (field == "data_offsets") {
      std::vector<std::uint64_t> v;
      json.array([&] {
        if (v.size() == 2) json.fail("data_offsets of tensor '" + e.name + "' has more than two numbers");
        v.push_back(json.uint());
      });
      if (v.size() != 2) json.fail("data_offsets of tensor '" + e.name + "' needs two numbers");
      e.begin = v[0];
      e.end = v[1];
      offsets = true;
    } else {
      json.skip_value();  // as the safetensors package does
    }
  });
  if (!dtype || !shape || !offsets)
    throw Error(ErrorKind::Corrupt,
                "tensor '" + e.name + "' lacks " +
                    (!dtype   ? "dtype"
                     : !shape ? "shape"
                              : "data_offsets"),
                ErrorContext::at_offset(e.at));
  return e;
}

inline Header read_header(std::span<const std::byte> bytes) {
  if (bytes.size() < 8)
    throw Error(ErrorKind::Truncated, "the file is shorter than a safetensors header length",
                ErrorContext::at_offset(0));
  const std::uint64_t n = load_le(bytes.data(), 8);
  if (n > kMaxHeaderBytes)
    throw Error(ErrorKind::Limit,
                "the safetensors header claims " + std::to_string(n) + " bytes, more than the format's " +
                    std::to_string(kMaxHeaderBytes),
                ErrorContext::at_offset(0));
  if (n > bytes.size() - 8)
    throw Error(ErrorKind::Truncated,
                "the safetensors header claims " + std::to_string(n) + " bytes but the file has " +
                    std::to_string(bytes.size() - 8) + " after its length",
                ErrorContext::at_offset(0));
  Header h;
  h.data_start = 8 + n;
  JsonCursor json(
      std::string_view(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n)), 8);
  std::unordered_set<std::string> seen;
  json.object([&](const std::string& name) {
    if (!seen.insert(name).second)
      json.fail("the name '" + KeyPath::abbreviate_key(name) + "' appears twice");
    if (name == "__metadata__") {
      h.has_metadata = true;
      json.object([&](const std::string& key) { h.metadata.emplace_back(key, json.string()); });
      return;
    }
    h.entries.push_back(read_entry(json, name));
  });
  if (!json.at_end()) json.fail("text after the header's object");
  return h;
}

// The tensors must tile the data area exactly, in offset order.
inline void check_layout(std::vector<Entry>& entries, std::uint64_t data_bytes) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  std::uint64_t expected = 0;
  for (const Entry& e : entries) {
    const auto fail = [&](ErrorKind kind, const std::string& what) {
      throw Error(kind,
                  "tensor '" + e.name + "' (data_offsets [" + std::to_string(e.begin) + ", " +
                      std::to_string(e.end) + "]) " + what,
                  ErrorContext::at_offset(e.at));
    };
    if (e.begin != expected)
      fail(ErrorKind::Corrupt,
           e.begin < expected ? "overlaps the tensor before it"
                              : "leaves a gap of " + std::to_string(e.begin - expected) + " bytes before it");
    if (e.end < e.begin) fail(ErrorKind::Corrupt, "ends before it begins");
    if (e.end > data_bytes)
      fail(ErrorKind::Truncated, "ends past the data area of " + std::to_string(data_bytes) + " bytes");
    std::uint64_t nbytes = 0;
    try {
      nbytes = checked_nbytes(e.shape, e.dtype);
    } catch (const Error& err) {
      throw Error(ErrorKind::Corrupt, err.message() + " (tensor '" + e.name + "')",
                  ErrorContext::at_offset(e.at));
    }
    if (nbytes != e.end - e.begin)
      fail(ErrorKind::Corrupt, "holds " + std::to_string(e.end - e.begin) +
                                   " bytes but its shape and dtype need " + std::to_string(nbytes));
    expected = e.end;
  }
  if (expected != data_bytes)
    throw Error(ErrorKind::Corrupt,
                "the tensors cover " + std::to_string(expected) + " of the " + std::to_string(data_bytes) +
                    " data bytes",
                ErrorContext::at_offset(8));
}

inline Tensor make_tensor(const Entry& e, std::span<const std::byte> data,
                          const std::shared_ptr<const void>& owner, bool mmap) {
  const std::byte* p = data.data() + e.begin;
  const std::size_t n = static_cast<std::size_t>(e.end - e.begin);
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % itemsize(e.dtype) == 0;
  if (mmap && owner && aligned)
    return Tensor::view_of(Storage::view(owner, p, n), e.dtype, 0, e.shape, contiguous_strides(e.shape));
  auto s = Storage::allocate(n, /*huge_pages=*/true);
  if (n != 0) std::memcpy(s->mutable_data(), p, n);
  return Tensor::view_of(std::move(s), e.dtype, 0, e.shape, contiguous_strides(e.shape));
}

inline Value load(std::span<const std::byte> bytes, const std::shared_ptr<const void>& owner,
                  const LoadOptions& opt) {
  Header h = read_header(bytes);
  check_layout(h.entries, bytes.size() - h.data_start);
  std::sort(h.entries.begin(), h.entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  const auto data = bytes.subspan(static_cast<std::size_t>(h.data_start));
  Value root = Value::make_ordered_dict();  // a state dict; its metadata survives a .pth round trip
  for (const Entry& e : h.entries) root.dict().set(e.name, make_tensor(e, data, owner, opt.mmap));
  if (h.has_metadata) {
    Value meta = Value::make_dict();
    for (auto& [k, v] : h.metadata) meta.dict().set(k, std::move(v));
    root.dict().set_attribute("__metadata__", std::move(meta));
  }
  return root;
}

// ---- writing ------------------------------------------------------------------------------

inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      const char* named = c == '\n'   ? "\\n"
                          : c == '\t' ? "\\t"
                          : c == '\r' ? "\\r"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : nullptr;
      if (named != nullptr)
        out += named;
      else
        out += std::string("\\u00") + kHex[u >> 4] + kHex[u & 15];
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

struct Item {
  std::string name;
  const Tensor* tensor = nullptr;
  std::size_t rank = 0;  // the dtype's place in kDTypes
};

// The tensors of `v` under `prefix`, nested dicts joined with '.' when `flatten`.
inline void collect(const Value& v, const std::string& prefix, bool flatten, std::vector<Item>& out) {
  for (const auto& [key, child] : v.dict()) {
    if (!key.is_str())
      throw Error(ErrorKind::Schema, "safetensors names are strings; this key is the int " + key.to_string(),
                  ErrorContext::at_key(prefix));
    const std::string name = prefix.empty() ? key.str() : prefix + "." + key.str();
    if (utf8_first_invalid(name, false) != std::string_view::npos)
      throw Error(ErrorKind::Schema, "a safetensors name must be valid UTF-8",
                  ErrorContext::at_key(KeyPath::abbreviate_key(name)));
    if (child.is_dict() && flatten) {
      collect(child, name, flatten, out);
    } else if (child.is_tensor()) {
      const auto rank = dtype_rank(child.tensor().dtype());
      if (!rank)
        throw Error(ErrorKind::Schema,
                    std::string("safetensors has no dtype ") +
                        std::string(sgckpt::name(child.tensor().dtype())) +
                        "; convert it first (sgckpt::cast, or sgckpt convert --cast)",
                    ErrorContext::at_key(name));
      out.push_back({name, &child.tensor(), *rank});
    } else {
      throw Error(ErrorKind::Schema,
                  std::string("safetensors holds only tensors, and this is a ") + kind_name(child.kind()) +
                      (child.is_dict()
                           ? ": save a state dict alone (e.g. state[\"net\"]) or flatten nested dicts into "
                             "'a.b' names (SaveOptions::flatten, sgckpt convert --flatten)"
                           : ": keep it in a .pth file, or put text in the \"__metadata__\" attribute"),
                  ErrorContext::at_key(name));
    }
  }
}

inline std::string header_json(const Value& root, const std::vector<Item>& items) {
  std::string out = "{";
  if (const Value* meta = root.dict().attribute("__metadata__")) {
    if (!meta->is_dict())
      throw Error(ErrorKind::Schema, "the \"__metadata__\" attribute must be a dict of strings");
    out += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : meta->dict()) {
      if (!k.is_str() || !v.is_str())
        throw Error(ErrorKind::Schema, "safetensors metadata maps strings to strings",
                    ErrorContext::at_key(".__metadata__/" + k.to_string()));
      if (!first) out.push_back(',');
      first = false;
      append_json_string(out, k.str());
      out.push_back(':');
      append_json_string(out, v.as_str());
    }
    out += "},";
  }
  std::uint64_t offset = 0;
  for (const Item& it : items) {
    append_json_string(out, it.name);
    out += ":{\"dtype\":\"" + std::string(kDTypes[it.rank].name) + "\",\"shape\":[";
    for (std::size_t d = 0; d < it.tensor->shape().size(); ++d)
      out += (d ? "," : "") + std::to_string(it.tensor->shape()[d]);
    const std::uint64_t end = offset + it.tensor->nbytes();
    out += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]},";
    offset = end;
  }
  if (out.back() == ',') out.pop_back();
  out.push_back('}');
  out.append((8 - out.size() % 8) % 8, ' ');
  return out;
}

using Sink = std::function<void(std::span<const std::byte>)>;

inline void write(const Value& root, const Sink& sink, bool flatten) {
  if (!root.is_dict())
    throw Error(ErrorKind::Schema,
                std::string("safetensors holds a dict of tensors, not a ") + kind_name(root.kind()));
  std::vector<Item> items;
  collect(root, "", flatten, items);
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.name < b.name;
  });
  for (std::size_t i = 1; i < items.size(); ++i)
    if (items[i].name == items[i - 1].name)
      throw Error(ErrorKind::Schema, "two tensors are named '" + items[i].name + "' once flattened",
                  ErrorContext::at_key(items[i].name));
  const std::string header = header_json(root, items);
  std::vector<std::byte> len;
  append_le(len, header.size(), 8);
  sink(len);
  sink(std::as_bytes(std::span(header.data(), header.size())));
  for (const Item& it : items) {
    if (it.tensor->is_contiguous()) {
      sink({static_cast<const std::byte*>(it.tensor->raw_data()), it.tensor->nbytes()});
    } else {
      const std::vector<std::byte> bytes = it.tensor->contiguous_bytes();
      sink(bytes);
    }
  }
}

}  // namespace sgckpt::detail::safetensors
