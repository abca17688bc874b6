// sgckpt/io/pth.hpp: load and save PyTorch .pth files.
//
// Loading accepts torch's zip format (1.6 to 2.x: any root folder name, stored or deflated
// records, zip64, little- or big-endian data) and the pre-1.6 legacy stream. There is one
// parse path for untrusted input and no permissive fallback: the zip reader bounds-checks
// every offset, the pickle machine runs only data opcodes and allowlisted globals, and every
// storage record must be exactly as long as its persistent id says.
//
// Saving writes what torch.save writes (zip layout byte-compatible with torch/miniz, pickle
// protocol 2 restricted to what weights_only loaders accept), atomically: a temporary file
// in the same directory, fsync, rename, fsync of the directory.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/detail/pickle/reader.hpp"
#include "sgckpt/detail/pickle/writer.hpp"
#include "sgckpt/detail/zip/crc32.hpp"
#include "sgckpt/detail/zip/reader.hpp"
#include "sgckpt/detail/zip/writer.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth_api.hpp"
#include "sgckpt/io/safetensors.hpp"

namespace sgckpt {

namespace detail {

// What the first bytes say a file is.
enum class FileFormat { Zip, Legacy, Tar, Safetensors, Unknown };

inline FileFormat sniff(std::span<const std::byte> b) {
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.size() >= 4 && at(0) == 'P' && at(1) == 'K' && at(2) == 3 && at(3) == 4) return FileFormat::Zip;
  // Legacy stream: PROTO 2, LONG1 10 bytes, the magic number 0x1950A86A20F9469CFC6C.
  static constexpr unsigned char legacy[] = {0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C,
                                             0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19};
  if (b.size() >= sizeof legacy && std::memcmp(b.data(), legacy, sizeof legacy) == 0)
    return FileFormat::Legacy;
  if (b.size() >= 262 && std::memcmp(b.data() + 257, "ustar", 5) == 0) return FileFormat::Tar;
  if (safetensors::sniff(b)) return FileFormat::Safetensors;
  return FileFormat::Unknown;
}

inline void byteswap_elements(std::byte* p, std::size_t nbytes, std::size_t width) {
  if (width <= 1) return;
  for (std::size_t i = 0; i + width <= nbytes; i += width) std::reverse(p + i, p + i + width);
}

// Copies a stored record into owned memory, computing its CRC-32 on the way (in chunks
// that are still in cache when the checksum reads them).
inline std::shared_ptr<Storage> copy_record(std::span<const std::byte> src, std::uint32_t* crc_out) {
  auto s = Storage::allocate(src.size(), /*huge_pages=*/true);
  std::byte* dst = src.empty() ? nullptr : s->mutable_data();
  std::uint32_t crc = 0;
  constexpr std::size_t kChunk = 256 << 10;
  for (std::size_t off = 0; off < src.size(); off += kChunk) {
    const std::size_t n = std::min(kChunk, src.size() - off);
    std::memcpy(dst + off, src.data() + off, n);
    if (crc_out) crc = zip::crc32(crc, std::span<const std::byte>(dst + off, n));
  }
  if (crc_out) *crc_out = crc;
  return s;
}

inline std::uint64_t parse_version(std::span<const std::byte> rec) {
  std::uint64_t v = 0;
  std::size_t i = 0;
  for (; i < rec.size() && i < 20; ++i) {
    const auto c = static_cast<unsigned char>(rec[i]);
    if (c < '0' || c > '9') break;
    v = v * 10 + (c - '0');
  }
  if (i == 0) throw Error(ErrorKind::Corrupt, "the version record does not start with a number");
  return v;
}

// The format version. torch reads '.data/version' when present, else 'version'; with both,
// a file could say one thing to torch and another to a reader taking the other: they must
// agree.
inline void check_version(const zip::ZipReader& zip, const std::string& prefix, const LoadOptions& opt,
                          const std::string& label) {
  auto read_version = [&](const zip::ZipEntry& e) {
    if (e.size > 64)
      throw Error(ErrorKind::Corrupt, "the version record is " + std::to_string(e.size) + " bytes long",
                  {label, e.name, {}, {}});
    try {
      return parse_version(zip.read(e, opt.verify_crc));
    } catch (const Error& err) {
      throw Error(err.kind(), err.message(), {label, e.name, 0, {}});
    }
  };
  const zip::ZipEntry* top = zip.find(prefix + "version");
  const zip::ZipEntry* data = zip.find(prefix + ".data/version");
  if (!top && !data)
    throw Error(ErrorKind::Corrupt, "the archive has no version record ('" + prefix + "version')",
                {label, {}, {}, {}});
  const zip::ZipEntry* used = data ? data : top;
  const std::uint64_t v = read_version(*used);
  if (top && data && read_version(*top) != v)
    throw Error(ErrorKind::Refused,
                "the version records '" + top->name + "' and '" + data->name + "' disagree",
                {label, data->name, 0, {}});
  if (v < 1 || v > 10)
    throw Error(ErrorKind::Refused,
                "unsupported file format version " + std::to_string(v) + " (torch reads 1 to 10)",
                {label, used->name, 0, {}});
}

// torch >= 2.5 may write '.storage_alignment' (a decimal number) and refuses a file whose
// record is not one; so does this reader (it needs no alignment: records are copied or
// mapped where they lie).
inline void check_storage_alignment(const zip::ZipReader& zip, const std::string& prefix,
                                    const LoadOptions& opt, const std::string& label) {
  const zip::ZipEntry* e = zip.find(prefix + ".storage_alignment");
  if (!e) return;
  if (e->size > 20)
    throw Error(ErrorKind::Corrupt,
                "the .storage_alignment record is " + std::to_string(e->size) + " bytes long",
                {label, e->name, 0, {}});
  const auto rec = zip.read(*e, opt.verify_crc);
  // What Python's int() takes from torch's str(alignment): digits, maybe with surrounding space.
  auto at = [&](std::size_t i) { return static_cast<unsigned char>(rec[i]); };
  std::size_t i = 0, end = rec.size();
  while (i < end && std::isspace(at(i))) ++i;
  while (end > i && std::isspace(at(end - 1))) --end;
  std::size_t digits = i;
  while (digits < end && std::isdigit(at(digits))) ++digits;
  if (i == end || digits != end)
    throw Error(ErrorKind::Corrupt, "the .storage_alignment record is not a decimal number",
                {label, e->name, 0, {}});
}

inline Value load_zip(std::span<const std::byte> bytes, std::shared_ptr<const void> owner,
                      const LoadOptions& opt, const std::string& label) {
  zip::ZipReader zip(bytes, opt.limits, label);
  const std::string root = zip.root();
  const std::string prefix = root + "/";
  for (const auto& e : zip.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) != 0)
      throw Error(ErrorKind::Corrupt,
                  "zip entry '" + e.name + "' lies outside the archive root '" + prefix + "'",
                  {label, e.name, {}, {}});
  }
  if (zip.find(prefix + "constants.pkl"))
    throw Error(ErrorKind::Refused,
                "this is a TorchScript archive (it has constants.pkl); load it with torch.jit.load, not as a "
                "checkpoint",
                {label, prefix + "constants.pkl", {}, {}});

  auto read_small = [&](const zip::ZipEntry& e) { return zip.read(e, opt.verify_crc); };

  check_version(zip, prefix, opt, label);
  check_storage_alignment(zip, prefix, opt, label);

  bool big_endian = false;
  if (const zip::ZipEntry* bo = zip.find(prefix + "byteorder")) {
    if (bo->size > 16)
      throw Error(ErrorKind::Corrupt, "the byteorder record is too long", {label, bo->name, {}, {}});
    const auto rec = read_small(*bo);
    const std::string s(reinterpret_cast<const char*>(rec.data()), rec.size());
    if (s == "big")
      big_endian = true;
    else if (s != "little")
      throw Error(ErrorKind::Corrupt, "unknown byte order '" + s + "' (expected 'little' or 'big')",
                  {label, bo->name, 0, {}});
  }

  const zip::ZipEntry* pkl = zip.find(prefix + "data.pkl");
  if (!pkl)
    throw Error(ErrorKind::Corrupt, "the archive has no '" + prefix + "data.pkl' record",
                {label, {}, {}, {}});
  if (pkl->size > opt.limits.max_pickle_bytes)
    throw Error(ErrorKind::Limit,
                "data.pkl of " + std::to_string(pkl->size) + " bytes exceeds the limit of " +
                    std::to_string(opt.limits.max_pickle_bytes) + " bytes",
                {label, pkl->name, {}, {}});
  const std::vector<std::byte> pickle_bytes = read_small(*pkl);

  auto resolve = [&](const pickle::StorageRequest& req) -> std::shared_ptr<Storage> {
    const std::string name = prefix + "data/" + req.key;
    const zip::ZipEntry* e = zip.find(name);
    if (!e)
      throw Error(ErrorKind::Corrupt, "storage record '" + name + "' is missing from the archive",
                  {label, pkl->name, {}, {}});
    if (e->size != req.nbytes)
      throw Error(ErrorKind::Corrupt,
                  "storage record '" + name + "' holds " + std::to_string(e->size) +
                      " bytes but its tensor needs " + std::to_string(req.nbytes) + " (" +
                      std::to_string(req.numel) + " elements)",
                  {label, name, {}, {}});
    const std::size_t width = req.dtype ? itemsize(*req.dtype) : 1;
    const std::size_t swap_width = req.dtype && is_complex(*req.dtype) ? width / 2 : width;
    std::shared_ptr<Storage> s;
    try {
      if (e->method == 0) {
        const auto src = zip.stored_bytes(*e);
        const bool aligned =
            reinterpret_cast<std::uintptr_t>(src.data()) % std::max<std::size_t>(width, 1) == 0;
        if (opt.mmap && owner && aligned && !big_endian) {
          if (opt.verify_crc) zip.check_crc(*e, src);
          return Storage::view(owner, src.data(), src.size());
        }
        std::uint32_t crc = 0;
        s = copy_record(src, opt.verify_crc ? &crc : nullptr);
        if (opt.verify_crc && crc != e->crc32)
          throw Error(ErrorKind::Corrupt, "CRC-32 mismatch: the record's data is corrupt (computed " +
                                              std::to_string(crc) + ", stored " + std::to_string(e->crc32) +
                                              ")");
      } else {
        zip.check_inflated_size(*e);
        s = Storage::allocate(static_cast<std::size_t>(e->size), /*huge_pages=*/true);
        const std::span<std::byte> out(s->nbytes() ? s->mutable_data() : nullptr, s->nbytes());
        zip.inflate_into(*e, out);
        if (opt.verify_crc) zip.check_crc(*e, out);
      }
    } catch (const Error& err) {
      throw err.with_record(name).with_file(label);
    }
    if (big_endian && s->nbytes()) byteswap_elements(s->mutable_data(), s->nbytes(), swap_width);
    return s;
  };

  try {
    pickle::ReaderConfig cfg{opt.limits, false, bytes.size(), opt.numpy};
    return pickle::read(pickle_bytes, resolve, cfg);
  } catch (const Error& e) {
    throw e.with_record(pkl->name).with_file(label);
  }
}

inline Value load_legacy(std::span<const std::byte> bytes, const LoadOptions& opt, const std::string& label) {
  auto no_storage = [](const pickle::StorageRequest&) -> std::shared_ptr<Storage> {
    throw Error(ErrorKind::Corrupt, "unexpected storage in a legacy header pickle");
  };
  std::size_t pos = 0;
  auto next_pickle = [&](const pickle::StorageResolver& r, bool legacy_ids, const char* what) {
    std::size_t used = 0;
    try {
      pickle::ReaderConfig cfg{opt.limits, legacy_ids, bytes.size(), opt.numpy};
      Value v = pickle::read(bytes.subspan(pos), r, cfg, &used);
      pos += used;
      return v;
    } catch (const Error& e) {
      ErrorContext c = e.context();
      if (c.offset) c.offset = *c.offset + pos;
      c.file = label;
      throw Error(e.kind(), std::string("legacy ") + what + ": " + e.message(), c);
    }
  };

  const Value magic = next_pickle(no_storage, false, "magic number");
  static constexpr std::uint8_t kMagic[] = {0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19};
  if (!magic.is_int() || !(magic.as_big_int() == Int::from_le_bytes(kMagic, sizeof kMagic)))
    throw Error(ErrorKind::Corrupt, "invalid magic number in a legacy torch file", {label, {}, 0, {}});
  const std::size_t proto_at = pos;
  const Value protocol = next_pickle(no_storage, false, "protocol version");
  if (!protocol.is_int() || protocol.as_big_int() != Int(1001))
    throw Error(ErrorKind::Refused, "unsupported legacy protocol version (expected 1001)",
                {label, {}, proto_at, {}});
  const std::size_t info_at = pos;
  const Value sys_info = next_pickle(no_storage, false, "system info");
  if (!sys_info.is_dict() || !sys_info.contains("little_endian") || !sys_info.at("little_endian").is_bool())
    throw Error(ErrorKind::Corrupt, "malformed legacy system info", {label, {}, info_at, {}});
  if (!sys_info.at("little_endian").as_bool())
    throw Error(ErrorKind::Refused, "big-endian legacy files are not supported", {label, {}, info_at, {}});

  // Storages are declared by the object pickle and filled from the data that follows it.
  struct Pending {
    std::shared_ptr<Storage> storage;
    std::size_t itemsize;
    std::uint64_t numel;
  };
  std::unordered_map<std::string, Pending> pending;
  std::uint64_t declared = 0;
  auto declare = [&](const pickle::StorageRequest& req) -> std::shared_ptr<Storage> {
    // Every storage's bytes must follow in the file, so the file size bounds the allocation.
    if (detail::add_overflows(declared, req.nbytes, declared) || declared > bytes.size())
      throw Error(ErrorKind::Truncated, "legacy storages declare more bytes than the file holds (" +
                                            std::to_string(bytes.size()) + ")");
    auto s = Storage::zeros(static_cast<std::size_t>(req.nbytes));
    pending.emplace(req.key, Pending{s, req.dtype ? itemsize(*req.dtype) : 1, req.numel});
    return s;
  };
  Value result = next_pickle(declare, true, "object pickle");
  const std::size_t keys_at = pos;
  const Value keys = next_pickle(no_storage, false, "storage key list");
  if (!keys.is_list())
    throw Error(ErrorKind::Corrupt, "legacy storage key list is not a list", {label, {}, keys_at, {}});
  for (const auto& k : keys.items()) {
    if (!k.is_str())
      throw Error(ErrorKind::Corrupt, "legacy storage key is not a str", {label, {}, keys_at, {}});
    auto it = pending.find(k.as_str());
    if (it == pending.end())
      throw Error(ErrorKind::Corrupt, "legacy storage '" + k.as_str() + "' has data but no tensor uses it",
                  {label, {}, pos, {}});
    if (bytes.size() - pos < 8)
      throw Error(ErrorKind::Truncated, "truncated legacy storage header", {label, {}, pos, {}});
    std::uint64_t numel = 0;
    for (int i = 0; i < 8; ++i) numel |= std::uint64_t{static_cast<unsigned char>(bytes[pos + i])} << (8 * i);
    if (numel != it->second.numel)
      throw Error(ErrorKind::Corrupt,
                  "legacy storage '" + k.as_str() + "' says " + std::to_string(numel) +
                      " elements, its tensors " + std::to_string(it->second.numel),
                  {label, {}, pos, {}});
    pos += 8;
    const std::size_t n = it->second.storage->nbytes();
    if (bytes.size() - pos < n)
      throw Error(ErrorKind::Truncated,
                  "truncated legacy storage '" + k.as_str() + "' (" + std::to_string(n) + " bytes needed)",
                  {label, {}, pos, {}});
    if (n) std::memcpy(it->second.storage->mutable_data(), bytes.data() + pos, n);
    pos += n;
    pending.erase(it);
  }
  if (!pending.empty())
    throw Error(ErrorKind::Corrupt,
                "legacy storage '" + pending.begin()->first + "' is used by a tensor but has no data",
                {label, {}, pos, {}});
  return result;
}

inline Value load_bytes(std::span<const std::byte> bytes, std::shared_ptr<const void> owner,
                        const LoadOptions& opt, const std::string& label) {
  switch (sniff(bytes)) {
    case FileFormat::Zip:
      return load_zip(bytes, std::move(owner), opt, label);
    case FileFormat::Legacy:
      return load_legacy(bytes, opt, label);
    case FileFormat::Tar:
      throw Error(ErrorKind::Refused,
                  "this is a tar archive (the torch < 0.4 format), which is not supported",
                  {label, {}, 0, {}});
    case FileFormat::Safetensors:
      try {
        return safetensors::load(bytes, owner, opt);
      } catch (const Error& e) {
        throw e.with_file(label);
      }
    case FileFormat::Unknown:
      break;
  }
  if (bytes.empty()) throw Error(ErrorKind::Truncated, "the file is empty", {label, {}, 0, {}});
  throw Error(ErrorKind::Corrupt,
              "not a PyTorch checkpoint: neither a zip archive, a legacy torch stream nor a safetensors file",
              {label, {}, 0, {}});
}

// torch's rule: the file name minus its last extension.
inline std::string default_root(const std::filesystem::path& path) {
  std::string stem = path.filename().string();
  if (auto dot = stem.rfind('.'); dot != std::string::npos) stem.resize(dot);
  if (stem.empty())
    throw Error("invalid file name: no name left for the archive root once the extension is removed",
                {path.string(), {}, {}, {}});
  return stem;
}

// torch's .data/serialization_id: 40 decimal digits, unique per save (two random 64-bit
// numbers, each zero-padded to 20 digits).
inline std::string serialization_id() {
  std::random_device rd;
  std::string id;
  for (int half = 0; half < 2; ++half) {
    const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd();
    const std::string digits = std::to_string(v);
    id += std::string(20 - digits.size(), '0') + digits;
  }
  return id;
}

// Writes the archive through `sink`, records in torch's order (docs/pth-format.md).
inline void write_pth(const Value& value, const std::string& root, const zip::ZipWriter::Sink& sink,
                      ArchiveLayout layout = ArchiveLayout::Torch1) {
  if (root.empty() || root.find('/') != std::string::npos)
    throw Error("invalid archive root name '" + root + "'");
  pickle::Writer pw;
  const std::vector<std::uint8_t> pkl = pw.dump(value);
  zip::ZipWriter zip(sink);
  auto as_bytes = [](const auto& v) { return std::as_bytes(std::span(v.data(), v.size())); };
  const bool torch2 = layout == ArchiveLayout::Torch2;
  zip.add(root + "/data.pkl", as_bytes(pkl));
  if (torch2) {
    zip.add(root + "/.format_version", as_bytes(std::string_view("1")));
    zip.add(root + "/.storage_alignment", as_bytes(std::string_view("64")));
  }
  zip.add(root + "/byteorder", as_bytes(std::string_view("little")));
  for (const auto& rec : pw.storages()) zip.add(root + "/data/" + rec.key, rec.storage->bytes());
  zip.add(root + "/version", as_bytes(std::string_view("3\n")));
  if (torch2) zip.add(root + "/.data/serialization_id", as_bytes(serialization_id()));
  zip.finish();
}

}  // namespace detail

// The API's definitions: inline in header-only mode; in compiled mode
// (sgckpt::sgckpt_compiled), compiled once, into the library (src/sgckpt.cpp).
#if !defined(SGCKPT_COMPILED) || defined(SGCKPT_COMPILING_LIBRARY)

SGCKPT_API_INLINE Value load(const std::filesystem::path& path, const LoadOptions& options) {
  auto mapped = detail::fs::MappedFile::open(path);
  return detail::load_bytes(mapped->bytes(), mapped, options, path.string());
}

SGCKPT_API_INLINE Value load(std::span<const std::byte> bytes, const LoadOptions& options,
                             const std::string& label) {
  LoadOptions copy = options;
  copy.mmap = false;  // the caller owns the buffer: never keep views into it
  return detail::load_bytes(bytes, nullptr, copy, label);
}

SGCKPT_API_INLINE void save(const Value& value, const std::filesystem::path& path,
                            const SaveOptions& options) {
  const bool safetensors = options.format == SaveFormat::Safetensors ||
                           (options.format == SaveFormat::Auto && path.extension() == ".safetensors");
  try {
    detail::fs::AtomicFile file(path, options.durable);
    const auto sink = [&](std::span<const std::byte> b) { file.write(b); };
    if (safetensors)
      detail::safetensors::write(value, sink, options.flatten);
    else
      detail::write_pth(value, options.root_name.empty() ? detail::default_root(path) : options.root_name,
                        sink, options.layout);
    file.commit();
  } catch (const Error& e) {
    throw e.with_file(path.string());
  }
}

SGCKPT_API_INLINE std::vector<std::byte> save_to_memory(const Value& value, const SaveOptions& options) {
  std::vector<std::byte> out;
  if (options.format == SaveFormat::Safetensors) {
    detail::safetensors::write(
        value, [&](std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); },
        options.flatten);
    return out;
  }
  detail::write_pth(
      value, options.root_name.empty() ? "archive" : options.root_name,
      [&](std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); }, options.layout);
  return out;
}

#endif

}  // namespace sgckpt
