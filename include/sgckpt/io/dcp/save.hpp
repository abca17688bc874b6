// sgckpt/io/dcp/save.hpp: writing a torch.distributed.checkpoint (DCP) directory, by one
// process or by every rank of a group in parallel (docs/dcp.md).
//
//   sgckpt::dcp::save(state, dir);                          // one process
//   sgckpt::dcp::save(local_state, dir, group, sharding);    // every rank of a group calls it
//
// As torch's DCP: the state is flattened ("model.fc.weight"); each rank plans what it holds
// (its shards, and the values every rank holds alike); the plans are exchanged and every
// replicated item is given to one rank, the one with the least to write so far (torch's
// dedup_save_plans); each rank writes "__<rank>_0.distcp", one torch.save image per item; then
// rank 0 writes ".metadata" and publishes the directory atomically (detail/dcp/publish.hpp).
// A failure on any rank fails the save on every rank, and the previous checkpoint stays.
#pragma once

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sgckpt/detail/dcp/exchange.hpp"
#include "sgckpt/detail/dcp/flatten.hpp"
#include "sgckpt/detail/dcp/metadata_reader.hpp"
#include "sgckpt/detail/dcp/metadata_writer.hpp"
#include "sgckpt/detail/dcp/publish.hpp"
#include "sgckpt/detail/dcp/region.hpp"
#include "sgckpt/io/dcp/load.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"  // the image writer (detail::write_pth), in either mode

namespace sgckpt::dcp {

// The processes that save one checkpoint together. all_gather: every rank passes a string and
// receives every rank's, in rank order (the engine's Collective::all_gather does this; a
// std::function keeps the library free of any communication library). Empty for one process.
struct Group {
  int rank = 0;
  int size = 1;
  std::function<std::vector<std::string>(std::string)> all_gather;
};

namespace detail_save {

namespace dd = sgckpt::detail::dcp;

// One item a rank holds: a whole tensor or value (replicated: every rank may hold it) or a
// block of a sharded tensor.
struct PlanItem {
  std::string fqn;
  std::vector<PathElement> path;
  bool tensor = false;
  DType dtype = DType::Float32;
  Shape global_size;
  Chunk chunk;
  std::uint64_t bytes = 0;
  const Value* value = nullptr;  // this rank's only
};

inline std::vector<PlanItem> plan(const Value& state, const Sharding& sharding) {
  std::vector<PlanItem> out;
  for (auto& f : dd::flatten(state)) {
    PlanItem p{f.fqn, f.path, f.value->is_tensor(), DType::Float32, {}, {}, 0, f.value};
    if (p.tensor) {
      const Tensor& t = f.value->tensor();
      p.dtype = t.dtype();
      p.chunk = Chunk{Shape(t.dim(), 0), t.shape()};
      p.global_size = t.shape();
      p.bytes = t.nbytes();
      if (auto s = sharding.find(f.fqn); s != sharding.end()) {
        p.global_size = s->second.global_size;
        p.chunk.offsets = s->second.offsets;
        dd::check_inside(p.chunk, p.global_size, p.fqn, ErrorKind::Usage);
      }
    }
    out.push_back(std::move(p));
  }
  for (const auto& [fqn, s] : sharding) {
    bool found = false;
    for (const auto& p : out) found = found || (p.fqn == fqn && p.tensor);
    if (!found)
      throw Error(ErrorKind::Usage, "a shard is given for a key that is not a tensor of the state",
                  ErrorContext::at_key(fqn));
  }
  return out;
}

inline std::string encode(const std::vector<PlanItem>& items, const std::string& save_id) {
  dd::MessageWriter w;
  w.text(save_id).num(static_cast<std::int64_t>(items.size()));
  for (const auto& p : items) {
    w.text(p.fqn).num(static_cast<std::int64_t>(p.path.size()));
    for (const auto& e : p.path) {
      if (const auto* s = std::get_if<std::string>(&e))
        w.num(0).text(*s);
      else
        w.num(1).num(std::get<std::int64_t>(e));
    }
    w.num(p.tensor).num(static_cast<std::int64_t>(p.dtype)).num(static_cast<std::int64_t>(p.bytes));
    w.num(static_cast<std::int64_t>(p.global_size.size()));
    for (std::size_t d = 0; d < p.global_size.size(); ++d)
      w.num(p.global_size[d]).num(p.chunk.offsets[d]).num(p.chunk.sizes[d]);
  }
  return w.take();
}

inline std::vector<PlanItem> decode(const std::string& msg, std::string& save_id) {
  dd::MessageReader r(msg);
  save_id = r.text();
  std::vector<PlanItem> out(static_cast<std::size_t>(r.num()));
  for (auto& p : out) {
    p.fqn = r.text();
    p.path.resize(static_cast<std::size_t>(r.num()));
    for (auto& e : p.path) {
      if (r.num() == 0)
        e = r.text();
      else
        e = r.num();
    }
    p.tensor = r.num() != 0;
    p.dtype = static_cast<DType>(r.num());
    p.bytes = static_cast<std::uint64_t>(r.num());
    const auto dims = static_cast<std::size_t>(r.num());
    for (std::size_t d = 0; d < dims; ++d) {
      p.global_size.push_back(r.num());
      p.chunk.offsets.push_back(r.num());
      p.chunk.sizes.push_back(r.num());
    }
  }
  return out;
}

// Which rank writes each item: torch's dedup_save_plans. Items are identified by key and chunk
// offsets; one held by several ranks goes to the one with the fewest bytes assigned so far.
// Every rank runs this on the same plans and gets the same answer. Returns, per rank, the
// positions in its plan that it writes.
inline std::vector<std::vector<std::size_t>> assign(const std::vector<std::vector<PlanItem>>& plans) {
  std::map<std::pair<std::string, Shape>, std::vector<std::pair<std::size_t, std::size_t>>> holders;
  std::vector<std::pair<std::string, Shape>> order;
  for (std::size_t r = 0; r < plans.size(); ++r)
    for (std::size_t i = 0; i < plans[r].size(); ++i) {
      std::pair<std::string, Shape> key{plans[r][i].fqn,
                                        plans[r][i].tensor ? plans[r][i].chunk.offsets : Shape{}};
      auto& h = holders[key];
      if (h.empty()) order.push_back(key);
      h.emplace_back(r, i);
    }
  std::vector<std::uint64_t> assigned(plans.size(), 0);
  std::vector<std::vector<std::size_t>> out(plans.size());
  for (const auto& key : order) {
    const auto& h = holders[key];
    auto best = h.front();
    for (const auto& c : h)
      if (assigned[c.first] < assigned[best.first]) best = c;
    assigned[best.first] += plans[best.first][best.second].bytes;
    out[best.first].push_back(best.second);
  }
  for (auto& v : out) std::sort(v.begin(), v.end());
  return out;
}

// The metadata of the whole checkpoint from every rank's plan; checks that the ranks agree
// on each key (kind, dtype, global size) and that the chunks of a tensor are disjoint.
inline Metadata compose(const std::vector<std::vector<PlanItem>>& plans,
                        const std::vector<std::vector<std::size_t>>& writes,
                        const std::vector<std::vector<StorageLocation>>& where) {
  Metadata md;
  std::map<std::string, Entry> entries;
  std::vector<std::string> order;  // keys in the order the plans list them (rank 0's first)
  std::set<std::string> started;
  for (const auto& plan : plans)
    for (const PlanItem& p : plan)
      if (entries.try_emplace(p.fqn).second) order.push_back(p.fqn);
  for (std::size_t r = 0; r < plans.size(); ++r)
    for (std::size_t k = 0; k < writes[r].size(); ++k) {
      const PlanItem& p = plans[r][writes[r][k]];
      Entry& e = entries[p.fqn];
      if (started.insert(p.fqn).second) {
        e.fqn = p.fqn;
        e.path = p.path;
        if (p.tensor) e.tensor = TensorInfo{p.dtype, false, p.global_size, {}};
      } else if (e.tensor.has_value() != p.tensor ||
                 (p.tensor && (e.tensor->dtype != p.dtype || e.tensor->size != p.global_size))) {
        throw Error(ErrorKind::Mismatch, "the ranks hold different kinds, dtypes or sizes under this key",
                    ErrorContext::at_key(p.fqn));
      } else if (!p.tensor) {
        continue;  // a value is written once (assign() gave it to one rank)
      }
      if (p.tensor) e.tensor->chunks.push_back(p.chunk);
      e.storage.push_back(where[r][k]);
    }
  for (const auto& fqn : order) {
    Entry& e = entries[fqn];
    if (e.tensor) {
      dd::check_disjoint(e.tensor->chunks, fqn, ErrorKind::Usage);
      // Disjoint blocks that do not add up to the tensor leave elements nobody saved (torch's
      // _validate_global_plan refuses such a save too).
      std::uint64_t covered = 0;
      for (const Chunk& c : e.tensor->chunks) covered += *dd::volume(c.sizes);
      if (covered != dd::volume(e.tensor->size).value_or(0))
        throw Error(ErrorKind::Usage,
                    "the ranks' blocks cover " + std::to_string(covered) + " of the tensor's " +
                        std::to_string(dd::volume(e.tensor->size).value_or(0)) + " elements",
                    ErrorContext::at_key(fqn));
    }
    md.add(std::move(e));
  }
  return md;
}

// A tensor as torch.save should see it: only its own elements (a view's whole storage would
// be written otherwise), without autograd flags (DCP saves detached tensors).
inline Value image_value(const Value& v) {
  if (!v.is_tensor()) return v;
  const Tensor& t = v.tensor();
  const bool own = t.is_contiguous() && t.storage_offset() == 0 && t.storage()->nbytes() == t.nbytes();
  return Value(own ? t : t.clone());
}

// Writes this rank's items into `file`; returns where each one lies.
inline std::vector<StorageLocation> write_items(const std::filesystem::path& file,
                                                const std::vector<PlanItem>& items,
                                                const std::vector<std::size_t>& mine, bool durable) {
  std::vector<StorageLocation> out;
  // Each image goes straight from the tensors into the file (no copy in memory).
  sgckpt::detail::fs::AtomicFile f(file, durable);
  const auto sink = [&](std::span<const std::byte> b) { f.write(b); };
  for (std::size_t i : mine) {
    const std::uint64_t start = f.position();
    sgckpt::detail::write_pth(image_value(*items[i].value), "archive", sink, ArchiveLayout::Torch2);
    out.push_back({file.filename().string(), start, f.position() - start});
  }
  f.commit();
  return out;
}

// Every rank's file is where rank 0 will publish it, as large as the rank says: otherwise the
// ranks do not share the file system, or name the directory differently.
inline void check_visible(const std::filesystem::path& staging,
                          const std::vector<std::vector<StorageLocation>>& all) {
  for (std::size_t r = 0; r < all.size(); ++r)
    for (const auto& s : all[r]) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(staging / s.relative_path, ec);
      if (ec || size < s.offset + s.length)
        throw Error(ErrorKind::Io,
                    "rank " + std::to_string(r) + "'s file '" + (staging / s.relative_path).string() +
                        "' is not there as rank 0 sees it: do the ranks share this file system "
                        "and name the checkpoint directory alike?");
    }
}

inline std::string random_id() {
  std::random_device rd;
  std::mt19937_64 g((std::uint64_t{rd()} << 32) ^ rd());
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) s += hex[g() & 15];
  return s;
}

// Runs `f`; an error becomes the message the other ranks receive ("" when all went well).
template <class F>
std::string attempt(F&& f) {
  try {
    f();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Every rank's status: the first failure, named by rank, fails the save on every rank.
inline void all_ok(const Group& g, const std::string& mine, const char* stage) {
  const auto all = g.all_gather(mine);
  for (std::size_t r = 0; r < all.size(); ++r)
    if (!all[r].empty())
      throw Error(ErrorKind::Io, std::string("DCP save failed while ") + stage + " on rank " +
                                     std::to_string(r) + ": " + all[r]);
}

}  // namespace detail_save

inline void save(const Value& state, std::filesystem::path dir, Group group = {},
                 const Sharding& sharding = {}, const SaveOptions& options = {}) {
  namespace ds = detail_save;
  namespace dd = sgckpt::detail::dcp;
  dir = dir.lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  if (!group.all_gather) {
    if (group.size != 1 || group.rank != 0) throw Error("a DCP save by several ranks needs their all_gather");
    group.all_gather = [](std::string s) { return std::vector<std::string>{std::move(s)}; };
  }
  // 1. Plans, exchanged; rank 0's carries the save id that names the staging directory.
  std::vector<ds::PlanItem> mine;
  std::string my_id;
  std::string error = ds::attempt([&] {
    mine = ds::plan(state, sharding);
    if (group.rank == 0) {
      dd::recover_interrupted_swap(dir);
      dd::check_replaceable(dir);
      my_id = ds::random_id();
    }
  });
  auto gathered = group.all_gather(error.empty() ? "1" + ds::encode(mine, my_id) : "0" + error);
  if (gathered.size() != static_cast<std::size_t>(group.size))
    throw Error("the all_gather of a DCP save returned " + std::to_string(gathered.size()) +
                " messages for " + std::to_string(group.size) + " ranks");
  std::vector<std::vector<ds::PlanItem>> plans(gathered.size());
  std::string save_id;
  for (std::size_t r = 0; r < gathered.size(); ++r) {
    if (gathered[r].empty() || gathered[r][0] != '1')
      throw Error(ErrorKind::Usage, "DCP save failed while planning on rank " + std::to_string(r) + ": " +
                                        (gathered[r].empty() ? "" : gathered[r].substr(1)));
    std::string id;
    plans[r] = ds::decode(gathered[r].substr(1), id);
    if (r == 0) save_id = id;
  }
  plans[static_cast<std::size_t>(group.rank)] = mine;  // with this rank's values
  // 2. Each rank writes what it was given.
  const auto writes = ds::assign(plans);
  const auto staging = dd::staging_path(dir, save_id);
  std::vector<StorageLocation> where;
  error = ds::attempt([&] {
    std::filesystem::create_directories(staging);
    const auto file = staging / ("__" + std::to_string(group.rank) + "_0.distcp");
    where = ds::write_items(file, mine, writes[static_cast<std::size_t>(group.rank)], options.durable);
  });
  dd::MessageWriter w;
  w.text(error).num(static_cast<std::int64_t>(where.size()));
  for (const auto& s : where)
    w.text(s.relative_path).num(static_cast<std::int64_t>(s.offset)).num(static_cast<std::int64_t>(s.length));
  gathered = group.all_gather(w.take());
  // 3. Rank 0 writes .metadata and publishes; every rank learns how it went.
  error.clear();
  if (group.rank == 0) {
    error = ds::attempt([&] {
      std::vector<std::vector<StorageLocation>> all(gathered.size());
      for (std::size_t r = 0; r < gathered.size(); ++r) {
        dd::MessageReader rd(gathered[r]);
        if (auto e = rd.text(); !e.empty())
          throw Error(ErrorKind::Io, "rank " + std::to_string(r) + " could not write its shards: " + e);
        all[r].resize(static_cast<std::size_t>(rd.num()));
        for (auto& s : all[r]) {
          s.relative_path = rd.text();
          s.offset = static_cast<std::uint64_t>(rd.num());
          s.length = static_cast<std::uint64_t>(rd.num());
        }
      }
      ds::check_visible(staging, all);
      Metadata md = ds::compose(plans, writes, all);
      md.save_id = save_id;
      md.checkpoint_id = dir.string();
      const auto bytes = dd::write_metadata_bytes(md);
      sgckpt::detail::fs::AtomicFile f(staging / ".metadata", options.durable);
      f.write(std::as_bytes(std::span(bytes)));
      f.commit();
      dd::publish(staging, dir, options.durable);
      dd::remove_stale_staging(dir, staging);
    });
    if (!error.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(staging, ec);
    }
  }
  ds::all_ok(group, error, "writing the metadata");
}

// Rows [begin, end) of `rank`'s block when the first dimension of `size` is split among
// `ranks` as torch.chunk and DTensor's Shard(0) split it (blocks of ceil(d / ranks) rows;
// the last ranks may hold fewer or none).
inline std::pair<std::int64_t, std::int64_t> row_block(std::int64_t rows, int ranks, int rank) {
  const std::int64_t per = (rows + ranks - 1) / ranks;
  const std::int64_t begin = std::min(rows, per * rank);
  return {begin, std::min(rows, begin + per)};
}

// Writes `state` as `ranks` ranks would have saved it: every tensor of one or more dimensions
// split along its first dimension (row_block), everything else held by all and written once.
// One thread per rank. This is how `sgckpt convert --dcp N` splits a .pth.
inline void save_split(const Value& state, const std::filesystem::path& dir, int ranks,
                       const SaveOptions& options = {}) {
  if (ranks < 1) throw Error("a DCP checkpoint needs at least one rank");
  // Each rank's state and shards, made here: a rank's thread only saves, so every rank takes
  // part in every exchange of the save.
  std::vector<Value> locals(static_cast<std::size_t>(ranks), state);  // trees; tensors share storage
  std::vector<Sharding> shardings(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    for (const auto& item : sgckpt::detail::dcp::flatten(locals[static_cast<std::size_t>(r)])) {
      if (!item.value->is_tensor() || item.value->tensor().dim() == 0) continue;
      Tensor& t = const_cast<Value*>(item.value)->tensor();
      const auto [b, e] = row_block(t.shape()[0], ranks, r);
      Shape block = t.shape(), offsets(t.dim(), 0);
      block[0] = e - b;
      offsets[0] = b;
      shardings[static_cast<std::size_t>(r)][item.fqn] = Shard{t.shape(), offsets};
      t = Tensor::view_of(t.storage(), t.dtype(), t.storage_offset() + b * t.strides()[0], block,
                          t.strides());
    }
  }
  sgckpt::detail::dcp::LocalExchange exchange(ranks);
  std::vector<std::string> errors(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        Group g{r, ranks, [&exchange, r](std::string s) { return exchange.all_gather(r, std::move(s)); }};
        save(locals[static_cast<std::size_t>(r)], dir, g, shardings[static_cast<std::size_t>(r)], options);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error(ErrorKind::Io, e);
}

}  // namespace sgckpt::dcp
