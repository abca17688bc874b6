// sgckpt/detail/pickle/convert.hpp: the conversion of a pickle's object graph into a
// sgckpt::Value tree, once, after STOP.
//
// A shared node becomes a copy each time it is reached (as torch.load gives one object, this
// gives equal values); the budget counts every value and every copy (budget.hpp).
// Cycles are refused, and so is nesting deeper than Limits::max_depth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "sgckpt/core/key_path.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/pickle/budget.hpp"
#include "sgckpt/detail/pickle/graph.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::pickle {

class Converter {
 public:
  Converter(Budget& budget, const Limits& limits) : budget_(budget), lim_(limits) {}

  // The value of `root` and everything below it.
  Value operator()(Node& root) { return convert(root, 0); }

 private:
  static constexpr std::uint64_t kBytesPerValue = Budget::kBytesPerValue;

  // The key path of the node being converted lives in path_ (one buffer for the walk).
  KeyPath::Level path_level(const Key& k) { return k.is_str() ? path_.key(k.str()) : path_.key(k.integer()); }

  Value convert(Node& n, std::uint32_t depth) {
    const std::string& path = path_.str();
    if (depth > lim_.max_depth)
      throw Error(ErrorKind::Limit,
                  "containers nested deeper than " + std::to_string(lim_.max_depth) + " levels",
                  ErrorContext::at_key(path));
    // A shared node is converted each time it is reached. Every value, and its key path by
    // length, counts toward max_values. Copies count toward the amplification budget
    // (Budget::converted): a shared container reached again copies its whole subtree (the billion
    // laughs), and a leaf reached again copies its str/bytes/big int/shape, charged by size
    // as in Budget::charge(). Reaching a small leaf again (torch memoizes a repeated str: 300k
    // references to one str are legitimate) costs no more than any other value.
    const bool again = n.converted;
    n.converted = true;
    const NodeKind kind = n.kind();
    const bool container = kind == NodeKind::List || kind == NodeKind::Tuple || kind == NodeKind::Dict;
    const std::uint64_t base = 1 + path.size() / kBytesPerValue;
    const std::uint64_t size_cost = again ? copy_cost(n) : 0;
    const bool copy_starts = again && container;
    budget_.converted(base, size_cost, copy_starts, path);
    if (n.on_path)
      throw Error(ErrorKind::Refused, "the object contains itself (reference cycle)",
                  ErrorContext::at_key(path));
    struct Guard {
      Node& n;
      Budget& budget;
      bool copy;
      Guard(Node& x, Budget& b, bool cp) : n(x), budget(b), copy(cp) {
        n.on_path = true;
        if (copy) budget.enter_copy();
      }
      ~Guard() {
        n.on_path = false;
        if (copy) budget.leave_copy();
      }
    } guard(n, budget_, copy_starts);
    budget_.account(sizeof(Value) + leaf_bytes(n));
    switch (kind) {
      case NodeKind::None:
        return Value();
      case NodeKind::Bool:
        return Value(*as<bool>(&n));
      case NodeKind::Int:
        return Value(*as<Int>(&n));
      case NodeKind::Float:
        return Value(*as<double>(&n));
      case NodeKind::Str:
        return Value(*as<std::string>(&n));
      case NodeKind::Bytes:
        return Value(*as<Bytes>(&n));
      case NodeKind::List:
      case NodeKind::Tuple:
      case NodeKind::Dict:
        return convert_container(n, kind, depth);
      case NodeKind::Tensor: {
        auto& t = *as<TensorObj>(&n);
        return Value(TensorValue<Tensor>{t.tensor, t.requires_grad, t.parameter});
      }
      case NodeKind::Storage: {
        // A bare storage (torch.save(tensor.storage())) reads as a 1-D tensor over all of it.
        auto& s = *as<StorageObj>(&n);
        const DType d = s.dtype.value_or(DType::UInt8);
        return Value(Tensor::view_of(s.storage, d, 0, {static_cast<std::int64_t>(s.numel)}, {1}));
      }
      case NodeKind::Device:
        return Value(*as<TorchDevice>(&n));
      case NodeKind::Numpy:
        if (!as<NumpyObj>(&n)->built)
          throw Error(ErrorKind::Corrupt, "a numpy array without its state (no BUILD after _reconstruct)",
                      ErrorContext::at_key(path));
        return Value(as<NumpyObj>(&n)->value);
      case NodeKind::NumpyDType:
        throw Error(ErrorKind::Refused, "a bare numpy.dtype value is not read (only arrays and scalars)",
                    ErrorContext::at_key(path));
      case NodeKind::Global:
        if (as<Global>(&n)->id == G::DTypeObject) return Value(as<Global>(&n)->dtype);  // torch.float32
        break;
      case NodeKind::Object:  // only a DCP .metadata pickle makes objects; its reader walks the graph
        throw Error(ErrorKind::Refused,
                    "a DCP metadata object ('" + as<ObjectObj>(&n)->cls + "') is not checkpoint data",
                    ErrorContext::at_key(path));
    }
    throw Error(ErrorKind::Refused,
                "a bare global '" + as<Global>(&n)->name + "' cannot be represented as checkpoint data",
                ErrorContext::at_key(path));
  }

  // What converting a node again copies, in values: its str / bytes / big int by size, a
  // tensor's shape and strides, a dict's key and attribute names.
  static std::uint64_t copy_cost(Node& n) {
    std::uint64_t cost = 0;
    if (auto* s = as<std::string>(&n)) cost += s->size() / kBytesPerValue;
    if (auto* b = as<Bytes>(&n)) cost += b->data.size() / kBytesPerValue;
    if (auto* i = as<Int>(&n); i && !i->fits_int64()) cost += 4096 / kBytesPerValue;  // LONG: <= 4096 bytes
    if (auto* t = as<TensorObj>(&n)) cost += 2 * t->tensor.dim();
    if (auto* a = as<NumpyObj>(&n)) cost += 2 * a->value.data.dim();
    if (auto* d = as<DictObj>(&n)) {
      for (auto& kv : d->items) cost += kv.first.is_str() ? kv.first.str().size() / kBytesPerValue : 0;
      for (auto& kv : d->attrs) cost += kv.first.size() / kBytesPerValue;
    }
    return cost;
  }

  // A list, tuple or dict and everything below it.
  Value convert_container(Node& n, NodeKind kind, std::uint32_t depth) {
    if (kind == NodeKind::Dict) {
      auto& d = *as<DictObj>(&n);
      if (!d.object_items.empty())
        throw Error(ErrorKind::Refused, "a dict keyed by objects is not checkpoint data",
                    ErrorContext::at_key(path_.str()));
      Dict out(d.kind);
      for (auto& [k, v] : d.items) {
        auto level = path_level(k);
        out.set(k, convert(*v, depth + 1));
      }
      // Names are unique (BUILD indexes them): append directly, as set_attribute's linear
      // search per name would make this loop quadratic in the number of attributes.
      for (auto& [k, v] : d.attrs) {
        auto level = path_.attribute(k);
        out.attributes().emplace_back(k, convert(*v, depth + 1));
      }
      return Value(std::move(out));
    }
    auto& items = kind == NodeKind::List ? as<ListObj>(&n)->items : as<TupleObj>(&n)->items;
    Value::List out;
    out.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      auto level = path_.index(i);
      out.push_back(convert(*items[i], depth + 1));
    }
    if (kind == NodeKind::Tuple && as<TupleObj>(&n)->torch_size) {
      std::vector<std::int64_t> dims;  // REDUCE checked they are 64-bit ints
      for (const Value& d : out) dims.push_back(d.as_int());
      return Value::make_torch_size(dims);
    }
    return kind == NodeKind::List ? Value::make_list(std::move(out)) : Value::make_tuple(std::move(out));
  }

  // Bytes a converted leaf copies (its str, bytes or big int).
  static std::uint64_t leaf_bytes(Node& n) {
    if (auto* s = as<std::string>(&n)) return s->size();
    if (auto* b = as<Bytes>(&n)) return b->data.size();
    if (auto* i = as<Int>(&n); i && !i->fits_int64()) return 4096;
    return 0;
  }

  Budget& budget_;
  const Limits& lim_;
  KeyPath path_;  // key path of the node convert() is at
};

}  // namespace sgckpt::detail::pickle
