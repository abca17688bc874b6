// sgckpt/detail/dcp/metadata_writer.hpp: writes dcp::Metadata as the pickle torch's
// FileSystemWriter writes: DCP's dataclasses made with NEWOBJ and given their fields with BUILD,
// TensorProperties through its __setstate__ tuple, storage_data keyed by MetadataIndex.
// Protocol 2 (torch writes 4; pickle.load reads both); each class is named once and then
// referenced through the memo.
#pragma once

#include <cstdint>
#include <map>
#include <string>
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
    str("state_dict_metadata");
    state_dict_metadata(md);
    str("planner_data");
    planner_data(md);
    str("storage_data");
    storage_data(md);
    str("storage_meta");
    storage_meta(md);
    emit(op::SETITEMS);
    emit(op::BUILD);
    return end();
  }

 private:
  static constexpr const char* kMetadataModule = "torch.distributed.checkpoint.metadata";

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
    str("torch.strided");
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
      str(e.fqn);
      if (!e.tensor) {
        klass("BytesStorageMetadata");
      } else {
        klass("TensorStorageMetadata");
        emit(op::EMPTY_DICT);
        emit(op::MARK);
        str("properties");
        properties(*e.tensor);
        str("size");
        size(e.tensor->size);
        str("chunks");
        emit(op::EMPTY_LIST);
        for (const Chunk& c : e.tensor->chunks) {
          klass("ChunkStorageMetadata");
          emit(op::EMPTY_DICT);
          emit(op::MARK);
          str("offsets");
          size(c.offsets);
          str("sizes");
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
      str(e.fqn);
      emit(op::MARK);
      for (const auto& p : e.path) {
        if (const auto* s = std::get_if<std::string>(&p))
          str(*s);
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
        str("fqn");
        str(e.fqn);
        if (e.tensor) {
          str("offset");
          size(e.tensor->chunks[i].offsets);
          str("index");
          integer(Int(static_cast<std::int64_t>(i)));
        } else {
          str("index");
          emit(op::NONE);
        }
        emit(op::SETITEMS);
        emit(op::BUILD);
        const StorageLocation& s = e.storage[i];
        klass("_StorageInfo", "torch.distributed.checkpoint.filesystem");
        emit(op::EMPTY_DICT);
        emit(op::MARK);
        str("relative_path");
        str(s.relative_path);
        str("offset");
        integer(Int(static_cast<std::int64_t>(s.offset)));
        str("length");
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
    str("checkpoint_id");
    if (md.checkpoint_id.empty())
      emit(op::NONE);
    else
      str(md.checkpoint_id);
    str("save_id");
    str(md.save_id);
    str("load_id");
    emit(op::NONE);
    emit(op::SETITEMS);
    emit(op::BUILD);
  }

  std::map<std::string, std::uint32_t> globals_;
};

inline std::vector<std::uint8_t> write_metadata_bytes(const Metadata& md) {
  return MetadataWriter().dump(md);
}

}  // namespace sgckpt::detail::dcp
