// sgckpt/io/options.hpp: what a caller can choose when loading and saving, and the limits
// that bound what a hostile file can make the reader do.
#pragma once

#include <cstdint>
#include <string>

namespace sgckpt {

// Resource limits for reading untrusted files. Every one is checked before the memory it
// guards is allocated. The defaults fit any real checkpoint: raise them only knowingly.
struct Limits {
  std::uint64_t max_pickle_bytes = 1ull << 30;    // size of data.pkl (or a legacy pickle)
  std::uint64_t max_opcodes = 200'000'000;        // pickle opcodes executed
  std::uint32_t max_depth = 1000;                 // nesting of containers
  std::uint64_t max_values = 100'000'000;         // nodes materialized in the value tree
  std::uint64_t max_memo = 50'000'000;            // pickle memo entries
  std::uint64_t max_string_bytes = 256ull << 20;  // one str
  std::uint64_t max_zip_entries = 1'000'000;      // records in one archive
  std::uint64_t max_central_directory_bytes = 256ull << 20;
  std::uint64_t max_inflated_record_bytes = 1ull << 40;  // deflated records are inflated into memory
  // Memory the pickle machine may use for its objects (nodes, container slots, strings, the
  // value tree): memory_allowance + memory_per_input_byte * (size of the file). A small
  // deflated or memo-heavy file that asks for gigabytes is refused. The per-byte figure must
  // admit the densest encoding a writer produces: a one-byte opcode per object (a list of
  // empty dicts as sgckpt writes it needs ~345 bytes per byte of file, a list of None as
  // torch writes it ~176), so that every file torch or sgckpt writes reads back.
  std::uint64_t memory_allowance = 256ull << 20;
  std::uint64_t memory_per_input_byte = 384;
};

struct LoadOptions {
  // Map the file and make every tensor a read-only, zero-copy view into the mapping
  // (stored, 64-byte aligned records; anything else is copied). The mapping lives as
  // long as any tensor that views it.
  bool mmap = false;
  // Check each record's CRC-32 against the central directory (torch never does).
  bool verify_crc = true;
  // Read numpy scalars and arrays of plain numeric dtypes (a restricted rebuild, never numpy
  // itself: docs/pth-format.md). false refuses them, as torch's weights_only loader does
  // unless told otherwise.
  bool numpy = true;
  Limits limits{};
};

// Which records the archive holds besides data.pkl, the storages and version.
enum class ArchiveLayout : std::uint8_t {
  // torch 1.13's: a byteorder record. What sgckpt has always written.
  Torch1,
  // torch 2.x's: also .format_version and .storage_alignment after data.pkl (what recent torch
  // 2.x writes) and .data/serialization_id last (torch 2.6 writes it: two 20-digit numbers).
  // Every torch reads either; torch 1.x ignores the extra records.
  Torch2,
};

// The format save() writes.
enum class SaveFormat : std::uint8_t {
  Auto,         // by the file name: ".safetensors" is safetensors, anything else .pth (memory: .pth)
  Pth,          // torch.save's zip format
  Safetensors,  // a flat map of tensors (io/safetensors.hpp, docs/safetensors.md)
};

struct SaveOptions {
  // fsync the file before the rename and the directory after it, so a power loss cannot
  // lose a checkpoint that save() reported as written.
  bool durable = true;
  // The archive's root folder. Empty: derived like torch (file name minus its last
  // extension; "archive" when saving to memory).
  std::string root_name{};
  ArchiveLayout layout = ArchiveLayout::Torch1;
  SaveFormat format = SaveFormat::Auto;
  // safetensors only: nested dicts become names joined with '.' ({"net": {"fc.weight": t}} ->
  // "net.fc.weight") instead of being refused.
  bool flatten = false;
};

}  // namespace sgckpt
