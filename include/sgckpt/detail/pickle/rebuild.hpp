// sgckpt/detail/pickle/rebuild.hpp: torch's rebuild rules: what calling an allowed global
// (REDUCE, NEWOBJ), BUILD and a persistent id mean in a checkpoint pickle.
//
// Tensors are rebuilt as views of storages the container supplies (StorageResolver); storage
// sizes and tensor views are checked against the records. A state that torch would apply
// with setattr (which can replace a tensor's data) is refused, and so is every call torch's
// restricted loader would not make.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/keyed_hash.hpp"
#include "sgckpt/detail/pickle/dcp_objects.hpp"
#include "sgckpt/detail/pickle/globals.hpp"
#include "sgckpt/detail/pickle/graph.hpp"
#include "sgckpt/detail/pickle/numpy.hpp"

namespace sgckpt::detail::pickle {

// A storage named by a persistent id, to be supplied by the container (zip or legacy).
struct StorageRequest {
  std::string key;             // opaque; the zip record is data/<key>
  std::optional<DType> dtype;  // nullopt for torch.storage.UntypedStorage (numel counts bytes)
  std::uint64_t numel = 0;     // elements of dtype in the whole storage
  std::uint64_t nbytes = 0;    // numel * itemsize, overflow-checked
  std::string location;        // "cpu", "cuda:0", ...: ignored, everything loads to host
};

// Returns a storage of exactly request.nbytes bytes or throws sgckpt::Error.
using StorageResolver = std::function<std::shared_ptr<Storage>(const StorageRequest&)>;

class Rebuilder {
 public:
  // `legacy`: pre-1.6 stream, whose storage persistent ids are 6-tuples with view metadata.
  // `numpy`: numpy scalars and arrays are read (LoadOptions::numpy).
  // `dcp`: the pickle is a DCP .metadata file: its vocabulary (lookup_dcp_global,
  // dcp_objects.hpp) replaces the .pth one.
  Rebuilder(Graph& graph, const StorageResolver& resolver, bool legacy, bool numpy, bool dcp = false)
      : g_(graph),
        resolver_(resolver),
        legacy_(legacy),
        numpy_allowed_(numpy),
        dcp_(dcp),
        numpy_(graph),
        dcp_objects_(graph) {}

  // GLOBAL and STACK_GLOBAL: the global `module.name`, if it is allowed.
  NodeP global(const std::string& module, const std::string& name) {
    if (dcp_) {
      auto g = lookup_dcp_global(module, name);
      if (!g)
        fail(ErrorKind::Refused, "refused global '" + module + "." + name +
                                     "': only DCP's metadata classes are allowed in a .metadata file");
      return make(std::move(*g));
    }
    auto g = lookup_global(module, name);
    if (!g)
      fail(ErrorKind::Refused,
           "refused global '" + module + "." + name +
               "': only tensor, storage and container globals are allowed in checkpoint data");
    if (is_numpy_global(g->id) && !numpy_allowed_)
      fail(ErrorKind::Refused,
           "numpy value ('" + g->name +
               "') refused: numpy values are switched off (LoadOptions::numpy, --no-numpy)");
    return make(std::move(*g));
  }

  // NEWOBJ: only torch.nn.Parameter(tensor[, requires_grad]).
  NodeP new_object(const NodeP& cls, const NodeP& args) {
    auto* g = as<Global>(cls);
    if (dcp_) {
      auto* t = as<TupleObj>(args);
      if (!g || !t) fail(ErrorKind::Corrupt, "NEWOBJ needs a class and a tuple");
      return dcp_objects_.new_object(*g, *t);
    }
    if (!g || g->id != G::ParameterClass)
      fail(ErrorKind::Refused, "NEWOBJ is only allowed for torch.nn.Parameter, found " +
                                   (g ? "'" + g->name + "'" : std::string("a ") + node_kind(*cls)));
    auto* t = as<TupleObj>(args);
    if (!t || t->items.empty() || t->items.size() > 2 || !as<TensorObj>(t->items[0]))
      fail(ErrorKind::Corrupt, "torch.nn.Parameter(...) needs (tensor[, requires_grad]) arguments");
    charge(2 * as<TensorObj>(t->items[0])->tensor.dim());  // shape and strides are copied
    TensorObj p = *as<TensorObj>(t->items[0]);
    p.parameter = true;
    p.requires_grad = t->items.size() == 2 ? bool_of(t->items[1], "requires_grad") : true;
    return make(std::move(p));
  }

  // REDUCE: a call of an allowed global.
  NodeP reduce(const NodeP& callable, const NodeP& args_node) {
    auto* g = as<Global>(callable);
    if (!g)
      fail(ErrorKind::Refused,
           std::string("REDUCE of a ") + node_kind(*callable) + " (only allowed globals can be called)");
    auto* t = as<TupleObj>(args_node);
    if (!t)
      fail(ErrorKind::Corrupt,
           "REDUCE arguments for '" + g->name + "' must be a tuple, found a " + node_kind(*args_node));
    auto& a = t->items;
    auto argc = [&](std::size_t lo, std::size_t hi) { check_argc(*g, a, lo, hi); };
    switch (g->id) {
      case G::OrderedDict: {
        argc(0, 0);
        DictObj d;
        d.kind = DictKind::OrderedDict;
        return make(std::move(d));
      }
      case G::Counter: {
        argc(0, 1);
        return counter(a);
      }
      case G::CodecsEncode: {
        argc(2, 2);
        auto* text = as<std::string>(a[0]);
        auto* enc = as<std::string>(a[1]);
        if (!text || !enc) fail(ErrorKind::Corrupt, "_codecs.encode needs (str, str) arguments");
        if (*enc != "latin1" && *enc != "latin-1" && *enc != "iso-8859-1")
          fail(ErrorKind::Refused,
               "_codecs.encode with encoding '" + *enc + "' (only latin1 is used for bytes)");
        charge_reuse(*a[0], text->size() / kBytesPerValue);  // a new bytes object per call
        return make(Bytes{utf8_to_latin1(*text)});
      }
      case G::BytesClass: {
        argc(0, 0);
        return make(Bytes{});
      }
      case G::TorchSize: {
        argc(0, 1);
        if (a.empty()) return make(TupleObj{{}, true});
        int_tuple(a[0], "torch.Size dimension");  // charges the copy
        return make(TupleObj{as<TupleObj>(a[0])->items, true});
      }
      case G::RebuildTensor: {
        argc(4, 4);
        return rebuild_tensor(a[0], a[1], a[2], a[3], std::nullopt, false);
      }
      case G::RebuildTensorV2: {
        argc(6, 7);
        if (a.size() == 7) check_metadata(a[6]);
        return rebuild_tensor(a[0], a[1], a[2], a[3], std::nullopt, bool_of(a[4], "requires_grad"));
      }
      case G::RebuildTensorV3: {
        argc(7, 8);
        auto* d = as<Global>(a[6]);
        if (!d || d->id != G::DTypeObject)
          fail(ErrorKind::Corrupt, "_rebuild_tensor_v3 needs a dtype as its 7th argument");
        if (a.size() == 8) check_metadata(a[7]);
        return rebuild_tensor(a[0], a[1], a[2], a[3], d->dtype, bool_of(a[4], "requires_grad"));
      }
      case G::RebuildParameter:
        argc(3, 3);
        return rebuild_parameter(*g, a);
      case G::RebuildParameterWithState:
        argc(4, 4);
        return rebuild_parameter(*g, a);
      case G::RebuildFromTypeV2:
        argc(4, 4);
        return rebuild_from_type(a);
      case G::TorchDevice:
        argc(1, 2);
        return numpy_.device(a);
      case G::NumpyDType:
        argc(3, 3);
        return numpy_.dtype(a);
      case G::NumpyScalar:
        argc(1, 2);
        return numpy_.scalar(a);
      case G::NumpyReconstruct:
        argc(3, 3);
        return numpy_.reconstruct(a);
      case G::DcpGetLayout:
      case G::DcpMemFormat:
      case G::PathClass:
        return dcp_objects_.reduce(*g, a);
      default:
        fail(ErrorKind::Refused, "'" + g->name + "' cannot be called");
    }
  }

  void build(const NodeP& target, const NodeP& state) {
    if (auto* o = as<ObjectObj>(target)) return dcp_objects_.build(*o, state);
    if (auto* d = as<NumpyDTypeObj>(target)) return numpy_.build_dtype(*d, state);
    if (auto* arr = as<NumpyObj>(target)) return numpy_.build_array(*arr, state);
    if (auto* d = as<DictObj>(target)) {
      if (d->kind != DictKind::OrderedDict) fail(ErrorKind::Refused, "BUILD on a plain dict is not allowed");
      auto* st = as<DictObj>(state);
      if (!st)
        fail(ErrorKind::Corrupt,
             std::string("BUILD state for an OrderedDict must be a dict, found a ") + node_kind(*state));
      // Indexed by name: a linear search per item made one BUILD of n attributes O(n^2)
      // (100k names in a 1.2 MB file ran for minutes). Each BUILD is charged its items, as a
      // memoized state dict can be BUILT again and again for 2 bytes each.
      charge_reuse(*state, st->items.size());
      for (auto& [k, v] : st->items) {
        if (!k.is_str()) fail(ErrorKind::Corrupt, "OrderedDict attribute names must be str");
        auto [it, inserted] = d->attr_index.try_emplace(k.str(), d->attrs.size());
        if (inserted) {
          charge(2 * k.str().size() / kBytesPerValue);
          account(kItemBytes + 2 * k.str().size());
          d->attrs.emplace_back(k.str(), v);
        } else {
          d->attrs[it->second].second = v;
        }
      }
      return;
    }
    if (as<TensorObj>(target))
      // torch's loaders call tensor.set_(*state) or Parameter.__setstate__(state), which replace
      // the data: this reader would keep other weights than torch shows. torch itself never
      // writes it (tensors and Parameters rebuild through torch._utils).
      fail(ErrorKind::Refused, "BUILD on a tensor (torch would replace its data with the state): refused");
    fail(ErrorKind::Refused, std::string("BUILD on a ") + node_kind(*target) + " is not allowed");
  }

  NodeP persistent(const NodeP& pid) {
    if (dcp_) fail(ErrorKind::Refused, "a persistent id in a DCP .metadata file (it holds no tensor data)");
    auto* t = as<TupleObj>(pid);
    if (!t)
      fail(ErrorKind::Corrupt, std::string("persistent id must be a tuple, found a ") + node_kind(*pid));
    auto& a = t->items;
    const std::size_t arity = legacy_ ? 6 : 5;
    if (a.empty() || !as<std::string>(a[0]) || *as<std::string>(a[0]) != "storage") {
      if (!a.empty() && as<std::string>(a[0]) && *as<std::string>(a[0]) == "module")
        fail(ErrorKind::Refused,
             "the checkpoint pickles a whole nn.Module (persistent id 'module'); only state_dicts can be "
             "read");
      fail(ErrorKind::Corrupt, "persistent id is not a ('storage', ...) tuple");
    }
    if (a.size() != arity)
      fail(ErrorKind::Corrupt, "storage persistent id has " + std::to_string(a.size()) +
                                   " fields (expected " + std::to_string(arity) + ")");
    auto* cls = as<Global>(a[1]);
    if (!cls || (cls->id != G::StorageClass && cls->id != G::UntypedStorage))
      fail(ErrorKind::Corrupt, "storage persistent id names no storage class");
    auto* key = as<std::string>(a[2]);
    if (!key) {
      if (auto* ik = as<Int>(a[2])) {  // tolerate int keys: treat them as their decimal text
        a[2] = make(ik->to_string());
        key = as<std::string>(a[2]);
      } else {
        fail(ErrorKind::Corrupt, "storage key must be a str");
      }
    }
    auto* loc = as<std::string>(a[3]);
    if (!loc) fail(ErrorKind::Corrupt, "storage location must be a str");
    const std::int64_t numel = int_of(a[4], "storage size");
    if (numel < 0) fail(ErrorKind::Corrupt, "negative storage size " + std::to_string(numel));
    std::optional<DType> dtype;
    if (cls->id == G::StorageClass) dtype = cls->dtype;
    const std::size_t isz = dtype ? itemsize(*dtype) : 1;
    std::uint64_t nbytes;
    if (sgckpt::detail::mul_overflows(static_cast<std::uint64_t>(numel), isz, nbytes))
      fail(ErrorKind::Limit, "storage '" + *key + "' size overflows 64 bits");

    NodeP base;
    if (auto it = storages_.find(*key); it != storages_.end()) {
      auto& s = *as<StorageObj>(it->second);
      if (s.dtype != dtype || s.numel != static_cast<std::uint64_t>(numel))
        fail(ErrorKind::Refused, "storage '" + *key + "' is declared twice with different types or sizes (" +
                                     describe(s.dtype, s.numel) + " and " +
                                     describe(dtype, static_cast<std::uint64_t>(numel)) + ")");
      base = it->second;
    } else {
      StorageRequest req{*key, dtype, static_cast<std::uint64_t>(numel), nbytes, *loc};
      std::shared_ptr<Storage> st;
      try {
        st = resolver_(req);
      } catch (const Error& e) {
        throw Error(e.kind(), e.message(), ErrorContext::at_offset(g_.op_start))
            .with_record(e.context().record);
      }
      if (!st || st->nbytes() != nbytes)
        fail(ErrorKind::Corrupt, "storage '" + *key + "' has the wrong size");
      base = make(StorageObj{std::move(st), dtype, static_cast<std::uint64_t>(numel), *key});
      storages_.emplace(*key, base);
    }
    if (!legacy_ || as<std::monostate>(a[5])) return base;

    // Legacy view metadata: (view_key, offset, size) selects a slice of the storage.
    auto* vm = as<TupleObj>(a[5]);
    if (!vm || vm->items.size() != 3 || !as<std::string>(vm->items[0]))
      fail(ErrorKind::Corrupt, "legacy storage view metadata must be (str, int, int)");
    const std::string& vkey = *as<std::string>(vm->items[0]);
    const std::int64_t voff = int_of(vm->items[1], "storage view offset");
    const std::int64_t vsize = int_of(vm->items[2], "storage view size");
    if (auto it = storages_.find(vkey); it != storages_.end()) return it->second;
    auto& bs = *as<StorageObj>(base);
    if (voff < 0 || vsize < 0 || static_cast<std::uint64_t>(voff) > bs.numel ||
        static_cast<std::uint64_t>(vsize) > bs.numel - static_cast<std::uint64_t>(voff))
      fail(ErrorKind::Corrupt, "legacy storage view [" + std::to_string(voff) + ", +" +
                                   std::to_string(vsize) + ") lies outside storage '" + *key + "' of " +
                                   std::to_string(bs.numel) + " elements");
    auto view = Storage::view(bs.storage, bs.storage->data() + static_cast<std::size_t>(voff) * isz,
                              static_cast<std::size_t>(vsize) * isz);
    NodeP vn = make(StorageObj{std::move(view), dtype, static_cast<std::uint64_t>(vsize), vkey});
    storages_.emplace(vkey, vn);
    return vn;
  }

 private:
  static constexpr std::uint64_t kBytesPerValue = Budget::kBytesPerValue;
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const { g_.fail(kind, msg); }
  template <class X>
  NodeP make(X x) {
    return g_.make(std::move(x));
  }
  void account(std::uint64_t bytes) { g_.budget.account(bytes); }
  void charge(std::uint64_t values) { g_.budget.charge(values); }
  void charge_reuse(Node& n, std::uint64_t values) { g_.charge_reuse(n, values); }

  std::int64_t int_of(const NodeP& n, const char* what) {
    auto* i = as<Int>(n);
    if (!i) fail(ErrorKind::Corrupt, std::string(what) + " must be an int, found a " + node_kind(*n));
    if (!i->fits_int64())
      fail(ErrorKind::Corrupt, std::string(what) + " " + i->to_string() + " does not fit in 64 bits");
    return i->to_int64();
  }
  bool bool_of(const NodeP& n, const char* what) {
    if (auto* b = as<bool>(n)) return *b;
    if (auto* i = as<Int>(n)) return i->fits_int64() && i->to_int64() != 0;  // old pickles used ints
    fail(ErrorKind::Corrupt, std::string(what) + " must be a bool, found a " + node_kind(*n));
  }
  Shape int_tuple(const NodeP& n, const char* what) {
    auto* t = as<TupleObj>(n);
    if (!t)
      fail(ErrorKind::Corrupt, std::string(what) + " must be a tuple of ints, found a " + node_kind(*n));
    charge(t->items.size());  // copied into a Shape, once per (memoized, reusable) tuple use
    Shape out;
    out.reserve(t->items.size());
    for (auto& e : t->items) out.push_back(int_of(e, what));
    return out;
  }

  void check_argc(const Global& g, const std::vector<NodeP>& a, std::size_t lo, std::size_t hi) {
    if (a.size() < lo || a.size() > hi)
      fail(ErrorKind::Corrupt, "'" + g.name + "' called with " + std::to_string(a.size()) +
                                   " arguments (expects " + std::to_string(lo) +
                                   (hi != lo ? " to " + std::to_string(hi) : "") + ")");
  }

  // collections.Counter() or Counter(dict): a copy of the dict.
  NodeP counter(const std::vector<NodeP>& a) {
    DictObj d;
    if (a.size() == 1) {
      auto* src = as<DictObj>(a[0]);
      if (!src)
        fail(ErrorKind::Corrupt,
             "collections.Counter(...) argument must be a dict, found a " + std::string(node_kind(*a[0])));
      std::uint64_t key_bytes = 0;
      for (auto& kv : src->items) key_bytes += kv.first.is_str() ? kv.first.str().size() : 0;
      charge_reuse(*a[0], src->items.size() + 2 * key_bytes / kBytesPerValue);  // a full copy (items + index)
      account(src->items.size() * kItemBytes + 2 * key_bytes);
      d = *src;
      d.attr_index.clear();
      d.attrs.clear();
    }
    d.kind = DictKind::Counter;
    return make(std::move(d));
  }

  // torch._utils._rebuild_parameter(data, requires_grad, hooks) and
  // _rebuild_parameter_with_state(..., state): the tensor as a Parameter (state must be empty).
  NodeP rebuild_parameter(const Global& g, const std::vector<NodeP>& a) {
    auto* data = as<TensorObj>(a[0]);
    if (!data)
      fail(ErrorKind::Corrupt, "'" + g.name + "' needs a tensor, found a " + std::string(node_kind(*a[0])));
    if (a.size() == 4) require_empty_state(a[3], g.name);
    charge(2 * data->tensor.dim());  // shape and strides are copied
    TensorObj p = *data;
    p.parameter = true;
    p.requires_grad = bool_of(a[1], "requires_grad");
    return make(std::move(p));
  }

  // torch._tensor._rebuild_from_type_v2(func, cls, args, state).
  // torch: ret = func(*args); ret.as_subclass(cls); _set_obj_state(ret, state). func must be
  // a plain tensor rebuild: anything else (another _rebuild_from_type_v2, thousands deep,
  // overflowed the stack; OrderedDict yielded a dict where torch expects a tensor) is
  // refused, and so is a state, which torch applies with setattr (state {"data": t}
  // replaces the weights).
  NodeP rebuild_from_type(const std::vector<NodeP>& a) {
    auto* fn = as<Global>(a[0]);
    auto* cls = as<Global>(a[1]);
    if (!fn || !cls) fail(ErrorKind::Corrupt, "_rebuild_from_type_v2 needs a function and a class");
    if (fn->id != G::RebuildTensor && fn->id != G::RebuildTensorV2 && fn->id != G::RebuildTensorV3)
      fail(
          ErrorKind::Refused,
          "_rebuild_from_type_v2 must call a tensor rebuild function (torch._utils._rebuild_tensor*), not '" +
              fn->name + "'");
    if (cls->id != G::TensorClass && cls->id != G::ParameterClass)
      fail(ErrorKind::Refused,
           "_rebuild_from_type_v2 of class '" + cls->name + "' (only torch.Tensor and torch.nn.Parameter)");
    require_empty_state(a[3], "_rebuild_from_type_v2");
    NodeP r = reduce(a[0], a[2]);
    if (cls->id == G::ParameterClass) as<TensorObj>(r)->parameter = true;
    return r;
  }

  // The text of a latin1-encoded bytes object: every code point must be below 256.
  std::string utf8_to_latin1(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else if ((c == 0xC2 || c == 0xC3) && i + 1 < s.size() &&
                 (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) {
        out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F)));
        ++i;
      } else {
        fail(ErrorKind::Corrupt, "_codecs.encode text is not latin1");
      }
    }
    return out;
  }

  // torch applies a rebuilt tensor's state with setattr (torch._utils._set_obj_state): a
  // non-empty state can replace its data. Empty means None, {} or a (dict, slots) pair of
  // those, which torch leaves alone.
  void require_empty_state(NodeP state, const std::string& who) {
    auto empty = [&](NodeP x) {
      if (as<std::monostate>(x)) return true;
      auto* d = as<DictObj>(x);
      return d && d->items.empty() && d->attrs.empty();
    };
    if (empty(state)) return;
    if (auto* t = as<TupleObj>(state); t && t->items.size() == 2 && empty(t->items[0]) && empty(t->items[1]))
      return;
    fail(ErrorKind::Refused,
         "'" + who +
             "' with a non-empty state (torch would set it as attributes of the tensor, which can replace "
             "its data): refused");
  }

  void check_metadata(const NodeP& m) {
    if (as<std::monostate>(m)) return;
    auto* d = as<DictObj>(m);
    if (!d) fail(ErrorKind::Corrupt, "tensor metadata must be a dict");
    for (auto& [k, v] : d->items) {
      auto* b = as<bool>(v);
      if (b && !*b) continue;
      fail(ErrorKind::Refused,
           "tensor metadata '" + k.to_string() + "' (conjugate/negative views) is not supported");
    }
  }

  NodeP rebuild_tensor(const NodeP& storage, const NodeP& offset, const NodeP& size, const NodeP& stride,
                       std::optional<DType> dtype, bool requires_grad) {
    auto* s = as<StorageObj>(storage);
    if (!s)
      fail(ErrorKind::Corrupt, std::string("tensor rebuild needs a storage, found a ") + node_kind(*storage));
    if (!dtype) {
      if (!s->dtype)
        fail(ErrorKind::Corrupt,
             "tensor rebuild from an UntypedStorage needs _rebuild_tensor_v3 and a dtype");
      dtype = s->dtype;
    }
    const std::int64_t off = int_of(offset, "storage offset");
    Shape sz = int_tuple(size, "tensor size");
    Shape st = int_tuple(stride, "tensor stride");
    try {
      TensorObj t{Tensor::view_of(s->storage, *dtype, off, std::move(sz), std::move(st)), requires_grad,
                  false};
      return make(std::move(t));
    } catch (const Error& e) {
      fail(e.kind() == ErrorKind::Usage ? ErrorKind::Corrupt : e.kind(),
           e.message() + " (storage '" + s->key + "')");
    }
  }

  static std::string describe(std::optional<DType> d, std::uint64_t numel) {
    return (d ? std::string(info(*d).storage_class) : std::string("UntypedStorage")) + " of " +
           std::to_string(numel);
  }

  Graph& g_;
  const StorageResolver& resolver_;
  bool legacy_;
  bool numpy_allowed_;
  bool dcp_;
  NumpyRebuilder numpy_;
  DcpObjects dcp_objects_;
  std::unordered_map<std::string, NodeP, sgckpt::detail::KeyedHash> storages_;  // by key, views included
};

}  // namespace sgckpt::detail::pickle
