// sgckpt/detail/dcp/metadata_writer.hpp: writes dcp::Metadata as the pickle torch's
// FileSystemWriter writes: DCP's dataclasses made with NEWOBJ and given their fields with BUILD,
// TensorProperties through its __setstate__ tuple, storage_data keyed by MetadataIndex.
// Protocol 2 (torch writes 4; pickle.load reads both); each class and each str is written once
// and then referenced through the memo.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "sgckpt/detail/pickle/writer.hpp"
#include "sgckpt/io/dcp/metadata.hpp"

namespace sgckpt::detail::dcp {

using namespace sgckpt::dcp;
namespace op = sgckpt::detail::pickle::op;

class MetadataWriter : private sgckpt::detail::pickle::Writer {
 public:
  std::vector<std::uint8_t> dump(const Metadata& md) {
    begin();
    klass("Metadata");
    emit(op::EMPTY_DICT);
    emit(op::MARK);
    text("state_dict_metadata");
    state_dict_metadata(md);
    text("planner_data");
    planner_data(md);
    text("storage_data");
    storage_data(md);
    text("storage_meta");
    storage_meta(md);
    emit(op::SETITEMS);
    emit(op::BUILD);
    return end();
  }

 private:
  static constexpr const char* kMetadataModule = "torch.distributed.checkpoint.metadata";

  // Every str through the memo, as Python's pickler writes a repeated object once: field names
  // and keys recur for every chunk (a 160k-chunk .metadata took 36 MB without it).
  void text(const std::string& s) {
    if (auto it = strings_.find(s); it != strings_.end()) return memo_ref(it->second);
    emit(op::BINUNICODE);
    emit_le(s.size(), 4);
    emit_bytes(s.data(), s.size());
    strings_.emplace(s, next_slot_);
    memo_slot();
  }

  // A global, memoized: the first use names it, later ones are two-byte references.
  void cached_global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (auto it = globals_.find(full); it != globals_.end()) return memo_ref(it->second);
    global(module, name);
    globals_.emplace(full, next_slot_);
    memo_slot();
  }
  // `cls()` (NEWOBJ) for a DCP dataclass; its BUILD follows.
  void klass(const std::string& name, const char* module = kMetadataModule) {
    cached_global(module, name);
    emit(op::EMPTY_TUPLE);
    emit(op::NEWOBJ);
  }
  void size(const Shape& s) {
    cached_global("torch", "Size");
    tuple_of_ints(s);
    emit(op::TUPLE1);
    emit(op::REDUCE);
  }

  void properties(const TensorInfo& t) {
    klass("TensorProperties");
    emit(op::MARK);
    cached_global("torch", std::string(name(t.dtype)));
    cached_global("torch.serialization", "_get_layout");
    text("torch.strided");
    emit(op::TUPLE1);
    emit(op::REDUCE);
    emit(t.requires_grad ? op::NEWTRUE : op::NEWFALSE);
    cached_global(kMetadataModule, "_MEM_FORMAT_ENCODING");
    integer(Int(0));  // TORCH_CONTIGUOUS_FORMAT
    emit(op::TUPLE1);
    emit(op::REDUCE);
    emit(op::NEWFALSE);  // pin_memory
    emit(op::TUPLE);
    emit(op::BUILD);
  }

  void state_dict_metadata(const Metadata& md) {
    emit(op::EMPTY_DICT);
    for (const Entry& e : md.entries()) {
      text(e.fqn);
      if (!e.tensor) {
        klass("BytesStorageMetadata");
      } else {
        klass("TensorStorageMetadata");
        emit(op::EMPTY_DICT);
        emit(op::MARK);
        text("properties");
        properties(*e.tensor);
        text("size");
        size(e.tensor->size);
        text("chunks");
        emit(op::EMPTY_LIST);
        for (const Chunk& c : e.tensor->chunks) {
          klass("ChunkStorageMetadata");
          emit(op::EMPTY_DICT);
          emit(op::MARK);
          text("offsets");
          size(c.offsets);
          text("sizes");
          size(c.sizes);
          emit(op::SETITEMS);
          emit(op::BUILD);
          emit(op::APPEND);
        }
        emit(op::SETITEMS);
        emit(op::BUILD);
      }
      emit(op::SETITEM);
    }
  }

  void planner_data(const Metadata& md) {
    emit(op::EMPTY_DICT);
    for (const Entry& e : md.entries()) {
      if (e.path.empty()) continue;
      text(e.fqn);
      emit(op::MARK);
      for (const auto& p : e.path) {
        if (const auto* s = std::get_if<std::string>(&p))
          text(*s);
        else
          integer(Int(std::get<std::int64_t>(p)));
      }
      emit(op::TUPLE);
      emit(op::SETITEM);
    }
  }

  void storage_data(const Metadata& md) {
    emit(op::EMPTY_DICT);
    for (const Entry& e : md.entries()) {
      for (std::size_t i = 0; i < e.storage.size(); ++i) {
        klass("MetadataIndex");
        emit(op::EMPTY_DICT);
        emit(op::MARK);
        text("fqn");
        text(e.fqn);
        if (e.tensor) {
          text("offset");
          size(e.tensor->chunks[i].offsets);
          text("index");
          integer(Int(static_cast<std::int64_t>(i)));
        } else {
          text("index");
          emit(op::NONE);
        }
        emit(op::SETITEMS);
        emit(op::BUILD);
        const StorageLocation& s = e.storage[i];
        klass("_StorageInfo", "torch.distributed.checkpoint.filesystem");
        emit(op::EMPTY_DICT);
        emit(op::MARK);
        text("relative_path");
        text(s.relative_path);
        text("offset");
        integer(Int(static_cast<std::int64_t>(s.offset)));
        text("length");
        integer(Int(static_cast<std::int64_t>(s.length)));
        emit(op::SETITEMS);
        emit(op::BUILD);
        emit(op::SETITEM);
      }
    }
  }

  void storage_meta(const Metadata& md) {
    klass("StorageMeta");
    emit(op::EMPTY_DICT);
    emit(op::MARK);
    text("checkpoint_id");
    if (md.checkpoint_id.empty())
      emit(op::NONE);
    else
      text(md.checkpoint_id);
    text("save_id");
    text(md.save_id);
    text("load_id");
    emit(op::NONE);
    emit(op::SETITEMS);
    emit(op::BUILD);
  }

  std::map<std::string, std::uint32_t> globals_;
  std::unordered_map<std::string, std::uint32_t> strings_;
};

inline std::vector<std::uint8_t> write_metadata_bytes(const Metadata& md) {
  return MetadataWriter().dump(md);
}

}  // namespace sgckpt::detail::dcp
