// sgckpt/io/dcp/load.hpp: reading a torch.distributed.checkpoint (DCP) directory
// (docs/dcp.md).
//
//   auto md = sgckpt::dcp::read_metadata(dir);        // what it holds
//   sgckpt::Value all = sgckpt::dcp::load(dir);       // everything, tensors whole, nested as saved
//   sgckpt::dcp::load_into(state, dir, sharding);     // fill a state dict, each rank its own shards
//
// A tensor is assembled from the chunks that overlap the region asked for, whatever the world
// size that saved it. The .metadata pickle runs on the restricted machine with DCP's vocabulary
// only; every chunk image is a torch.save image read by the .pth reader with its checks, and
// must hold exactly the dtype and shape the metadata gives it.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "sgckpt/detail/dcp/flatten.hpp"
#include "sgckpt/detail/dcp/metadata_reader.hpp"
#include "sgckpt/detail/dcp/region.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/io/dcp/metadata.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"  // load(bytes), in either mode (header-only or compiled)

namespace sgckpt::dcp {

// A local tensor that is one block of a larger (global) tensor: the global tensor's size and
// where the block starts; the block's sizes are the local tensor's shape. Keyed by flat key.
struct Shard {
  Shape global_size;
  Shape offsets;
};
using Sharding = std::map<std::string, Shard>;

// Whether `path` is a DCP checkpoint: a directory with a .metadata file.
inline bool is_checkpoint(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) && std::filesystem::is_regular_file(path / ".metadata", ec);
}

// The parsed .metadata of the DCP directory `dir`.
inline Metadata read_metadata(const std::filesystem::path& dir, const LoadOptions& options = {}) {
  const auto path = dir / ".metadata";
  try {
    auto file = detail::fs::MappedFile::open(path);
    return detail::dcp::read_metadata_bytes(file->bytes(), options.limits);
  } catch (const Error& e) {
    throw e.with_file(path.string());
  }
}

namespace detail_load {

// The files of one checkpoint directory, each mapped once.
class Images {
 public:
  Images(std::filesystem::path dir, const LoadOptions& options) : dir_(std::move(dir)), options_(options) {
    options_.mmap = false;
  }

  // The bytes of the image at `at`, checked to lie inside its file. A data file must be a
  // regular file of the directory itself: a symbolic link could point anywhere.
  std::span<const std::byte> image(const StorageLocation& at) {
    const auto path = dir_ / at.relative_path;
    auto& file = files_[at.relative_path];
    if (!file) {
      std::error_code ec;
      if (std::filesystem::is_symlink(path, ec)) {
        ErrorContext c;
        c.file = path.string();
        throw Error(ErrorKind::Refused, "a data file of the checkpoint is a symbolic link", c);
      }
      file = detail::fs::MappedFile::open(path);
    }
    const auto bytes = file->bytes();
    if (at.offset > bytes.size() || at.length > bytes.size() - at.offset) {
      ErrorContext c;
      c.file = path.string();
      c.offset = at.offset;
      throw Error(ErrorKind::Truncated,
                  "a storage entry of " + std::to_string(at.length) +
                      " bytes runs past the end of the file (" + std::to_string(bytes.size()) + " bytes)",
                  c);
    }
    return bytes.subspan(at.offset, at.length);
  }

  // The value held by the image at `at`.
  Value value(const StorageLocation& at) {
    const auto path = dir_ / at.relative_path;
    const auto bytes = image(at);
    try {
      return sgckpt::load(bytes, options_, path.string());
    } catch (const Error& e) {
      throw Error(e.kind(), "in the image at byte offset " + std::to_string(at.offset) + ": " + e.message(),
                  e.context());
    }
  }

  // The tensor of chunk `i` of `e`, checked against the metadata.
  Tensor chunk(const Entry& e, std::size_t i) {
    Value v = value(e.storage[i]);
    const Chunk& c = e.tensor->chunks[i];
    if (!v.is_tensor() || v.tensor().dtype() != e.tensor->dtype || v.tensor().shape() != c.sizes) {
      ErrorContext ctx = ErrorContext::at_key(e.fqn);
      ctx.file = (dir_ / e.storage[i].relative_path).string();
      ctx.offset = e.storage[i].offset;
      throw Error(
          ErrorKind::Corrupt,
          "chunk " + std::to_string(i) + " holds " +
              (v.is_tensor() ? std::string(name(v.tensor().dtype())) + " " + shape_text(v.tensor().shape())
                             : std::string("a ") + kind_name(v.kind())) +
              ", the metadata says " + std::string(name(e.tensor->dtype)) + " " + shape_text(c.sizes),
          ctx);
    }
    return v.tensor();
  }

 private:
  std::filesystem::path dir_;
  LoadOptions options_;
  std::map<std::string, std::shared_ptr<const detail::fs::MappedFile>> files_;
};

using sgckpt::detail::dcp::fail_at;

// The region `want` of the tensor `e` (global coordinates), from the chunks that overlap it.
// Every element must be covered; the chunks' images must be large enough to hold what they
// claim before anything is allocated, so a small file cannot ask for a large tensor.
inline Tensor region(Images& images, const Entry& e, const Chunk& want) {
  const TensorInfo& t = *e.tensor;
  if (want.offsets.size() != t.size.size() || want.sizes.size() != t.size.size())
    fail_at(ErrorKind::Mismatch, e.fqn, "region of another rank than the tensor");
  for (std::size_t d = 0; d < t.size.size(); ++d)
    if (want.offsets[d] < 0 || want.sizes[d] < 0 || want.offsets[d] > t.size[d] ||
        want.sizes[d] > t.size[d] - want.offsets[d])
      fail_at(ErrorKind::Mismatch, e.fqn, "the region asked for lies outside the saved tensor");
  const auto need = detail::dcp::volume(want.sizes);
  std::uint64_t covered = 0;
  std::vector<std::size_t> parts;
  for (std::size_t i = 0; i < t.chunks.size(); ++i) {
    const auto box = detail::dcp::intersect(t.chunks[i], want);
    if (!box && !want.sizes.empty()) continue;
    const auto chunk_elems = detail::dcp::volume(t.chunks[i].sizes);
    std::uint64_t chunk_bytes = 0;
    images.image(e.storage[i]);  // inside its file (the reader checked that no two images share bytes)
    if (!chunk_elems || sgckpt::detail::mul_overflows(*chunk_elems, itemsize(t.dtype), chunk_bytes) ||
        chunk_bytes > e.storage[i].length)
      fail_at(ErrorKind::Corrupt, e.fqn,
              "chunk " + std::to_string(i) + " claims more data than its image of " +
                  std::to_string(e.storage[i].length) + " bytes can hold");
    covered += box ? *detail::dcp::volume(box->sizes) : 1;
    parts.push_back(i);
    if (want.sizes.empty()) break;  // a 0-dim tensor: its one chunk
  }
  if (!need || covered != *need)
    fail_at(ErrorKind::Corrupt, e.fqn,
            "the saved chunks cover " + std::to_string(covered) + " of the " +
                (need ? std::to_string(*need) : "?") + " elements asked for");
  Tensor out = Tensor::empty(t.dtype, want.sizes);
  for (std::size_t i : parts) {
    Tensor c = images.chunk(e, i);
    if (want.sizes.empty()) return c.clone();
    detail::dcp::copy_box(c, t.chunks[i].offsets, out, want.offsets,
                          *detail::dcp::intersect(t.chunks[i], want));
  }
  return out;
}

}  // namespace detail_load

// One region of one tensor (in the global tensor's coordinates): reads only the chunks that
// overlap it.
inline Tensor load_region(const std::filesystem::path& dir, const Metadata& md, const std::string& fqn,
                          const Chunk& region, const LoadOptions& options = {}) {
  const Entry* e = md.find(fqn);
  if (!e || !e->tensor)
    detail_load::fail_at(ErrorKind::Schema, fqn, "no tensor of this key in the checkpoint");
  detail_load::Images images(dir, options);
  return detail_load::region(images, *e, region);
}

// Everything in the checkpoint, each tensor whole, nested as planner_data says (what torch's
// dcp_to_torch_save writes into one .pth).
inline Value load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
  const Metadata md = read_metadata(dir, options);
  detail_load::Images images(dir, options);
  Value root = Value::make_dict();
  std::uint64_t padding = 0;  // list slots made to reach an index, bounded by the entries
  for (const Entry& e : md.entries()) {
    Value v =
        e.tensor
            ? Value(detail_load::region(images, e, Chunk{Shape(e.tensor->size.size(), 0), e.tensor->size}))
            : images.value(e.storage[0]);
    try {
      detail::dcp::set_element(root, e.path.empty() ? std::vector<PathElement>{e.fqn} : e.path, std::move(v),
                               e.fqn, padding, md.entries().size());
    } catch (const Error& err) {
      throw err.with_file((dir / ".metadata").string());
    }
  }
  return root;
}

// Fills `state` as torch's dcp.load does: every flat key of `state` must be in the checkpoint;
// a tensor receives the region it stands for (the whole tensor, or its block per `sharding`),
// in place, with its dtype and shape unchanged; any other value is replaced by the saved one.
inline void load_into(Value& state, const std::filesystem::path& dir, const Sharding& sharding = {},
                      const LoadOptions& options = {}) {
  const Metadata md = read_metadata(dir, options);
  detail_load::Images images(dir, options);
  for (const auto& item : detail::dcp::flatten(state)) {
    const Entry* e = md.find(item.fqn);
    if (!e) detail_load::fail_at(ErrorKind::Mismatch, item.fqn, "missing from the checkpoint");
    auto& target = const_cast<Value&>(*item.value);
    if (!target.is_tensor()) {
      if (e->tensor)
        detail_load::fail_at(ErrorKind::Mismatch, item.fqn, "the checkpoint holds a tensor here");
      target = images.value(e->storage[0]);
      continue;
    }
    if (!e->tensor)
      detail_load::fail_at(ErrorKind::Mismatch, item.fqn, "the checkpoint holds a non-tensor value here");
    Tensor& dst = target.tensor();
    Chunk want{Shape(dst.dim(), 0), dst.shape()};
    Shape global = dst.shape();
    if (auto s = sharding.find(item.fqn); s != sharding.end()) {
      want.offsets = s->second.offsets;
      global = s->second.global_size;
    }
    if (global != e->tensor->size || dst.dtype() != e->tensor->dtype)
      detail_load::fail_at(ErrorKind::Mismatch, item.fqn,
                           "the checkpoint's tensor has another size or dtype (" +
                               std::string(name(e->tensor->dtype)) + ") than the one to load into (" +
                               std::string(name(dst.dtype())) + ")");
    Tensor src = detail_load::region(images, *e, want);
    if (dst.dim() == 0)
      std::memcpy(dst.mutable_raw_data(), src.raw_data(), src.itemsize());
    else
      detail::dcp::copy_box(src, want.offsets, dst, want.offsets, want);
  }
}

}  // namespace sgckpt::dcp
