// sgckpt/detail/dcp/metadata_reader.hpp: reads a DCP .metadata pickle into dcp::Metadata.
//
// The pickle runs on the restricted machine with DCP's vocabulary only (globals.hpp,
// dcp_objects.hpp); then the object graph is checked field by field, as a hostile file needs:
// every dataclass is the one expected where it is found, every chunk lies inside its tensor and
// no two chunks overlap, every chunk has exactly one storage location in a file of the
// directory itself (a plain name: no path), and planner_data's paths are str keys or list
// indices below the number of entries (a path index is a list length to build).
// Fields this reader does not know are ignored, as torch's dataclasses would keep them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sgckpt/detail/dcp/region.hpp"
#include "sgckpt/detail/pickle/machine.hpp"
#include "sgckpt/io/dcp/metadata.hpp"

namespace sgckpt::detail::dcp {

using namespace sgckpt::dcp;
namespace pk = sgckpt::detail::pickle;

// A relative_path that names a file of the checkpoint directory itself.
inline bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

// Errors of the DCP checks: where they are is the key (fqn), the file is added by the caller.
[[noreturn]] inline void corrupt(const std::string& fqn, const std::string& msg) {
  fail_at(ErrorKind::Corrupt, fqn, msg);
}

class MetadataReader {
 public:
  MetadataReader(pk::Budget& budget, std::uint32_t max_depth) : budget_(budget), max_depth_(max_depth) {}

  Metadata read(pk::Node& root) {
    auto& md = object(&root, "Metadata", "");
    Metadata out;
    pk::NodeP sdm = field(md, "state_dict_metadata");
    auto* entries = sdm ? pk::as<pk::DictObj>(sdm) : nullptr;
    if (!entries || !entries->object_items.empty())
      corrupt("", "Metadata.state_dict_metadata must be a dict of str keys");
    auto locations = storage_data(md);
    auto paths = planner_data(md, entries->items.size());
    for (auto& [key, value] : entries->items) {
      if (!key.is_str()) corrupt(key.to_string(), "a state_dict_metadata key is not a str");
      Entry e;
      e.fqn = key.str();
      budget_.charge(1 + e.fqn.size() / pk::Budget::kBytesPerValue);
      auto& obj = object(value, nullptr, e.fqn);
      if (obj.cls == "TensorStorageMetadata") {
        e.tensor = tensor_info(obj, e.fqn);
        for (const Chunk& c : e.tensor->chunks) e.storage.push_back(take(locations, e.fqn, c.offsets, true));
      } else if (obj.cls == "BytesStorageMetadata") {
        e.storage.push_back(take(locations, e.fqn, {}, false));
      } else {
        corrupt(e.fqn, "a state_dict_metadata value is a " + obj.cls +
                           " (TensorStorageMetadata or BytesStorageMetadata expected)");
      }
      if (auto it = paths.find(e.fqn); it != paths.end()) e.path = std::move(it->second);
      out.add(std::move(e));  // keys of one pickled dict are unique (set_item replaces)
    }
    storage_meta(md, out);
    check_ranges_disjoint(out);
    return out;
  }

 private:
  using LocationKey = std::pair<std::string, Shape>;  // fqn, chunk offsets (empty for bytes)
  struct Located {
    StorageLocation where;
    bool has_offset = false;
  };

  // ---- typed access to the graph ----
  pk::ObjectObj& object(pk::NodeP n, const char* cls, const std::string& fqn) {
    if (!n) corrupt(fqn, std::string("a ") + (cls ? cls : "DCP object") + " field is missing");
    auto* o = pk::as<pk::ObjectObj>(n);
    if (!o)
      corrupt(fqn,
              std::string("expected a ") + (cls ? cls : "DCP object") + ", found a " + pk::node_kind(*n));
    if (cls && o->cls != cls) corrupt(fqn, std::string("expected a ") + cls + ", found a " + o->cls);
    budget_.charge(1 + o->fields.size());
    return *o;
  }
  static pk::NodeP field(const pk::ObjectObj& o, const char* name) {
    for (auto& [k, v] : o.fields)
      if (k == name) return v;
    return nullptr;
  }
  static bool is_none(pk::NodeP n) { return !n || pk::as<std::monostate>(n); }
  std::int64_t integer(pk::NodeP n, const std::string& fqn, const char* what) {
    auto* i = n ? pk::as<Int>(n) : nullptr;
    if (!i || !i->fits_int64()) corrupt(fqn, std::string(what) + " must be a 64-bit int");
    return i->to_int64();
  }
  const std::string& text(pk::NodeP n, const std::string& fqn, const char* what) {
    auto* s = n ? pk::as<std::string>(n) : nullptr;
    if (!s) corrupt(fqn, std::string(what) + " must be a str");
    budget_.charge(s->size() / pk::Budget::kBytesPerValue);
    return *s;
  }
  Shape torch_size(pk::NodeP n, const std::string& fqn, const char* what) {
    auto* t = n ? pk::as<pk::TupleObj>(n) : nullptr;
    if (!t || !t->torch_size) corrupt(fqn, std::string(what) + " must be a torch.Size");
    budget_.charge(t->items.size());
    Shape out;
    out.reserve(t->items.size());
    for (auto& d : t->items) out.push_back(integer(d, fqn, what));
    return out;
  }

  // ---- the dataclasses ----
  TensorInfo tensor_info(pk::ObjectObj& o, const std::string& fqn) {
    TensorInfo t;
    properties(object(field(o, "properties"), "TensorProperties", fqn), fqn, t);
    t.size = torch_size(field(o, "size"), fqn, "TensorStorageMetadata.size");
    for (auto d : t.size)
      if (d < 0) corrupt(fqn, "negative tensor size " + std::to_string(d));
    pk::NodeP chunk_list = field(o, "chunks");
    auto* chunks = chunk_list ? pk::as<pk::ListObj>(chunk_list) : nullptr;
    if (!chunks) corrupt(fqn, "TensorStorageMetadata.chunks must be a list");
    for (pk::NodeP c : chunks->items) {
      auto& co = object(c, "ChunkStorageMetadata", fqn);
      Chunk ch{torch_size(field(co, "offsets"), fqn, "chunk offsets"),
               torch_size(field(co, "sizes"), fqn, "chunk sizes")};
      check_inside(ch, t.size, fqn, ErrorKind::Corrupt);
      t.chunks.push_back(std::move(ch));
    }
    check_disjoint(t.chunks, fqn, ErrorKind::Corrupt);
    return t;
  }

  // TensorProperties pickles as (dtype, layout, requires_grad, memory format code, pin_memory).
  void properties(pk::ObjectObj& p, const std::string& fqn, TensorInfo& t) {
    auto* st = p.tuple_state ? pk::as<pk::TupleObj>(p.tuple_state) : nullptr;
    pk::NodeP dtype = st && !st->items.empty() ? st->items[0] : field(p, "dtype");
    auto* g = dtype ? pk::as<pk::Global>(dtype) : nullptr;
    if (!g || g->id != pk::G::DTypeObject) corrupt(fqn, "TensorProperties has no torch dtype");
    t.dtype = g->dtype;
    if (st && st->items.size() >= 2) {
      const std::string& layout = text(st->items[1], fqn, "TensorProperties.layout");
      if (layout != "torch.strided")
        throw Error(ErrorKind::Refused, "tensor layout '" + layout + "' (only torch.strided)",
                    ErrorContext::at_key(fqn));
    }
    if (st && st->items.size() >= 3) {
      auto* rg = pk::as<bool>(st->items[2]);
      if (!rg) corrupt(fqn, "TensorProperties.requires_grad must be a bool");
      t.requires_grad = *rg;
    }
  }

  // No two items share bytes of a file (torch never writes that): otherwise one large image
  // named by many chunks would make a small directory stand for a huge tensor.
  static void check_ranges_disjoint(const Metadata& md) {
    std::map<std::string, std::vector<std::pair<std::uint64_t, std::uint64_t>>> files;
    for (const auto& e : md.entries())
      for (const auto& s : e.storage) {
        std::uint64_t end;
        if (sgckpt::detail::add_overflows(s.offset, s.length, end))
          corrupt(e.fqn, "a storage range overflows 64 bits");
        files[s.relative_path].emplace_back(s.offset, end);
      }
    for (auto& [file, ranges] : files) {
      std::sort(ranges.begin(), ranges.end());
      for (std::size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second)
          corrupt("", "two storage entries share bytes " + std::to_string(ranges[i].first) + " to " +
                          std::to_string(std::min(ranges[i].second, ranges[i - 1].second)) + " of '" + file +
                          "'");
    }
  }

  // storage_data: {MetadataIndex(fqn, offset, index): _StorageInfo(relative_path, offset, length)}.
  std::map<LocationKey, Located> storage_data(pk::ObjectObj& md) {
    std::map<LocationKey, Located> out;
    pk::NodeP n = field(md, "storage_data");
    auto* d = n ? pk::as<pk::DictObj>(n) : nullptr;
    if (!d || !d->items.empty()) corrupt("", "Metadata.storage_data must be a dict keyed by MetadataIndex");
    for (auto& [k, v] : d->object_items) {
      auto& index = object(k, "MetadataIndex", "");
      const std::string& fqn = text(field(index, "fqn"), "", "MetadataIndex.fqn");
      pk::NodeP off = field(index, "offset");
      Located loc;
      loc.has_offset = !is_none(off);
      Shape offsets = loc.has_offset ? torch_size(off, fqn, "MetadataIndex.offset") : Shape{};
      auto& info = object(v, "_StorageInfo", fqn);
      loc.where.relative_path = text(field(info, "relative_path"), fqn, "_StorageInfo.relative_path");
      if (!plain_file_name(loc.where.relative_path))
        throw Error(ErrorKind::Refused,
                    "storage file '" + loc.where.relative_path +
                        "' is not a plain file name of the checkpoint directory",
                    ErrorContext::at_key(fqn));
      const std::int64_t o = integer(field(info, "offset"), fqn, "_StorageInfo.offset");
      const std::int64_t len = integer(field(info, "length"), fqn, "_StorageInfo.length");
      if (o < 0 || len < 0) corrupt(fqn, "negative storage offset or length");
      if (pk::NodeP t = field(info, "transform_descriptors"); !is_none(t)) {
        auto* l = pk::as<pk::ListObj>(t);
        if (!l || !l->items.empty())
          throw Error(ErrorKind::Refused, "storage transforms (compression) are not supported",
                      ErrorContext::at_key(fqn));
      }
      loc.where.offset = static_cast<std::uint64_t>(o);
      loc.where.length = static_cast<std::uint64_t>(len);
      budget_.account(sizeof(Located) + 64 + fqn.size() + 8 * offsets.size());
      out[{fqn, std::move(offsets)}] = std::move(loc);  // as in Python, an equal key replaces
    }
    return out;
  }

  StorageLocation take(std::map<LocationKey, Located>& locations, const std::string& fqn,
                       const Shape& offsets, bool tensor) {
    auto it = locations.find({fqn, offsets});
    if (it == locations.end() || it->second.has_offset != tensor)
      corrupt(fqn, tensor ? "a chunk has no storage location" : "the value has no storage location");
    return it->second.where;
  }

  std::map<std::string, std::vector<PathElement>> planner_data(pk::ObjectObj& md, std::size_t entries) {
    std::map<std::string, std::vector<PathElement>> out;
    pk::NodeP n = field(md, "planner_data");
    if (is_none(n)) return out;
    auto* d = pk::as<pk::DictObj>(n);
    if (!d || !d->object_items.empty()) corrupt("", "Metadata.planner_data must be a dict of str keys");
    for (auto& [k, v] : d->items) {
      if (!k.is_str()) corrupt(k.to_string(), "a planner_data key is not a str");
      auto* t = pk::as<pk::TupleObj>(v);
      if (!t || t->items.empty()) corrupt(k.str(), "a planner_data path must be a non-empty tuple");
      if (t->items.size() > max_depth_)
        throw Error(ErrorKind::Limit,
                    "a planner_data path of " + std::to_string(t->items.size()) + " steps (the limit is " +
                        std::to_string(max_depth_) + ")",
                    ErrorContext::at_key(k.str()));
      budget_.charge(t->items.size());
      std::vector<PathElement> path;
      for (pk::NodeP e : t->items) {
        if (auto* s = pk::as<std::string>(e)) {
          budget_.charge(s->size() / pk::Budget::kBytesPerValue);
          path.emplace_back(*s);
        } else if (auto* i = pk::as<Int>(e); i && i->fits_int64() && i->to_int64() >= 0 &&
                                             static_cast<std::uint64_t>(i->to_int64()) < entries) {
          path.emplace_back(i->to_int64());
        } else {
          corrupt(k.str(),
                  "a planner_data path element must be a str or a list index below the number of entries (" +
                      std::to_string(entries) + ")");
        }
      }
      out[k.str()] = std::move(path);
    }
    return out;
  }

  void storage_meta(pk::ObjectObj& md, Metadata& out) {
    pk::NodeP n = field(md, "storage_meta");
    if (is_none(n)) return;
    auto& sm = object(n, "StorageMeta", "");
    if (pk::NodeP id = field(sm, "save_id"); !is_none(id)) out.save_id = text(id, "", "StorageMeta.save_id");
    if (pk::NodeP id = field(sm, "checkpoint_id"); !is_none(id))
      out.checkpoint_id = text(id, "", "StorageMeta.checkpoint_id");
  }

  pk::Budget& budget_;
  std::uint32_t max_depth_;  // Limits::max_depth: a path is that deep in the nested state
};

// Reads the bytes of a .metadata file.
inline Metadata read_metadata_bytes(std::span<const std::byte> bytes, const Limits& limits) {
  pk::ReaderConfig config;
  config.limits = limits;
  config.dcp = true;
  const pk::StorageResolver no_storages = [](const pk::StorageRequest&) -> std::shared_ptr<Storage> {
    throw Error(ErrorKind::Refused, "a storage in a DCP .metadata file");
  };
  pk::Machine m(bytes, no_storages, config);
  pk::Node& root = m.run();
  return MetadataReader(m.budget(), limits.max_depth).read(root);
}

}  // namespace sgckpt::detail::dcp
