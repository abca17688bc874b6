// tools/sgckpt/tree_printer.hpp: the readable tree of `sgckpt inspect`.
//
// One line per node, indented by depth, each with its full key path:
//
//   <root>: dict, 2 items
//     model: OrderedDict, 2 items, attributes: _metadata
//       model/fc.weight: Parameter float32 [3, 5], 60 bytes, requires_grad
//       model/fc.bias: tensor float32 [3] strides [2] offset 1, 12 bytes, shares storage with model/fc.weight
//     lr: float 0.1
//   total: 2 tensors, 1 storage, 72 tensor bytes, 60 storage bytes
//
// Tensors: dtype, shape, strides when not contiguous, storage offset when not 0, byte size,
// Parameter / requires_grad marks, and which earlier tensor they share a storage with.
// Scalars: their value (Python's spelling: None, True, 3, 0.1, inf; str and bytes quoted,
// escaped and truncated). Containers: their kind and size. Totals: tensors, distinct storages, the
// bytes of all tensors' elements and the bytes of all distinct storages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_map>

#include "expansion_budget.hpp"
#include "json_writer.hpp"
#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"

namespace sgckpt::tool {

struct TreeOptions {
  std::size_t max_string_bytes = 60;  // longer str values are cut (at a character boundary)
  std::size_t indent = 2;             // spaces per nesting level
  // Lines deeper than this many levels below the root are not shown (their tensors still
  // count in the totals).
  std::size_t max_depth = static_cast<std::size_t>(-1);
  ExpansionBudget budget;  // bounds the text (expansion_budget.hpp)
};

struct TreeTotals {
  std::uint64_t tensors = 0;
  std::uint64_t storages = 0;       // distinct storages
  std::uint64_t tensor_bytes = 0;   // sum of numel * itemsize
  std::uint64_t storage_bytes = 0;  // sum over distinct storages
};

namespace text {

// Text for display on one line: valid UTF-8 as is; control characters as \n, \t, \r, \xNN;
// C1 controls, U+2028/U+2029 and encoded surrogates as \uXXXX; bytes that are not UTF-8 as
// \xNN. With `quoted`, also '"' and '\' escaped.
inline void append_escaped(std::string& out, std::string_view s, bool quoted) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto hex_byte = [&](unsigned char c) {
    out += "\\x";
    out += kDigits[c >> 4];
    out += kDigits[c & 0xF];
  };
  std::size_t i = 0;
  while (i < s.size()) {
    const Utf8Step step = utf8_step(s, i);
    if (step.kind == Utf8Step::Ascii) {
      const auto c = static_cast<unsigned char>(step.codepoint);
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c < 0x20 || c == 0x7F) {
        hex_byte(c);
      } else if (quoted && (c == '"' || c == '\\')) {
        out += '\\';
        out += static_cast<char>(c);
      } else {
        out += static_cast<char>(c);
      }
    } else if (step.kind == Utf8Step::Valid && !(step.codepoint >= 0x80 && step.codepoint <= 0x9F) &&
               step.codepoint != 0x2028 && step.codepoint != 0x2029) {
      out.append(s.data() + i, step.length);
    } else if (step.kind != Utf8Step::Invalid) {  // C1 controls, line/paragraph separators, surrogates
      json::append_hex4(out, step.codepoint);
    } else {
      for (std::size_t k = 0; k < step.length; ++k) hex_byte(static_cast<unsigned char>(s[i + k]));
    }
    i += step.length;
  }
}

// "60 bytes", "1572864 bytes (1.50 MiB)".
inline std::string byte_size(std::uint64_t n) {
  std::string s = std::to_string(n) + (n == 1 ? " byte" : " bytes");
  if (n >= 1024) {
    static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(n) / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
      v /= 1024.0;
      ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), " (%.2f %s)", v, kUnits[u]);
    s += buf;
  }
  return s;
}

inline std::string count(std::uint64_t n, const char* singular, const char* plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

inline void append_dims(std::string& out, const Shape& dims) {
  out += '[';
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (d) out += ", ";
    out += std::to_string(dims[d]);
  }
  out += ']';
}

}  // namespace text

class TreePrinter {
 public:
  explicit TreePrinter(TreeOptions options = {}) : options_(options) {}

  // Appends the tree of `root` (without the totals line) and accumulates the totals.
  void print(std::string& out, const Value& root) { node(out, root, 0); }

  const TreeTotals& totals() const noexcept { return totals_; }

  // "state dicts: net 122 tensors, 11173962 elements; ema_net ...": the dicts directly under
  // the root whose values are all tensors (a checkpoint's models), empty if none.
  static std::string state_dicts_line(const Value& root) {
    if (!root.is_dict()) return {};
    std::string out;
    for (const auto& [k, v] : root.dict()) {
      if (!v.is_dict() || v.dict().empty()) continue;
      std::uint64_t tensors = 0, elements = 0;
      for (const auto& [name, t] : v.dict()) {
        if (!t.is_tensor()) {
          tensors = 0;
          break;
        }
        ++tensors;
        elements += t.tensor().numel();
      }
      if (tensors == 0) continue;
      out += (out.empty() ? "state dicts: " : "; ") + k.to_string() + " " +
             text::count(tensors, "tensor", "tensors") + ", " + text::count(elements, "element", "elements");
    }
    return out;
  }

  static std::string totals_line(const TreeTotals& t) {
    return "total: " + text::count(t.tensors, "tensor", "tensors") + ", " +
           text::count(t.storages, "storage", "storages") + ", " + std::to_string(t.tensor_bytes) +
           " tensor bytes, " + std::to_string(t.storage_bytes) + " storage bytes";
  }

 private:
  // Depth is bounded by the loader's (Limits::max_depth); long keys are abbreviated in paths
  // (KeyPath), so a line costs O(depth), and the budget bounds the whole text.
  void node(std::string& out_shown, const Value& v, std::size_t depth) {
    // Below max_depth the lines are made (the totals come with them) but not kept.
    if (depth > options_.max_depth) hidden_.clear();
    std::string& out = depth > options_.max_depth ? hidden_ : out_shown;
    const std::string& path = path_.str();
    options_.budget.check(out.size(), "the listing");
    out.append(std::min(depth, kMaxIndentLevels) * options_.indent, ' ');
    if (depth == 0) {
      out += "<root>";
    } else {
      text::append_escaped(out, shown_path(path), false);
    }
    out += ": ";
    switch (v.kind()) {
      case Kind::None:
        out += "None";
        break;
      case Kind::Bool:
        out += v.as_bool() ? "bool True" : "bool False";
        break;
      case Kind::Int:
        out += "int " + v.as_big_int().to_string();
        break;
      case Kind::Float:
        out += "float " + json::format_double(v.as_float());
        break;
      case Kind::Str:
        string_value(out, v.as_str());
        break;
      case Kind::Bytes:
        bytes_value(out, v.as_bytes().data);
        break;
      case Kind::DType:
        out += "dtype torch.";
        out += name(v.as_dtype());
        break;
      case Kind::Device:
        out += "device ";
        text::append_escaped(out, v.as_device().to_string(), false);
        break;
      case Kind::Numpy:
        numpy_value(out, v.numpy());
        break;
      case Kind::Tensor:
        tensor(out, v.tensor_value(), path);
        break;
      case Kind::List:
      case Kind::Tuple: {
        const auto& items = v.items();
        if (v.is_torch_size()) {
          out += "torch.Size ";
          std::vector<std::int64_t> dims;
          for (const auto& e : items) dims.push_back(e.as_int());
          text::append_dims(out, dims);
          break;
        }
        out += v.is_list() ? "list, " : "tuple, ";
        out += text::count(items.size(), "item", "items");
        out += '\n';
        for (std::size_t i = 0; i < items.size(); ++i) {
          auto level = path_.index(i);
          node(out, items[i], depth + 1);
        }
        return;
      }
      case Kind::Dict: {
        const auto& d = v.dict();
        switch (d.kind()) {
          case DictKind::Dict:
            out += "dict, ";
            break;
          case DictKind::OrderedDict:
            out += "OrderedDict, ";
            break;
          case DictKind::Counter:
            out += "Counter, ";
            break;
        }
        out += text::count(d.size(), "item", "items");
        if (!d.attributes().empty()) {
          out += ", attributes: ";
          bool first = true;
          for (const auto& [name, value] : d.attributes()) {
            if (!first) out += ", ";
            first = false;
            text::append_escaped(out, name, false);
          }
        }
        out += '\n';
        for (const auto& [key, child] : d) {
          auto level = key.is_str() ? path_.key(key.str()) : path_.key(key.integer());
          node(out, child, depth + 1);
        }
        return;
      }
    }
    out += '\n';
  }

  // Deeper levels are not indented further, and a long path shows only its end: a line
  // stays short however deep a file nests (900 levels of long keys printed 1 GB).
  static constexpr std::size_t kMaxIndentLevels = 32;
  static constexpr std::size_t kMaxPathBytes = 256;
  static std::string shown_path(std::string_view path) {
    if (path.size() <= kMaxPathBytes) return std::string(path);
    std::size_t from = path.size() - kMaxPathBytes + 3;
    while (from < path.size() && (static_cast<unsigned char>(path[from]) & 0xC0) == 0x80) ++from;
    return "..." + std::string(path.substr(from));
  }

  void string_value(std::string& out, const std::string& s) {
    out += "str \"";
    if (s.size() <= options_.max_string_bytes) {
      text::append_escaped(out, s, true);
      out += '"';
      return;
    }
    // Cut at a character boundary at or before the limit.
    std::size_t cut = 0;
    while (cut < s.size()) {
      const std::size_t next = cut + utf8_step(s, cut).length;
      if (next > options_.max_string_bytes) break;
      cut = next;
    }
    text::append_escaped(out, std::string_view(s).substr(0, cut), true);
    out += "\"... (" + std::to_string(s.size()) + " bytes)";
  }

  // Python's b'' spelling, cut after max_string_bytes bytes: printable ASCII as is, '"' and
  // '\' escaped, \n \t \r, everything else \xNN.
  void bytes_value(std::string& out, const std::string& b) {
    static constexpr char kDigits[] = "0123456789abcdef";
    out += "bytes b\"";
    const std::size_t shown = b.size() < options_.max_string_bytes ? b.size() : options_.max_string_bytes;
    for (std::size_t i = 0; i < shown; ++i) {
      const auto c = static_cast<unsigned char>(b[i]);
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c >= 0x20 && c < 0x7F) {
        out += static_cast<char>(c);
      } else {
        out += "\\x";
        out += kDigits[c >> 4];
        out += kDigits[c & 0xF];
      }
    }
    out += '"';
    if (shown < b.size()) out += "... (" + std::to_string(b.size()) + " bytes)";
  }

  // "numpy scalar float64 1.5", "numpy array float64 [2, 2], 32 bytes".
  static void numpy_value(std::string& out, const NumpyValue& n) {
    const Tensor& t = n.data;
    out += n.scalar ? "numpy scalar " : "numpy array ";
    out += name(t.dtype());
    out += ' ';
    if (n.scalar && !is_complex(t.dtype())) {
      if (t.dtype() == DType::Bool)
        out += t.element_as_double(0) != 0 ? "True" : "False";
      else if (is_floating(t.dtype()))
        out += json::format_double(t.element_as_double(0));
      else if (t.dtype() == DType::UInt64)
        out += std::to_string(t.item<std::uint64_t>());
      else
        out += std::to_string(cast(t, DType::Int64).item<std::int64_t>());
      return;
    }
    text::append_dims(out, t.shape());
    out += ", " + text::byte_size(t.nbytes());
  }

  void tensor(std::string& out, const TensorValue<Tensor>& tv, const std::string& path) {
    const Tensor& t = tv.tensor;
    out += tv.parameter ? "Parameter " : "tensor ";
    out += name(t.dtype());
    out += ' ';
    text::append_dims(out, t.shape());
    if (!t.is_contiguous()) {
      out += " strides ";
      text::append_dims(out, t.strides());
    }
    if (t.storage_offset() != 0) out += " offset " + std::to_string(t.storage_offset());
    out += ", " + text::byte_size(t.nbytes());
    if (tv.requires_grad) out += ", requires_grad";

    ++totals_.tensors;
    totals_.tensor_bytes += t.nbytes();
    if (const Storage* s = t.storage().get()) {
      auto [it, inserted] = storages_.try_emplace(s, path);
      if (inserted) {
        ++totals_.storages;
        totals_.storage_bytes += s->nbytes();
      } else {
        out += ", shares storage with ";
        text::append_escaped(out, it->second.empty() ? std::string("<root>") : it->second, false);
      }
    }
  }

  TreeOptions options_;
  std::string hidden_;  // the lines below max_depth, discarded
  TreeTotals totals_;
  KeyPath path_;                                              // of the node being printed
  std::unordered_map<const Storage*, std::string> storages_;  // storage -> first tensor's path
};

// The whole text of `sgckpt inspect`: the tree, then the totals line.
inline std::string render_tree(const Value& root, const TreeOptions& options = {}) {
  TreePrinter p(options);
  std::string out;
  p.print(out, root);
  out += TreePrinter::totals_line(p.totals());
  out += '\n';
  if (const std::string sd = TreePrinter::state_dicts_line(root); !sd.empty()) out += sd + '\n';
  return out;
}

}  // namespace sgckpt::tool
