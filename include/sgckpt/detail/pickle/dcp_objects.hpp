// sgckpt/detail/pickle/dcp_objects.hpp: what the .metadata pickle of a torch.distributed.checkpoint
// directory may make: instances of DCP's metadata dataclasses (NEWOBJ with no arguments, then
// BUILD with a dict of fields, or TensorProperties' tuple), and the three calls their fields
// pickle as: torch.serialization._get_layout(str), _MEM_FORMAT_ENCODING(int) and
// pathlib.PosixPath(str, ...). The names are looked up in lookup_dcp_global (globals.hpp); the
// objects stay nodes of the graph, and detail/dcp/metadata_reader.hpp checks their fields.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sgckpt/detail/pickle/globals.hpp"
#include "sgckpt/detail/pickle/graph.hpp"

namespace sgckpt::detail::pickle {

class DcpObjects {
 public:
  explicit DcpObjects(Graph& graph) : g_(graph) {}

  // NEWOBJ: cls() for a DCP dataclass.
  NodeP new_object(const Global& cls, const TupleObj& args) {
    if (cls.id != G::DcpClass)
      fail(ErrorKind::Refused, "NEWOBJ of '" + cls.name + "' (only DCP's metadata classes)");
    if (!args.items.empty())
      fail(ErrorKind::Corrupt, "NEWOBJ of " + cls.name + " with arguments (dataclasses pickle with none)");
    return g_.make(ObjectObj{cls.name, {}, nullptr});
  }

  // REDUCE of a DCP global other than torch.Size.
  NodeP reduce(const Global& g, const std::vector<NodeP>& a) {
    switch (g.id) {
      case G::DcpGetLayout:
        if (a.size() != 1 || !as<std::string>(a[0]))
          fail(ErrorKind::Corrupt, "_get_layout needs one str argument");
        return g_.make(std::string(*as<std::string>(a[0])));
      case G::DcpMemFormat:
        if (a.size() != 1 || !as<Int>(a[0])) fail(ErrorKind::Corrupt, "_MEM_FORMAT_ENCODING needs one int");
        return g_.make(Int(*as<Int>(a[0])));
      case G::PathClass: {
        std::string path;
        for (const NodeP& part : a) {
          auto* s = as<std::string>(part);
          if (!s) fail(ErrorKind::Corrupt, "PosixPath needs str arguments");
          g_.budget.charge(s->size() / Budget::kBytesPerValue);  // copied into the joined path
          g_.budget.account(s->size());
          if (!path.empty() && path.back() != '/') path += '/';
          path += *s;
        }
        return g_.make(std::move(path));
      }
      default:
        fail(ErrorKind::Refused, "'" + g.name + "' cannot be called");
    }
  }

  // BUILD on a DCP object: a dict of fields (set once each), or a tuple (TensorProperties).
  void build(ObjectObj& obj, const NodeP& state) {
    if (!obj.fields.empty() || obj.tuple_state)
      fail(ErrorKind::Corrupt, "second BUILD on a " + obj.cls + " object");
    if (as<TupleObj>(state)) {
      if (obj.cls != "TensorProperties")
        fail(ErrorKind::Corrupt, "BUILD of a " + obj.cls + " with a tuple state (only TensorProperties)");
      obj.tuple_state = state;
      return;
    }
    auto* d = as<DictObj>(state);
    if (!d || !d->object_items.empty())
      fail(ErrorKind::Corrupt, "BUILD state of a " + obj.cls + " must be a dict of field names");
    g_.charge_reuse(*state, d->items.size());
    for (auto& [k, v] : d->items) {
      if (!k.is_str()) fail(ErrorKind::Corrupt, "a field name of a " + obj.cls + " is not a str");
      g_.budget.account(kItemBytes);
      obj.fields.emplace_back(k.str(), v);
    }
  }

 private:
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const { g_.fail(kind, msg); }
  Graph& g_;
};

}  // namespace sgckpt::detail::pickle
