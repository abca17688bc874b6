// sgckpt/detail/zip/reader.hpp: reads the zip container of a .pth file from memory (usually a
// file mapping), treating every byte as hostile.
//
// The layout torch writes is described in docs/pth-format.md. This reader accepts
// any well-formed single-disk zip with stored or deflated entries, and refuses everything it
// cannot check: each offset and size is bounds-checked with overflow-checked arithmetic
// before it is used, counts and sizes are capped by Limits before anything is allocated, and
// every refusal is an sgckpt::Error naming the file, the record and the byte offset.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/detail/little_endian.hpp"
#include "sgckpt/detail/zip/crc32.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::zip {

// One central-directory entry, with zip64 values already substituted.
struct ZipEntry {
  std::string name;
  std::uint64_t header_offset;    // of the local file header
  std::uint64_t compressed_size;  // bytes in the file
  std::uint64_t size;             // bytes once extracted
  std::uint32_t crc32;
  std::uint16_t method;  // 0 stored, 8 deflated
  std::uint16_t flags;
};

// Little-endian loads; callers have bounds-checked the range.
inline std::uint16_t zip_le16(const std::byte* p) {
  return static_cast<std::uint16_t>(load_le(p, 2));
}
inline std::uint32_t zip_le32(const std::byte* p) {
  return static_cast<std::uint32_t>(load_le(p, 4));
}
inline std::uint64_t zip_le64(const std::byte* p) {
  return load_le(p, 8);
}

inline std::string zip_hex32(std::uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Zip record layouts (APPNOTE.TXT 4.3); sizes are the fixed parts.
inline constexpr std::uint32_t kZipLocalSig = 0x04034b50;
inline constexpr std::uint32_t kZipCentralSig = 0x02014b50;
inline constexpr std::uint32_t kZipEocdSig = 0x06054b50;
inline constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
inline constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr std::uint32_t kZipDescriptorSig = 0x08074b50;
inline constexpr std::size_t kZipLocalSize = 30;
inline constexpr std::size_t kZipCentralSize = 46;
inline constexpr std::size_t kZipEocdSize = 22;
inline constexpr std::size_t kZip64EocdSize = 56;
inline constexpr std::size_t kZip64LocatorSize = 20;
// The classic EOCD ends with a comment of at most 65535 bytes: it starts within the last
// 22 + 65535 bytes, which bounds the backward scan.
inline constexpr std::size_t kZipMaxEocdScan = kZipEocdSize + 0xFFFF;
// Deflate cannot expand more than 1032:1 (a 258-byte match coded in 2 bits), so a record
// declaring more than this per compressed byte is a lie: refuse it before allocating.
inline constexpr std::uint64_t kDeflateMaxRatio = 1032;

class ZipReader {
 public:
  // Parses the end records and the central directory and checks every entry's local header.
  // `archive` must outlive the reader; `label` (usually the file path) names the file in errors.
  explicit ZipReader(std::span<const std::byte> archive, const Limits& limits = {}, std::string label = {})
      : archive_(archive), limits_(limits), label_(std::move(label)) {
    const EndRecords end = find_end_records();
    cd_offset_ = end.cd_offset;
    read_central_directory(end);
    check_local_headers();
  }

  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }

  // The entry with exactly this name, or nullptr. Binary search over a sorted index.
  const ZipEntry* find(std::string_view name) const {
    auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                               [&](std::size_t i, std::string_view n) { return entries_[i].name < n; });
    if (it == by_name_.end() || entries_[*it].name != name) return nullptr;
    return &entries_[*it];
  }

  // torch's rule: the folder of the first central-directory entry, whatever it is called.
  std::string root() const {
    if (entries_.empty())
      fail(ErrorKind::Corrupt, "zip: the archive has no records, so it has no root folder", 0);
    const std::string& first = entries_.front().name;
    const auto slash = first.find('/');
    if (slash == std::string::npos || slash == 0)
      fail(ErrorKind::Corrupt,
           "zip: the first record '" + first +
               "' is not inside a folder; torch requires every record under '<root>/'",
           entries_.front().header_offset, first);
    return first.substr(0, slash);
  }

  // Where `e`'s payload starts. The local header is parsed on its own terms: its name and
  // extra lengths differ from the central directory's (torch's FB padding is local-only).
  std::uint64_t data_offset(const ZipEntry& e) const {
    const std::uint64_t h = e.header_offset;
    // Local records live before the central directory; so must the whole payload.
    if (!range_ok(h, kZipLocalSize, cd_offset_))
      fail(ErrorKind::Corrupt,
           "zip: local header of record '" + e.name + "' at byte offset " + std::to_string(h) +
               " runs past the start of the central directory (byte offset " + std::to_string(cd_offset_) +
               ")",
           h, e.name);
    const std::byte* p = archive_.data() + h;
    if (zip_le32(p) != kZipLocalSig)
      fail(ErrorKind::Corrupt,
           "zip: no local header signature at byte offset " + std::to_string(h) + " where record '" + e.name +
               "' should start",
           h, e.name);
    const std::uint16_t flags = zip_le16(p + 6);
    const std::uint16_t method = zip_le16(p + 8);
    const std::uint16_t name_len = zip_le16(p + 26);
    const std::uint16_t extra_len = zip_le16(p + 28);
    const std::uint64_t name_at = h + kZipLocalSize;
    const std::uint64_t data_at = name_at + name_len + extra_len;  // < 2^64: h < 2^63 here
    if (data_at > cd_offset_)
      fail(ErrorKind::Corrupt,
           "zip: local header of record '" + e.name + "' at byte offset " + std::to_string(h) +
               " declares a name and extra field running past the start of the central directory (byte "
               "offset " +
               std::to_string(cd_offset_) + ")",
           h, e.name);
    const std::string_view local_name(reinterpret_cast<const char*>(archive_.data() + name_at), name_len);
    if (local_name != e.name)
      fail(ErrorKind::Corrupt,
           "zip: local header at byte offset " + std::to_string(h) + " names '" + std::string(local_name) +
               "' but the central directory names '" + e.name + "'",
           h, e.name);
    if (flags & 0x0001)
      fail(ErrorKind::Refused, "zip: record '" + e.name + "' is encrypted (local header flag)", h, e.name);
    if (method != e.method)
      fail(ErrorKind::Corrupt,
           "zip: local header of record '" + e.name + "' says method " + std::to_string(method) +
               " but the central directory says " + std::to_string(e.method),
           h, e.name);
    if (!range_ok(data_at, e.compressed_size, cd_offset_))
      fail(ErrorKind::Truncated,
           "zip: payload of record '" + e.name + "' (" + std::to_string(e.compressed_size) +
               " bytes at byte offset " + std::to_string(data_at) +
               ") runs past the start of the central directory (byte offset " + std::to_string(cd_offset_) +
               ")",
           data_at, e.name);
    return data_at;
  }

  // The payload of a stored record, in place (zero-copy).
  std::span<const std::byte> stored_bytes(const ZipEntry& e) const {
    if (e.method != 0)
      fail(ErrorKind::Usage,
           "zip: record '" + e.name + "' is compressed (method " + std::to_string(e.method) +
               "), so it cannot be viewed in place; read() inflates it",
           e.header_offset, e.name);
    // Entries of this archive always agree; a caller-made entry might not, and only
    // compressed_size is bounds-checked by data_offset().
    if (e.size != e.compressed_size)
      fail(ErrorKind::Corrupt,
           "zip: stored record '" + e.name + "' has different compressed and uncompressed sizes",
           e.header_offset, e.name);
    return archive_.subspan(static_cast<std::size_t>(data_offset(e)), static_cast<std::size_t>(e.size));
  }

  // The extracted payload: a copy of a stored record, or an inflated deflate stream. The
  // output never exceeds the declared size, which is capped before anything is allocated.
  std::vector<std::byte> read(const ZipEntry& e, bool verify_crc) const {
    if (e.method == 8) {
      check_inflated_size(e);
      std::vector<std::byte> out;
      try {
        out.resize(static_cast<std::size_t>(e.size));
      } catch (const std::bad_alloc&) {
        fail(ErrorKind::Limit,
             "zip: cannot allocate " + std::to_string(e.size) + " bytes to inflate record '" + e.name + "'",
             e.header_offset, e.name);
      }
      inflate_into(e, out);
      if (verify_crc) check_crc(e, out);
      return out;
    }
    const auto src = stored_bytes(e);  // refuses methods other than 0
    std::vector<std::byte> out;
    try {
      out.reserve(src.size());
    } catch (const std::bad_alloc&) {
      fail(ErrorKind::Limit,
           "zip: cannot allocate " + std::to_string(src.size()) + " bytes to read record '" + e.name + "'",
           e.header_offset, e.name);
    }
    // Copy and checksum in chunks, so the checksum reads bytes that are still in cache.
    constexpr std::size_t kChunk = 256 << 10;
    std::uint32_t crc = 0;
    for (std::size_t at = 0; at < src.size(); at += kChunk) {
      const auto chunk = src.subspan(at, std::min(kChunk, src.size() - at));
      out.insert(out.end(), chunk.begin(), chunk.end());
      if (verify_crc) crc = sgckpt::detail::zip::crc32(crc, chunk);
    }
    if (verify_crc && crc != e.crc32) fail_crc(e, crc);
    return out;
  }

  // Inflates deflated record `e` into `out`, which the caller sized to e.size after
  // check_inflated_size(e): no intermediate buffer, so a record is copied once.
  void inflate_into(const ZipEntry& e, std::span<std::byte> out) const {
    if (out.size() != e.size)
      fail(ErrorKind::Usage, "zip: inflate_into needs a buffer of the record's size", e.header_offset,
           e.name);
    inflate(e, out.data());
  }

  // Both caps come before any allocation: a few bytes of input cannot claim terabytes.
  void check_inflated_size(const ZipEntry& e) const {
    if (e.size > limits_.max_inflated_record_bytes)
      fail(ErrorKind::Limit,
           "zip: deflated record '" + e.name + "' declares " + std::to_string(e.size) +
               " bytes, more than the limit of " + std::to_string(limits_.max_inflated_record_bytes) +
               " (Limits::max_inflated_record_bytes)",
           e.header_offset, e.name);
    std::uint64_t max_out;
    if (__builtin_mul_overflow(e.compressed_size, kDeflateMaxRatio, &max_out)) max_out = UINT64_MAX;
    if (e.size > max_out)
      fail(ErrorKind::Corrupt,
           "zip: deflated record '" + e.name + "' declares " + std::to_string(e.size) + " bytes from only " +
               std::to_string(e.compressed_size) +
               " compressed bytes, beyond deflate's maximum ratio of 1032:1",
           e.header_offset, e.name);
  }

  // Throws unless `data` has the CRC-32 the central directory gives for `e`.
  void check_crc(const ZipEntry& e, std::span<const std::byte> data) const {
    const std::uint32_t actual = sgckpt::detail::zip::crc32(data);
    if (actual != e.crc32) fail_crc(e, actual);
  }

 private:
  struct EndRecords {
    std::uint64_t entries;
    std::uint64_t cd_offset;
    std::uint64_t cd_size;
    std::uint64_t start;  // first byte of the end records: the central directory must end here
  };

  [[noreturn]] void fail(ErrorKind kind, const std::string& message, std::uint64_t offset,
                         const std::string& record = {}) const {
    ErrorContext c;
    c.file = label_;
    c.record = record;
    c.offset = offset;
    throw Error(kind, message, c);
  }

  [[noreturn]] void fail_crc(const ZipEntry& e, std::uint32_t actual) const {
    fail(ErrorKind::Corrupt,
         "zip: CRC-32 mismatch in record '" + e.name + "': the central directory says " + zip_hex32(e.crc32) +
             " but the data has " + zip_hex32(actual),
         e.header_offset, e.name);
  }

  // [at, at + len) lies within [0, limit), with no overflow.
  static bool range_ok(std::uint64_t at, std::uint64_t len, std::uint64_t limit) {
    std::uint64_t end;
    return !__builtin_add_overflow(at, len, &end) && end <= limit;
  }

  std::uint64_t size() const noexcept { return archive_.size(); }

  EndRecords find_end_records() const {
    const std::uint64_t n = size();
    if (n < kZipEocdSize)
      fail(ErrorKind::Truncated,
           "zip: the file is " + std::to_string(n) +
               " bytes long, too short for a zip end of central directory record (22 bytes)",
           0);
    // Scan backwards: the last signature whose comment fits the file is the real one.
    const std::uint64_t lowest = n > kZipMaxEocdScan ? n - kZipMaxEocdScan : 0;
    std::uint64_t eocd = n;  // "not found"
    for (std::uint64_t pos = n - kZipEocdSize + 1; pos-- > lowest;) {
      const std::byte* p = archive_.data() + pos;
      if (zip_le32(p) == kZipEocdSig && pos + kZipEocdSize + zip_le16(p + 20) <= n) {
        eocd = pos;
        break;
      }
    }
    if (eocd == n)
      fail(ErrorKind::Corrupt,
           "zip: no end of central directory record in the last " + std::to_string(n - lowest) +
               " bytes: not a zip archive, or a truncated one",
           n);

    const std::byte* p = archive_.data() + eocd;
    const std::uint16_t disk = zip_le16(p + 4);
    const std::uint16_t cd_disk = zip_le16(p + 6);
    const std::uint16_t disk_entries = zip_le16(p + 8);
    const std::uint16_t entries16 = zip_le16(p + 10);
    const std::uint32_t cd_size32 = zip_le32(p + 12);
    const std::uint32_t cd_offset32 = zip_le32(p + 16);
    const std::string at = " (end of central directory record at byte offset " + std::to_string(eocd) + ")";

    EndRecords r{entries16, cd_offset32, cd_size32, eocd};
    const bool has_locator =
        eocd >= kZip64LocatorSize && zip_le32(archive_.data() + eocd - kZip64LocatorSize) == kZip64LocatorSig;
    if (has_locator) {
      r = read_zip64_end(eocd - kZip64LocatorSize);
      // Fields that are not saturated must agree with the zip64 record: a mismatch is corruption.
      const bool agree = (entries16 == 0xFFFF || entries16 == r.entries) &&
                         (disk_entries == 0xFFFF || disk_entries == r.entries) &&
                         (cd_size32 == 0xFFFFFFFF || cd_size32 == r.cd_size) &&
                         (cd_offset32 == 0xFFFFFFFF || cd_offset32 == r.cd_offset) &&
                         (disk == 0xFFFF || disk == 0) && (cd_disk == 0xFFFF || cd_disk == 0);
      if (!agree)
        fail(ErrorKind::Corrupt,
             "zip: the end of central directory record disagrees with the zip64 end of central directory "
             "record" +
                 at,
             eocd);
    } else {
      if (cd_size32 == 0xFFFFFFFF || cd_offset32 == 0xFFFFFFFF)
        fail(
            ErrorKind::Corrupt,
            "zip: the end of central directory record has saturated (0xFFFFFFFF) fields but no zip64 locator "
            "precedes it" +
                at,
            eocd);
      if (disk != 0 || cd_disk != 0)
        fail(ErrorKind::Refused,
             "zip: multi-disk archives are not supported (disk " + std::to_string(disk) + ")" + at, eocd);
      if (disk_entries != entries16)
        fail(ErrorKind::Corrupt,
             "zip: the end of central directory record counts " + std::to_string(disk_entries) +
                 " entries on this disk but " + std::to_string(entries16) + " in total" + at,
             eocd);
    }

    if (!range_ok(r.cd_offset, r.cd_size, r.start))
      fail(ErrorKind::Corrupt,
           "zip: the central directory (" + std::to_string(r.cd_size) + " bytes at byte offset " +
               std::to_string(r.cd_offset) + ") runs past the end records at byte offset " +
               std::to_string(r.start) + " (file size " + std::to_string(n) + ")",
           r.cd_offset);
    // Anything between the central directory and the end records is unexplained bytes.
    if (r.cd_offset + r.cd_size != r.start)
      fail(ErrorKind::Corrupt,
           "zip: the central directory ends at byte offset " + std::to_string(r.cd_offset + r.cd_size) +
               " but the end records start at byte offset " + std::to_string(r.start),
           r.cd_offset + r.cd_size);
    if (r.entries > limits_.max_zip_entries)
      fail(ErrorKind::Limit,
           "zip: the archive declares " + std::to_string(r.entries) + " records, more than the limit of " +
               std::to_string(limits_.max_zip_entries) + " (Limits::max_zip_entries)",
           eocd);
    if (r.cd_size > limits_.max_central_directory_bytes)
      fail(ErrorKind::Limit,
           "zip: the central directory is " + std::to_string(r.cd_size) + " bytes, more than the limit of " +
               std::to_string(limits_.max_central_directory_bytes) + " (Limits::max_central_directory_bytes)",
           r.cd_offset);
    return r;
  }

  // Reads the zip64 locator at `loc` and the zip64 end of central directory record it points to.
  EndRecords read_zip64_end(std::uint64_t loc) const {
    const std::byte* l = archive_.data() + loc;
    const std::uint32_t eocd_disk = zip_le32(l + 4);
    const std::uint64_t z = zip_le64(l + 8);
    const std::uint32_t disks = zip_le32(l + 16);
    if (eocd_disk != 0 || disks > 1)
      fail(ErrorKind::Refused,
           "zip: the zip64 locator at byte offset " + std::to_string(loc) +
               " describes a multi-disk archive, which is not supported",
           loc);
    if (!range_ok(z, kZip64EocdSize, loc))
      fail(ErrorKind::Corrupt,
           "zip: the zip64 locator at byte offset " + std::to_string(loc) +
               " points to a zip64 end of central directory record at byte offset " + std::to_string(z) +
               " that does not fit before it",
           loc);
    const std::byte* p = archive_.data() + z;
    if (zip_le32(p) != kZip64EocdSig)
      fail(ErrorKind::Corrupt,
           "zip: no zip64 end of central directory signature at byte offset " + std::to_string(z) +
               " (where the zip64 locator points)",
           z);
    // The record may carry an extensible data sector after its 56 fixed bytes; it must end
    // exactly at the locator.
    const std::uint64_t record_size = zip_le64(p + 4);
    std::uint64_t record_end;
    if (__builtin_add_overflow(z + 12, record_size, &record_end) || record_end != loc ||
        record_size < kZip64EocdSize - 12)
      fail(ErrorKind::Corrupt,
           "zip: the zip64 end of central directory record at byte offset " + std::to_string(z) +
               " declares a size of " + std::to_string(record_size) +
               " bytes, but the locator follows at byte offset " + std::to_string(loc),
           z);
    const std::uint32_t disk = zip_le32(p + 16);
    const std::uint32_t cd_disk = zip_le32(p + 20);
    const std::uint64_t disk_entries = zip_le64(p + 24);
    const std::uint64_t entries = zip_le64(p + 32);
    if (disk != 0 || cd_disk != 0 || disk_entries != entries)
      fail(ErrorKind::Refused,
           "zip: the zip64 end of central directory record at byte offset " + std::to_string(z) +
               " describes a multi-disk archive (or its two entry counts differ: " +
               std::to_string(disk_entries) + " and " + std::to_string(entries) + ")",
           z);
    return EndRecords{entries, zip_le64(p + 48), zip_le64(p + 40), z};
  }

  static std::string cd_where(std::uint64_t index, std::uint64_t pos) {
    return "central directory entry " + std::to_string(index) + " at byte offset " + std::to_string(pos);
  }

  void read_central_directory(const EndRecords& end) {
    // Each entry takes at least 46 bytes, so the CD size bounds what a lying count can reserve.
    if (end.entries > end.cd_size / kZipCentralSize)
      fail(ErrorKind::Corrupt,
           "zip: the end records declare " + std::to_string(end.entries) +
               " records, which cannot fit in a central directory of " + std::to_string(end.cd_size) +
               " bytes",
           end.cd_offset);
    entries_.reserve(static_cast<std::size_t>(end.entries));
    const std::uint64_t cd_end = end.cd_offset + end.cd_size;
    std::uint64_t pos = end.cd_offset;
    for (std::uint64_t i = 0; i < end.entries; ++i) {
      // Built only when an error is thrown: the common path allocates nothing per entry.
      const auto where = [i, pos] { return cd_where(i, pos); };
      if (!range_ok(pos, kZipCentralSize, cd_end))
        fail(ErrorKind::Corrupt,
             "zip: " + where() + " runs past the end of the central directory (byte offset " +
                 std::to_string(cd_end) + ", file size " + std::to_string(size()) + ")",
             pos);
      const std::byte* p = archive_.data() + pos;
      if (zip_le32(p) != kZipCentralSig)
        fail(ErrorKind::Corrupt, "zip: " + where() + " has no signature", pos);
      ZipEntry e;
      e.flags = zip_le16(p + 8);
      e.method = zip_le16(p + 10);
      e.crc32 = zip_le32(p + 16);
      e.compressed_size = zip_le32(p + 20);
      e.size = zip_le32(p + 24);
      const std::uint16_t name_len = zip_le16(p + 28);
      const std::uint16_t extra_len = zip_le16(p + 30);
      const std::uint16_t comment_len = zip_le16(p + 32);
      std::uint32_t disk = zip_le16(p + 34);
      e.header_offset = zip_le32(p + 42);
      const std::uint64_t var_len = std::uint64_t{name_len} + extra_len + comment_len;
      if (!range_ok(pos + kZipCentralSize, var_len, cd_end))
        fail(ErrorKind::Corrupt,
             "zip: " + where() + " declares a name, extra field and comment (" + std::to_string(var_len) +
                 " bytes) running past the end of the central directory (byte offset " +
                 std::to_string(cd_end) + ")",
             pos);
      const std::byte* name = p + kZipCentralSize;
      e.name.assign(reinterpret_cast<const char*>(name), name_len);
      if (e.name.empty()) fail(ErrorKind::Corrupt, "zip: " + where() + " has an empty name", pos);
      if (e.name.find('\0') != std::string::npos)
        fail(ErrorKind::Corrupt, "zip: " + where() + " has a NUL byte in its name", pos, e.name);
      read_zip64_extra(e, disk, {name + name_len, extra_len}, i, pos);
      if (e.flags & 0x0041)
        fail(ErrorKind::Refused, "zip: " + where() + " is encrypted, which is not supported", pos, e.name);
      if (e.method != 0 && e.method != 8)
        fail(ErrorKind::Refused,
             "zip: " + where() + " uses compression method " + std::to_string(e.method) +
                 "; only 0 (stored) and 8 (deflate) are supported",
             pos, e.name);
      if (disk != 0)
        fail(ErrorKind::Refused,
             "zip: " + where() + " starts on disk " + std::to_string(disk) + " of a multi-disk archive", pos,
             e.name);
      if (e.method == 0 && e.compressed_size != e.size)
        fail(ErrorKind::Corrupt,
             "zip: " + where() + " is stored but declares " + std::to_string(e.compressed_size) +
                 " compressed and " + std::to_string(e.size) + " uncompressed bytes",
             pos, e.name);
      entries_.push_back(std::move(e));
      pos += kZipCentralSize + var_len;
    }
    if (pos != cd_end)
      fail(ErrorKind::Corrupt,
           "zip: the central directory's " + std::to_string(end.entries) + " entries end at byte offset " +
               std::to_string(pos) + " but it is declared to end at byte offset " + std::to_string(cd_end),
           pos);

    by_name_.resize(entries_.size());
    for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
    std::sort(by_name_.begin(), by_name_.end(),
              [&](std::size_t a, std::size_t b) { return entries_[a].name < entries_[b].name; });
    for (std::size_t i = 1; i < by_name_.size(); ++i) {
      const ZipEntry& e = entries_[by_name_[i]];
      if (e.name == entries_[by_name_[i - 1]].name)
        fail(ErrorKind::Refused, "zip: the archive has two records named '" + e.name + "'", e.header_offset,
             e.name);
    }
    refuse_names_differing_in_case();
  }

  // torch's reader (miniz) finds records by name ignoring ASCII case, taking the first match:
  // with 'data.pkl' and 'Data.pkl' both present, torch and an exact lookup would read
  // different records. No real archive has such names, so they are refused.
  void refuse_names_differing_in_case() const {
    auto folded = [](std::string s) {
      for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return s;
    };
    std::vector<std::pair<std::string, std::size_t>> names;
    names.reserve(entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i) names.emplace_back(folded(entries_[i].name), i);
    std::sort(names.begin(), names.end());
    for (std::size_t i = 1; i < names.size(); ++i)
      if (names[i].first == names[i - 1].first) {
        const ZipEntry& a = entries_[names[i - 1].second];
        const ZipEntry& b = entries_[names[i].second];
        fail(ErrorKind::Refused,
             "zip: records '" + a.name + "' and '" + b.name +
                 "' differ only by letter case (torch would read one for the other)",
             b.header_offset, b.name);
      }
  }

  // Substitutes the zip64 extra field (id 0x0001) values for the saturated 32-bit fields. The
  // field holds only the values whose header field is saturated, in this order.
  void read_zip64_extra(ZipEntry& e, std::uint32_t& disk, std::span<const std::byte> extra,
                        std::uint64_t index, std::uint64_t pos) const {
    const auto where = [index, pos] { return cd_where(index, pos); };
    const bool need_size = e.size == 0xFFFFFFFF;
    const bool need_csize = e.compressed_size == 0xFFFFFFFF;
    const bool need_offset = e.header_offset == 0xFFFFFFFF;
    const bool need_disk = disk == 0xFFFF;
    bool found = false;
    std::size_t i = 0;
    while (i < extra.size()) {
      if (extra.size() - i < 4)
        fail(ErrorKind::Corrupt, "zip: " + where() + " has a truncated extra field header", pos, e.name);
      const std::uint16_t id = zip_le16(extra.data() + i);
      const std::uint16_t len = zip_le16(extra.data() + i + 2);
      if (extra.size() - i - 4 < len)
        fail(ErrorKind::Corrupt,
             "zip: " + where() + " has an extra field (id " + std::to_string(id) + ", " +
                 std::to_string(len) + " bytes) running past the end of its extra data",
             pos, e.name);
      if (id == 0x0001 && !found) {
        found = true;
        const std::byte* f = extra.data() + i + 4;
        std::size_t left = len;
        auto take = [&](std::uint64_t& v, std::size_t width, const char* what) {
          if (left < width)
            fail(ErrorKind::Corrupt,
                 "zip: " + where() + " has a zip64 extra field too short to hold its " + what, pos, e.name);
          v = width == 8 ? zip_le64(f) : zip_le32(f);
          f += width;
          left -= width;
        };
        if (need_size) take(e.size, 8, "uncompressed size");
        if (need_csize) take(e.compressed_size, 8, "compressed size");
        if (need_offset) take(e.header_offset, 8, "local header offset");
        if (need_disk) {
          std::uint64_t d = 0;
          take(d, 4, "disk number");
          disk = static_cast<std::uint32_t>(d);
        }
      }
      i += 4 + std::size_t{len};
    }
    if ((need_size || need_csize || need_offset || need_disk) && !found)
      fail(ErrorKind::Corrupt,
           "zip: " + where() + " has a saturated (0xFFFFFFFF) size or offset but no zip64 extra field", pos,
           e.name);
  }

  // Parses every local header once, so that a broken one is reported when the archive is
  // opened, and refuses records whose bytes overlap (the trick of non-recursive zip bombs).
  void check_local_headers() const {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // [header, payload end)
    spans.reserve(entries_.size());
    for (const ZipEntry& e : entries_)
      spans.emplace_back(e.header_offset, data_offset(e) + e.compressed_size);
    std::vector<std::size_t> order(entries_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return spans[a].first < spans[b].first; });
    for (std::size_t k = 1; k < order.size(); ++k) {
      const std::size_t a = order[k - 1], b = order[k];
      if (spans[a].second > spans[b].first)
        fail(ErrorKind::Corrupt,
             "zip: records '" + entries_[a].name + "' and '" + entries_[b].name +
                 "' overlap: the first ends at byte offset " + std::to_string(spans[a].second) +
                 ", the second starts at byte offset " + std::to_string(spans[b].first),
             spans[b].first, entries_[b].name);
    }
  }

  void inflate(const ZipEntry& e, std::byte* out) const {
    const std::uint64_t data_at = data_offset(e);
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK)  // raw deflate, as zip stores it
      fail(ErrorKind::Limit, "zip: zlib inflateInit2 failed", e.header_offset, e.name);
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&zs};

    // avail_in/avail_out are 32-bit: feed both sides in chunks.
    constexpr std::uint64_t kChunk = 1u << 30;
    const std::byte* in = archive_.data() + data_at;
    std::uint64_t in_left = e.compressed_size, out_done = 0;
    std::byte probe[1];  // once the output is full, a further byte means the stream is too long
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && in_left > 0) {
        const auto take = static_cast<uInt>(std::min(in_left, kChunk));
        zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in));
        zs.avail_in = take;
        in += take;
        in_left -= take;
      }
      const bool full = out_done == e.size;
      const auto room = static_cast<uInt>(full ? 1 : std::min(e.size - out_done, kChunk));
      zs.next_out = reinterpret_cast<Bytef*>(full ? probe : out + out_done);
      zs.avail_out = room;
      rc = ::inflate(&zs, Z_NO_FLUSH);
      const uInt produced = room - zs.avail_out;
      if (full && produced > 0)
        fail(ErrorKind::Corrupt,
             "zip: deflated record '" + e.name + "' inflates to more than its declared " +
                 std::to_string(e.size) + " bytes",
             e.header_offset, e.name);
      out_done += produced;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0)
        fail(ErrorKind::Truncated,
             "zip: deflated record '" + e.name + "' ends (after " + std::to_string(e.compressed_size) +
                 " compressed bytes) before its deflate stream does",
             data_at + e.compressed_size, e.name);
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        fail(ErrorKind::Corrupt,
             "zip: invalid deflate data in record '" + e.name + "'" +
                 (zs.msg ? std::string(": ") + zs.msg : ""),
             data_at + zs.total_in, e.name);
    }
    if (out_done != e.size)
      fail(ErrorKind::Corrupt,
           "zip: deflated record '" + e.name + "' inflates to " + std::to_string(out_done) +
               " bytes but declares " + std::to_string(e.size),
           e.header_offset, e.name);
  }

  std::span<const std::byte> archive_;
  Limits limits_;
  std::string label_;
  std::uint64_t cd_offset_ = 0;
  std::vector<ZipEntry> entries_;
  std::vector<std::size_t> by_name_;  // indices into entries_, sorted by name
};

}  // namespace sgckpt::detail::zip
