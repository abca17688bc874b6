// sgckpt/io/dcp/metadata.hpp: what the .metadata file of a torch.distributed.checkpoint (DCP)
// directory says, as checked C++ values (docs/dcp.md).
//
// A DCP checkpoint is a directory: one or more "__<rank>_<n>.distcp" files, each a run of
// torch.save images placed back to back (one per tensor chunk or non-tensor value), and
// ".metadata", a pickle of DCP's Metadata dataclass: for every flattened key ("model.fc.weight")
// the tensor's dtype, global size and chunks (offsets and sizes in the global tensor), or that
// it is a non-tensor value; where each chunk's image lies (file, byte offset, length); and how
// the flat keys map back to the nested state dict (planner_data).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/detail/keyed_hash.hpp"

namespace sgckpt::dcp {

// One step of a key's path in the nested state dict: a dict key (torch writes every dict key as
// its str) or a list index.
using PathElement = std::variant<std::string, std::int64_t>;

// A block of a tensor: where it starts in the global tensor and how large it is, per dimension.
struct Chunk {
  Shape offsets;
  Shape sizes;
  friend bool operator==(const Chunk&, const Chunk&) = default;
};

// Where one torch.save image lies: a file of the directory, a byte offset and a length.
struct StorageLocation {
  std::string relative_path;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

struct TensorInfo {
  DType dtype = DType::Float32;
  bool requires_grad = false;
  Shape size;                 // the global tensor's
  std::vector<Chunk> chunks;  // disjoint, inside `size` (checked when read)
};

struct Entry {
  std::string fqn;                       // the flat key, e.g. "optimizer.state.0.momentum_buffer"
  std::vector<PathElement> path;         // planner_data: the nested path; empty when none is recorded
  std::optional<TensorInfo> tensor;      // nullopt: a non-tensor value (one torch.save image)
  std::vector<StorageLocation> storage;  // one per chunk, or one for a non-tensor value
};

class Metadata {
 public:
  std::string save_id;        // StorageMeta.save_id, when present
  std::string checkpoint_id;  // StorageMeta.checkpoint_id (the directory torch saved to), when present

  const std::vector<Entry>& entries() const noexcept { return entries_; }  // in the order of the file
  const Entry* find(const std::string& fqn) const {
    auto it = index_.find(fqn);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  // Adds an entry; false (and nothing added) when its key is already there.
  bool add(Entry e) {
    if (!index_.emplace(e.fqn, entries_.size()).second) return false;
    entries_.push_back(std::move(e));
    return true;
  }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t, sgckpt::detail::KeyedHash> index_;
};

}  // namespace sgckpt::dcp
