// The zip layer: torch's files rebuilt byte for byte, zip64 offsets as torch writes them,
// every torch fixture read back, deflated records, and the refusals a hostile file meets.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/detail/zip/crc32.hpp"
#include "sgckpt/detail/zip/reader.hpp"
#include "sgckpt/detail/zip/writer.hpp"

using namespace sgckpt;
using namespace sgckpt::detail::zip;  // the internals under test
using sgckpt::detail::fs::AtomicFile;
using sgckpt::detail::fs::MappedFile;
using sgckpt::test::as_bytes;
using sgckpt::test::as_string;
using sgckpt::test::contains;
using sgckpt::test::error_message;
using sgckpt::test::error_of;

namespace {

using Bytes = std::vector<std::byte>;

// Every zip written by torch 1.13 (the legacy_* files are the pre-zip stream format).
std::vector<std::filesystem::path> zip_fixtures() {
  std::vector<std::filesystem::path> out;
  for (const auto& ent : std::filesystem::directory_iterator(test::torch113_dir())) {
    const auto name = ent.path().filename().string();
    const auto ext = ent.path().extension();
    if ((ext == ".pt" || ext == ".pth") && name.rfind("legacy_", 0) != 0) out.push_back(ent.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// torch's naming rule (docs/pth-format.md): the file name minus its last extension; "archive" for a
// file saved to a buffer.
std::string expected_root(const std::filesystem::path& p) {
  return p.filename() == "from_buffer.pt" ? "archive" : p.stem().string();
}

std::uint64_t get_le(std::span<const std::byte> b, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int i = width; i-- > 0;) v = v << 8 | std::to_integer<std::uint64_t>(b[at + i]);
  return v;
}

void set_le(Bytes& b, std::size_t at, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) b[at + i] = static_cast<std::byte>(v >> (8 * i));
}

std::string hex(std::span<const std::byte> b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (auto x : b) {
    s += digits[std::to_integer<int>(x) >> 4];
    s += digits[std::to_integer<int>(x) & 15];
  }
  return s;
}

Bytes from_hex(std::string_view h) {
  Bytes b;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    b.push_back(static_cast<std::byte>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return b;
}

Bytes pseudo_random(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::byte>(gen());
  return b;
}

// Raw deflate (no zlib header, window -15), the form zip stores.
Bytes deflate_raw(std::span<const std::byte> in) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&zs, in.size()));
  zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A record for build_zip(): what lies in the file, and what the headers declare about it.
struct RawRecord {
  std::string name = {};
  Bytes payload = {};                                 // the bytes stored in the file after the local header
  std::uint16_t method = 0;                           // 0 stored, 8 deflated
  std::optional<std::uint32_t> size = std::nullopt;   // declared uncompressed size (default: payload size)
  std::optional<std::uint32_t> csize = std::nullopt;  // declared compressed size (default: payload size)
  std::optional<std::uint32_t> crc = std::nullopt;    // declared CRC (default: CRC of the payload)
  std::uint16_t flags = 0;
  Bytes cd_extra = {};  // extra field of the central directory entry
};

// A plain classic zip (no zip64, no padding, like Python's zipfile writes), for records and
// lies that torch never writes.
Bytes build_zip(const std::vector<RawRecord>& records) {
  Bytes out;
  auto put = [&](std::uint64_t v, int width) {
    for (int i = 0; i < width; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
  };
  auto put_name = [&](const std::string& n) {
    for (char c : n) out.push_back(static_cast<std::byte>(c));
  };
  std::vector<std::uint64_t> offsets;
  for (const auto& r : records) {
    offsets.push_back(out.size());
    put(0x04034b50, 4);
    put(20, 2);
    put(r.flags, 2);
    put(r.method, 2);
    put(0, 4);
    put(r.crc.value_or(crc32(r.payload)), 4);
    put(r.csize.value_or(static_cast<std::uint32_t>(r.payload.size())), 4);
    put(r.size.value_or(static_cast<std::uint32_t>(r.payload.size())), 4);
    put(r.name.size(), 2);
    put(0, 2);
    put_name(r.name);
    out.insert(out.end(), r.payload.begin(), r.payload.end());
  }
  const std::uint64_t cd = out.size();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    put(0x02014b50, 4);
    put(20, 2);
    put(20, 2);
    put(r.flags, 2);
    put(r.method, 2);
    put(0, 4);
    put(r.crc.value_or(crc32(r.payload)), 4);
    put(r.csize.value_or(static_cast<std::uint32_t>(r.payload.size())), 4);
    put(r.size.value_or(static_cast<std::uint32_t>(r.payload.size())), 4);
    put(r.name.size(), 2);
    put(r.cd_extra.size(), 2);
    put(0, 2);
    put(0, 2);
    put(0, 2);
    put(0, 4);
    put(offsets[i], 4);
    put_name(r.name);
    out.insert(out.end(), r.cd_extra.begin(), r.cd_extra.end());
  }
  const std::uint64_t cd_size = out.size() - cd;
  put(0x06054b50, 4);
  put(0, 4);
  put(records.size(), 2);
  put(records.size(), 2);
  put(cd_size, 4);
  put(cd, 4);
  put(0, 2);
  return out;
}

Bytes bytes_of(std::string_view s) {
  auto b = as_bytes(s);
  return Bytes(b.begin(), b.end());
}

// What a torch dump (fixtures/torch-1.13/dumps/<file>.txt) lists for one record.
struct DumpedRecord {
  std::uint64_t header_offset, data_offset, size;
  std::uint32_t crc;
};

// Parses lines like "scalar0d/data/0  hdr@ 222 data@ 320 (mod64= 0) usize= 4 ... cd_crc=0x3265f52b ...".
std::map<std::string, DumpedRecord> read_dump(const std::filesystem::path& fixture) {
  std::ifstream in(fixture.parent_path() / "dumps" / (fixture.filename().string() + ".txt"));
  REQUIRE(in);
  std::map<std::string, DumpedRecord> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" hdr@ ") == std::string::npos) continue;
    std::istringstream words(line);
    std::string name, w;
    DumpedRecord r{};
    words >> name;
    while (words >> w) {
      if (w == "hdr@") words >> r.header_offset;
      if (w == "data@") words >> r.data_offset;
      if (w == "usize=") words >> r.size;
      if (w.rfind("cd_crc=", 0) == 0)
        r.crc = static_cast<std::uint32_t>(std::stoul(w.substr(7), nullptr, 16));
    }
    out[name] = r;
  }
  return out;
}

Bytes scalar0d() {
  return test::read_file(test::torch113_dir() / "scalar0d.pt");
}

// scalar0d.pt (750 bytes), from its dump: records at 0, 222, 340 (payloads at 64, 320, 448);
// central directory at 466 (entries at 466, 529, 590), zip64 end record at 652, zip64
// locator at 708, end record at 728.
constexpr std::size_t kCd0 = 466, kCd1 = 529, kCd2 = 590, kZ64 = 652, kLoc = 708, kEocd = 728;

// The message with which ZipReader refuses `archive`, labelled "bad.pt".
std::string refusal(const Bytes& archive, const Limits& limits = {}) {
  return error_message([&] { ZipReader r(archive, limits, "bad.pt"); });
}

// A sink for archives too large for memory: counts every byte and keeps only the first KiB
// and everything from byte `tail_from` on.
struct HeadTailSink {
  explicit HeadTailSink(std::uint64_t from) : tail_from(from) {}
  std::uint64_t tail_from, seen = 0;
  Bytes head, tail;

  ZipWriter::Sink sink() {
    return [this](std::span<const std::byte> b) {
      for (std::size_t i = 0; i < b.size() && seen + i < 1024; ++i) head.push_back(b[i]);
      if (seen + b.size() > tail_from) {
        const std::size_t skip = seen >= tail_from ? 0 : static_cast<std::size_t>(tail_from - seen);
        tail.insert(tail.end(), b.begin() + static_cast<std::ptrdiff_t>(skip), b.end());
      }
      seen += b.size();
    };
  }
  // n bytes at archive offset `offset`, which must lie in the head or the tail.
  std::span<const std::byte> at(std::uint64_t offset, std::size_t n) const {
    if (offset >= tail_from) return std::span<const std::byte>(tail).subspan(offset - tail_from, n);
    return std::span<const std::byte>(head).subspan(offset, n);
  }
};

// `n` bytes as pieces of one shared zero buffer: a huge payload without the memory.
std::vector<std::span<const std::byte>> zero_pieces(const Bytes& zeros, std::uint64_t n) {
  std::vector<std::span<const std::byte>> pieces(n / zeros.size(), zeros);
  pieces.push_back(std::span<const std::byte>(zeros).first(n % zeros.size()));
  return pieces;
}

}  // namespace

TEST_CASE("crc32() equals zlib's crc32 for every length, alignment and starting value") {
  const Bytes data = pseudo_random(5000, 1);
  std::mt19937 gen(2);
  for (std::size_t len = 0; len < 1100; ++len) {
    for (std::size_t skew : {0, 1, 7}) {
      const std::uint32_t start = len % 3 ? gen() : 0;
      const auto piece = std::span<const std::byte>(data).subspan(skew, len);
      const auto expected = static_cast<std::uint32_t>(
          ::crc32(start, reinterpret_cast<const Bytef*>(piece.data()), static_cast<uInt>(piece.size())));
      REQUIRE(crc32(start, piece) == expected);
    }
  }
  // Chained calls give the CRC of the concatenation, as with zlib.
  const auto whole = std::span<const std::byte>(data);
  CHECK(crc32(crc32(whole.first(1234)), whole.subspan(1234)) == crc32(whole));
  CHECK(crc32(as_bytes("123456789")) == 0xCBF43926u);  // the standard check value
}

TEST_CASE("ZipWriter rebuilds every torch-written fixture byte for byte") {
  const auto fixtures = zip_fixtures();
  REQUIRE(fixtures.size() >= 27);
  for (const auto& path : fixtures) {
    INFO("fixture: " << path.string());
    const Bytes original = test::read_file(path);
    const ZipReader reader(original, {}, path.string());
    Bytes rebuilt;
    ZipWriter writer(
        [&](std::span<const std::byte> b) { rebuilt.insert(rebuilt.end(), b.begin(), b.end()); });
    for (const ZipEntry& e : reader.entries()) writer.add(e.name, reader.stored_bytes(e));
    writer.finish();
    CHECK(writer.bytes_written() == original.size());
    CHECK(rebuilt.size() == original.size());
    CHECK(rebuilt == original);
  }
}

TEST_CASE("ZipWriter lays out a 4 GiB + 100 byte record exactly like torch (zip64)") {
  // dumps/zip64_4GiB_test.txt: torch 1.13 saving a uint8 tensor of 4294967396 bytes to big.pt.
  // The payloads are not needed, only their sizes and CRCs: the big one is 16 MiB of zeros
  // repeated (with torch's CRC passed in), and the sink keeps just the first KiB and
  // everything from byte 4294967808 on (the end of the big payload, the small records, the
  // central directory and the end records).
  constexpr std::uint64_t kBig = 4294967396, kTotal = 4294968459;
  const Bytes zeros(16u << 20);
  const float ones[3] = {1, 1, 1};
  const Bytes pickle(255, std::byte{'p'});

  HeadTailSink out(4294967808);
  ZipWriter writer(out.sink());
  writer.add("big/data.pkl", pickle, 0x09429c14);
  writer.add("big/data/0", zero_pieces(zeros, kBig), 0x374ed946);
  writer.add("big/data/1", std::as_bytes(std::span(ones)));  // CRC computed: 0xdc7c4e94 per the dump
  writer.add("big/version", as_bytes("3\n"));
  writer.finish();
  REQUIRE(out.seen == kTotal);
  CHECK(writer.bytes_written() == kTotal);
  REQUIRE(out.head.size() == 1024);
  REQUIRE(out.tail.size() == kTotal - out.tail_from);
  auto at = [&](std::uint64_t offset, std::size_t n) { return out.at(offset, n); };
  // A local header: version 0, flags 0x0808, no method/time/CRC/sizes, then name and extras.
  auto local_header = [](std::string_view name, std::string_view zip64_hex, std::size_t padding) {
    const Bytes zip64 = from_hex(zip64_hex);
    std::string h =
        "504b0304"
        "0000"
        "0808"
        "0000"
        "00000000"
        "00000000"
        "00000000"
        "00000000";
    Bytes b = from_hex(h);
    const std::size_t extra = zip64.size() + 4 + padding;
    b.push_back(static_cast<std::byte>(name.size()));
    b.push_back(std::byte{0});
    b.push_back(static_cast<std::byte>(extra & 0xFF));
    b.push_back(static_cast<std::byte>(extra >> 8));
    for (char c : name) b.push_back(static_cast<std::byte>(c));
    b.insert(b.end(), zip64.begin(), zip64.end());
    for (auto x : from_hex("4642")) b.push_back(x);
    b.push_back(static_cast<std::byte>(padding));
    b.push_back(std::byte{0});
    b.insert(b.end(), padding, std::byte{'Z'});
    return b;
  };

  // data.pkl @0, payload @64, 16-byte descriptor, then data/0's header @335.
  const Bytes pkl_header = local_header("big/data.pkl", "", 18);
  CHECK(hex(at(0, pkl_header.size())) == hex(pkl_header));
  CHECK(pkl_header.size() == 64);
  CHECK(hex(at(319, 16)) == "504b0708149c4209ff000000ff000000");
  // data/0 @335: zip64 extra [size, 0], 49 padding bytes, payload @448, 24-byte descriptor.
  const Bytes big_header = local_header("big/data/0", "0100100064000000010000000000000000000000", 49);
  CHECK(hex(at(335, big_header.size())) == hex(big_header));
  CHECK(335 + big_header.size() == 448);
  CHECK(hex(at(448 + kBig, 24)) ==
        "504b070846d94e376400000001000000"
        "6400000001000000");
  // data/1 @4294967868 (past 4 GiB): zip64 extra [offset], payload @4294967936, 24-byte descriptor.
  const Bytes one_header = local_header("big/data/1", "010008003c02000001000000", 12);
  CHECK(hex(at(4294967868, one_header.size())) == hex(one_header));
  CHECK(4294967868 + one_header.size() == 4294967936);
  CHECK(hex(at(4294967936 + 12, 24)) == "504b0708944e7cdc0c000000000000000c00000000000000");
  // version @4294967972, payload @4294968064.
  const Bytes version_header = local_header("big/version", "01000800a402000001000000", 35);
  CHECK(hex(at(4294967972, version_header.size())) == hex(version_header));
  CHECK(hex(at(4294968064, 2)) == "330a");
  CHECK(hex(at(4294968066, 24)) == "504b0708d19e675502000000000000000200000000000000");

  // Central directory @4294968090: no FB padding; zip64 extras only for what overflows.
  struct Cd {
    const char* name;
    std::uint32_t crc, size32, offset32;
    const char* extra;
  };
  const Cd expected[] = {
      {"big/data.pkl", 0x09429c14, 255, 0, ""},
      {"big/data/0", 0x374ed946, 0xFFFFFFFF, 335, "0100100064000000010000006400000001000000"},
      {"big/data/1", 0xdc7c4e94, 12, 0xFFFFFFFF, "010008003c02000001000000"},
      {"big/version", 0x55679ed1, 2, 0xFFFFFFFF, "01000800a402000001000000"}};
  std::uint64_t pos = 4294968090;
  for (const Cd& e : expected) {
    INFO("central directory entry " << e.name);
    const auto h = at(pos, 46);
    CHECK(get_le(h, 0, 4) == 0x02014b50);
    CHECK(get_le(h, 4, 2) == 0);       // version made by
    CHECK(get_le(h, 6, 2) == 0);       // version needed
    CHECK(get_le(h, 8, 2) == 0x0808);  // flags
    CHECK(get_le(h, 10, 2) == 0);      // stored
    CHECK(get_le(h, 16, 4) == e.crc);
    CHECK(get_le(h, 20, 4) == e.size32);
    CHECK(get_le(h, 24, 4) == e.size32);
    const auto name_len = get_le(h, 28, 2), extra_len = get_le(h, 30, 2);
    CHECK(get_le(h, 42, 4) == e.offset32);
    CHECK(as_string(at(pos + 46, name_len)) == e.name);
    CHECK(hex(at(pos + 46 + name_len, extra_len)) == e.extra);
    pos += 46 + name_len + extra_len;
  }
  CHECK(pos - 4294968090 == 271);
  // End records: zip64 end record, locator, and the classic record with a saturated CD offset.
  CHECK(hex(at(pos, 56)) ==
        "504b0606"
        "2c00000000000000"
        "1e03"
        "2d00"
        "00000000"
        "00000000"  // size 44, made by 0x031E, needs 45
        "0400000000000000"
        "0400000000000000"
        "0f01000000000000"
        "1a03000001000000");  // 4 records, CD 271 B @4294968090
  CHECK(hex(at(pos + 56, 20)) ==
        "504b0607"
        "00000000"
        "2904000001000000"
        "01000000");  // zip64 end record @4294968361
  CHECK(hex(at(pos + 76, 22)) ==
        "504b0506"
        "00000000"
        "0400"
        "0400"
        "0f010000"
        "ffffffff"
        "0000");
  CHECK(pos + 98 == kTotal);
}

TEST_CASE("ZipWriter switches to zip64 fields at 0xFFFFFFFF exactly (>=, not >)") {
  const Bytes zeros(16u << 20);
  SUBCASE("a record of exactly 0xFFFFFFFF bytes") {
    HeadTailSink out(64 + 0xFFFFFFFFull);
    ZipWriter writer(out.sink());
    writer.add("r/a", zero_pieces(zeros, 0xFFFFFFFF), 0x12345678);
    writer.finish();
    // Local header: zip64 extra [size, 0] before the FB field; then a 24-byte descriptor.
    CHECK(hex(out.at(28, 2)) == "1f00");  // extra length: 20 (zip64) + 4 (FB) + 7 (padding to 64)
    CHECK(hex(out.at(33, 20)) ==
          "01001000"
          "ffffffff00000000"
          "0000000000000000");
    CHECK(hex(out.at(64 + 0xFFFFFFFFull, 24)) ==
          "504b0708"
          "78563412"
          "ffffffff00000000"
          "ffffffff00000000");
    // Central directory entry: saturated sizes plus the zip64 extra with both sizes.
    const std::uint64_t cd = 64 + 0xFFFFFFFFull + 24;
    CHECK(hex(out.at(cd + 20, 8)) == "ffffffffffffffff");
    CHECK(hex(out.at(cd + 46 + 3, 20)) ==
          "01001000"
          "ffffffff00000000"
          "ffffffff00000000");
  }
  SUBCASE("a record whose local header starts at byte 0xFFFFFFFF") {
    // 64 (header) + payload + 16 (descriptor) = 0xFFFFFFFF.
    constexpr std::uint64_t h = 0xFFFFFFFF;  // where r/b's local header must start
    HeadTailSink out(h);
    ZipWriter writer(out.sink());
    writer.add("r/a", zero_pieces(zeros, 0xFFFFFFFF - 80), 0);
    writer.add("r/b", as_bytes("xy"));
    writer.finish();
    CHECK(hex(out.at(h + 28, 2)) == "2000");  // extra: 12 (zip64) + 4 (FB) + 16 (padding)
    CHECK(hex(out.at(h + 33, 12)) ==
          "01000800"
          "ffffffff00000000");
    CHECK(hex(out.at(h + 45, 4)) == "46421000");  // FB, 16 bytes
    constexpr std::uint64_t data = h + 65;
    CHECK(data % 64 == 0);
    CHECK(hex(out.at(data, 2)) == "7879");
    CHECK(hex(out.at(data + 2, 24)) ==
          "504b0708"
          "9928e68f"
          "0200000000000000"
          "0200000000000000");
    // Central directory entry of r/b: offset saturated, zip64 extra with the offset only.
    const std::uint64_t cd_b = data + 2 + 24 + 46 + 3;  // after r/a's entry, which needs no zip64 extra
    CHECK(hex(out.at(cd_b, 4)) == "504b0102");
    CHECK(hex(out.at(cd_b + 42, 4)) == "ffffffff");
    CHECK(hex(out.at(cd_b + 46 + 3, 12)) ==
          "01000800"
          "ffffffff00000000");
  }
}

TEST_CASE("ZipReader reads a 4 GiB + 100 byte zip64 archive from a sparse file") {
  // The same archive as above, written with the big payload as a hole (lseek instead of
  // write), then mapped: the reader touches only the headers.
  test::TempDir dir;
  const auto path = dir / "big.pt";
  constexpr std::uint64_t kBig = 4294967396;
  const Bytes zeros(16u << 20);
  const auto pieces = zero_pieces(zeros, kBig);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  ZipWriter writer([&](std::span<const std::byte> b) {
    if (b.data() == zeros.data())
      REQUIRE(::lseek(fd, static_cast<off_t>(b.size()), SEEK_CUR) >= 0);
    else
      REQUIRE(::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size()));
  });
  const float ones[3] = {1, 1, 1};
  writer.add("big/data.pkl", Bytes(255, std::byte{'p'}));
  writer.add("big/data/0", pieces, 0x374ed946);
  writer.add("big/data/1", std::as_bytes(std::span(ones)));
  writer.add("big/version", as_bytes("3\n"));
  writer.finish();
  ::close(fd);
  REQUIRE(std::filesystem::file_size(path) == 4294968459);

  const auto file = MappedFile::open(path);
  const ZipReader reader(file->bytes(), {}, path.string());
  CHECK(reader.root() == "big");
  REQUIRE(reader.entries().size() == 4);
  const ZipEntry* big = reader.find("big/data/0");
  REQUIRE(big != nullptr);
  CHECK(big->size == kBig);
  CHECK(big->compressed_size == kBig);
  CHECK(big->header_offset == 335);
  CHECK(big->crc32 == 0x374ed946);
  CHECK(reader.data_offset(*big) == 448);
  CHECK(reader.stored_bytes(*big).size() == kBig);
  const ZipEntry* small = reader.find("big/data/1");
  REQUIRE(small != nullptr);
  CHECK(small->header_offset == 4294967868);
  CHECK(reader.data_offset(*small) == 4294967936);
  const auto one_bytes = reader.read(*small, true);
  CHECK(std::memcmp(one_bytes.data(), ones, sizeof ones) == 0);
  const ZipEntry* version = reader.find("big/version");
  REQUIRE(version != nullptr);
  CHECK(version->header_offset == 4294967972);
  CHECK(as_string(reader.read(*version, true)) == "3\n");
}

TEST_CASE("ZipReader reads every torch fixture: root, names, offsets, sizes and CRCs as in the dumps") {
  for (const auto& path : zip_fixtures()) {
    INFO("fixture: " << path.string());
    const Bytes bytes = test::read_file(path);
    const ZipReader reader(bytes, {}, path.string());
    const std::string root = reader.root();
    CHECK(root == expected_root(path));
    const auto dump = read_dump(path);
    REQUIRE(reader.entries().size() == dump.size());
    // torch 1.13 order: data.pkl first, version last, storages in between.
    CHECK(reader.entries().front().name == root + "/data.pkl");
    CHECK(reader.entries().back().name == root + "/version");
    for (const ZipEntry& e : reader.entries()) {
      INFO("record: " << e.name);
      CHECK(e.name.rfind(root + "/", 0) == 0);
      CHECK(reader.find(e.name) == &e);
      REQUIRE(dump.count(e.name) == 1);
      const DumpedRecord& d = dump.at(e.name);
      CHECK(e.header_offset == d.header_offset);
      CHECK(reader.data_offset(e) == d.data_offset);
      CHECK(reader.data_offset(e) % 64 == 0);
      CHECK(e.size == d.size);
      CHECK(e.compressed_size == d.size);
      CHECK(e.crc32 == d.crc);
      CHECK(e.method == 0);
      CHECK(e.flags == (e.size ? 0x0808 : 0x0800));
      const auto stored = reader.stored_bytes(e);
      const auto copy = reader.read(e, true);
      CHECK(Bytes(stored.begin(), stored.end()) == copy);
    }
    CHECK(as_string(reader.read(*reader.find(root + "/version"), true)) == "3\n");
    const auto pickle = reader.stored_bytes(*reader.find(root + "/data.pkl"));
    REQUIRE(pickle.size() > 2);
    CHECK(pickle[0] == std::byte{0x80});  // PROTO 2
    CHECK(pickle[1] == std::byte{0x02});
    CHECK(pickle.back() == std::byte{'.'});  // STOP
  }
}

TEST_CASE("ZipReader views stored payloads in place") {
  const Bytes bytes = scalar0d();
  const ZipReader reader(bytes);
  const ZipEntry* e = reader.find("scalar0d/data/0");
  REQUIRE(e != nullptr);
  const auto view = reader.stored_bytes(*e);
  CHECK(view.data() == bytes.data() + 320);  // zero-copy: a view into the archive
  float value;
  std::memcpy(&value, view.data(), sizeof value);
  CHECK(value == 3.5f);  // torch.tensor(3.5)
}

TEST_CASE("ZipReader::find matches names exactly") {
  const Bytes bytes = scalar0d();
  const ZipReader reader(bytes);
  CHECK(reader.find("scalar0d/data.pkl") != nullptr);
  CHECK(reader.find("scalar0d/DATA.PKL") == nullptr);
  CHECK(reader.find("data.pkl") == nullptr);
  CHECK(reader.find("scalar0d/data.pk") == nullptr);
  CHECK(reader.find("") == nullptr);
}

TEST_CASE("ZipReader::root follows torch: the first record's folder, and an error without one") {
  CHECK(ZipReader(build_zip({{.name = "weird.root/data.pkl", .payload = bytes_of("x")}})).root() ==
        "weird.root");
  CHECK(contains(
      error_message([] { (void)ZipReader(build_zip({{.name = "data.pkl", .payload = {}}})).root(); }),
      "is not inside a folder"));
  CHECK(contains(error_message([] { (void)ZipReader(build_zip({})).root(); }), "has no records"));
}

TEST_CASE("ZipWriter writes pieces exactly as one joined payload") {
  // Many CRC chunks long; the reader checks the CRC the writer computed.
  const Bytes a = pseudo_random(5'000'000, 3), b = pseudo_random(77, 4);
  Bytes joined = a;
  joined.insert(joined.end(), b.begin(), b.end());
  Bytes one, two;
  ZipWriter w1([&](std::span<const std::byte> s) { one.insert(one.end(), s.begin(), s.end()); });
  ZipWriter w2([&](std::span<const std::byte> s) { two.insert(two.end(), s.begin(), s.end()); });
  w1.add("r/x", joined);
  const std::span<const std::byte> pieces[] = {a, {}, b};
  w2.add("r/x", pieces);
  w1.finish();
  w2.finish();
  CHECK(one == two);
  CHECK(ZipReader(one).read(ZipReader(one).entries()[0], true) == joined);
}

TEST_CASE("ZipWriter aligns every payload to 64 bytes, whatever the name length and sizes") {
  Bytes out;
  ZipWriter writer([&](std::span<const std::byte> s) { out.insert(out.end(), s.begin(), s.end()); });
  std::vector<std::pair<std::string, Bytes>> records;
  for (std::size_t n = 1; n <= 80; ++n) {
    std::string name = "root/" + std::string(n, 'a' + n % 26) + std::to_string(n);
    records.emplace_back(name, pseudo_random((n * 37) % 200, static_cast<unsigned>(n)));
    writer.add(records.back().first, records.back().second);
  }
  writer.finish();
  const ZipReader reader(out);
  REQUIRE(reader.entries().size() == records.size());
  for (const auto& record : records) {
    const auto& [name, data] = record;
    INFO(record.first);
    const ZipEntry* e = reader.find(name);
    REQUIRE(e != nullptr);
    CHECK(reader.data_offset(*e) % 64 == 0);
    CHECK(reader.read(*e, true) == data);
  }
}

TEST_CASE("ZipWriter uses a caller-supplied CRC as is") {
  Bytes out;
  ZipWriter writer([&](std::span<const std::byte> s) { out.insert(out.end(), s.begin(), s.end()); });
  writer.add("r/x", as_bytes("hello"), 0xDEADBEEF);
  writer.finish();
  const ZipReader reader(out);
  CHECK(reader.entries()[0].crc32 == 0xDEADBEEF);
  CHECK(contains(error_message([&] { reader.read(reader.entries()[0], true); }), "CRC-32 mismatch"));
}

TEST_CASE("ZipWriter refuses names torch's reader could not tell apart, and use after finish()") {
  ZipWriter writer([](std::span<const std::byte>) {});
  writer.add("r/Data", as_bytes("1"));
  CHECK(contains(error_message([&] { writer.add("r/data", as_bytes("2")); }),
                 "already has a record named 'r/data'"));
  CHECK(contains(error_message([&] { writer.add("", as_bytes("2")); }), "cannot be empty"));
  CHECK(contains(error_message([&] { writer.add(std::string_view("r/a\0b", 5), as_bytes("2")); }), "NUL"));
  writer.finish();
  CHECK(contains(error_message([&] { writer.add("r/z", as_bytes("3")); }), "after finish()"));
  CHECK(contains(error_message([&] { writer.finish(); }), "after finish()"));
}

TEST_CASE("ZipWriter is unusable after its sink failed") {
  bool disk_full = false;
  ZipWriter writer([&](std::span<const std::byte>) {
    if (disk_full) throw Error("disk full");
  });
  const Bytes big(1 << 20);  // large enough to go to the sink at once
  writer.add("r/a", big);
  disk_full = true;
  CHECK(contains(error_message([&] { writer.add("r/b", big); }), "disk full"));
  disk_full = false;
  CHECK(contains(error_message([&] { writer.add("r/c", big); }), "sink failed earlier"));
  CHECK(contains(error_message([&] { writer.finish(); }), "sink failed earlier"));
}

TEST_CASE("ZipWriter streams into an AtomicFile that ZipReader maps back") {
  test::TempDir dir;
  const auto path = dir / "ckpt.pth";
  const Bytes original = scalar0d();
  const ZipReader source(original);
  {
    AtomicFile file(path, /*durable=*/false);
    ZipWriter writer([&](std::span<const std::byte> b) { file.write(b); });
    for (const ZipEntry& e : source.entries()) writer.add(e.name, source.stored_bytes(e));
    writer.finish();
    CHECK(file.position() == original.size());
    file.commit();
  }
  CHECK(test::read_file(path) == original);
  const auto mapped = MappedFile::open(path);
  CHECK(ZipReader(mapped->bytes(), {}, mapped->path()).root() == "scalar0d");
}

TEST_CASE("ZipReader inflates deflated records") {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "tensor " + std::to_string(i % 97) + "; ";
  const Bytes plain = bytes_of(text);
  const Bytes packed = deflate_raw(plain);
  REQUIRE(packed.size() < plain.size() / 4);
  const Bytes archive = build_zip({{.name = "r/data.pkl", .payload = bytes_of("stored")},
                                   {.name = "r/data/0",
                                    .payload = packed,
                                    .method = 8,
                                    .size = static_cast<std::uint32_t>(plain.size()),
                                    .crc = crc32(plain)}});
  const ZipReader reader(archive);
  const ZipEntry* e = reader.find("r/data/0");
  REQUIRE(e != nullptr);
  CHECK(e->method == 8);
  CHECK(reader.read(*e, true) == plain);
  CHECK(contains(error_message([&] { reader.stored_bytes(*e); }), "is compressed (method 8)"));
  // An empty deflated record.
  const Bytes empty = deflate_raw({});
  const Bytes archive2 = build_zip({{.name = "r/e", .payload = empty, .method = 8, .size = 0, .crc = 0}});
  CHECK(ZipReader(archive2).read(ZipReader(archive2).entries()[0], true).empty());
}

TEST_CASE("ZipReader refuses deflate bombs before allocating their declared size") {
  const Bytes zeros(1 << 20);
  const Bytes packed = deflate_raw(zeros);  // about 1 KiB
  auto archive_declaring = [&](std::uint32_t size, const Bytes& payload) {
    return build_zip({{.name = "r/bomb", .payload = payload, .method = 8, .size = size, .crc = 0}});
  };
  SUBCASE("a tiny stream declaring 4 GB: beyond deflate's 1032:1 ratio") {
    const Bytes archive = archive_declaring(0xFFFFFFFE, packed);
    const ZipReader reader(archive);
    CHECK(
        contains(error_message([&] { reader.read(reader.entries()[0], false); }), "maximum ratio of 1032:1"));
  }
  SUBCASE("a declared size above Limits::max_inflated_record_bytes") {
    const Bytes archive = archive_declaring(1 << 20, packed);
    Limits limits;
    limits.max_inflated_record_bytes = 1000;
    const ZipReader reader(archive, limits);
    CHECK(contains(error_message([&] { reader.read(reader.entries()[0], false); }),
                   "max_inflated_record_bytes"));
  }
  SUBCASE("a stream declaring 1000 bytes that inflates to 1 MiB stops at 1000") {
    const Bytes archive = archive_declaring(1000, packed);
    const ZipReader reader(archive);
    CHECK(contains(error_message([&] { reader.read(reader.entries()[0], false); }),
                   "inflates to more than its declared 1000 bytes"));
  }
  SUBCASE("a stream that inflates to fewer bytes than declared") {
    const Bytes noise = pseudo_random(65536, 5);
    const Bytes archive = archive_declaring(100000, deflate_raw(noise));
    const ZipReader reader(archive);
    CHECK(contains(error_message([&] { reader.read(reader.entries()[0], false); }),
                   "inflates to 65536 bytes but declares 100000"));
  }
  SUBCASE("a truncated stream") {
    const Bytes noise = pseudo_random(65536, 6);
    Bytes cut = deflate_raw(noise);
    cut.resize(cut.size() / 2);
    const Bytes archive = archive_declaring(65536, cut);
    const ZipReader reader(archive);
    CHECK(contains(error_message([&] { reader.read(reader.entries()[0], false); }),
                   "before its deflate stream does"));
  }
  SUBCASE("garbage instead of deflate data") {
    const Bytes archive = archive_declaring(100, Bytes(50, std::byte{0xFF}));
    const ZipReader reader(archive);
    CHECK(contains(error_message([&] { reader.read(reader.entries()[0], false); }), "invalid deflate data"));
  }
}

TEST_CASE("ZipReader checks CRC-32 only when asked, and names both values") {
  Bytes bytes = scalar0d();
  bytes[320] ^= std::byte{0x01};  // first payload byte of scalar0d/data/0
  const ZipReader reader(bytes, {}, "flipped.pt");
  const ZipEntry& e = *reader.find("scalar0d/data/0");
  const Error err = error_of([&] { reader.read(e, true); });
  CHECK(contains(err.what(), "CRC-32 mismatch in record 'scalar0d/data/0'"));
  CHECK(contains(err.what(), "says 0x3265f52b"));
  CHECK(contains(err.what(), "data has 0x"));
  CHECK(err.context().file == "flipped.pt");
  CHECK(err.context().record == "scalar0d/data/0");
  CHECK(reader.read(e, false)[0] == (std::byte{0x00} ^ std::byte{0x01}));
  CHECK_THROWS_AS(reader.check_crc(e, reader.stored_bytes(e)), Error);
  CHECK_NOTHROW(reader.check_crc(*reader.find("scalar0d/version"), as_bytes("3\n")));
}

TEST_CASE("ZipReader refuses every truncation and every single-byte deletion of a torch file") {
  const Bytes bytes = scalar0d();
  for (std::size_t keep = 0; keep < bytes.size(); ++keep) {
    INFO("first " << keep << " bytes");
    const Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep));
    CHECK(contains(refusal(cut), "zip: "));
  }
  for (std::size_t drop = 1; drop < bytes.size(); ++drop) {
    INFO("without the first " << drop << " bytes");
    const Bytes cut(bytes.begin() + static_cast<std::ptrdiff_t>(drop), bytes.end());
    CHECK(contains(refusal(cut), "zip: "));
  }
  for (std::size_t hole = 0; hole < bytes.size(); ++hole) {
    INFO("without byte " << hole);
    Bytes cut = bytes;
    cut.erase(cut.begin() + static_cast<std::ptrdiff_t>(hole));
    CHECK(contains(refusal(cut), "zip: "));
  }
}

TEST_CASE("ZipReader refuses what is not a zip, naming the file") {
  CHECK(contains(refusal(Bytes(10)), "too short for a zip end of central directory record"));
  const auto err = error_of([] { ZipReader r(Bytes(5000), {}, "zeros.bin"); });
  CHECK(contains(err.what(), "no end of central directory record in the last 5000 bytes"));
  CHECK(err.context().file == "zeros.bin");
  CHECK(contains(refusal(test::read_file(test::torch113_dir() / "legacy_tensor.pt")),
                 "no end of central directory"));
}

TEST_CASE("ZipReader refuses corrupted end records") {
  const Bytes good = scalar0d();
  REQUIRE_NOTHROW(ZipReader{good});
  Bytes b = good;
  SUBCASE("classic record disagreeing with the zip64 record") {
    set_le(b, kEocd + 10, 5, 2);
    CHECK(contains(refusal(b), "disagrees with the zip64 end of central directory record"));
  }
  SUBCASE("classic central directory offset disagreeing with the zip64 record") {
    set_le(b, kEocd + 16, 400, 4);
    CHECK(contains(refusal(b), "disagrees"));
  }
  SUBCASE("no zip64 locator: bytes between the central directory and the end record") {
    set_le(b, kLoc, 0, 4);
    CHECK(contains(
        refusal(b),
        "the central directory ends at byte offset 652 but the end records start at byte offset 728"));
  }
  SUBCASE("saturated classic fields without a zip64 locator") {
    set_le(b, kLoc, 0, 4);
    set_le(b, kEocd + 16, 0xFFFFFFFF, 4);
    CHECK(contains(refusal(b), "saturated (0xFFFFFFFF) fields but no zip64 locator"));
  }
  SUBCASE("zip64 locator pointing past the end") {
    set_le(b, kLoc + 8, 1'000'000'000'000, 8);
    CHECK(contains(refusal(b),
                   "the zip64 locator at byte offset 708 points to a zip64 end of central directory record "
                   "at byte offset 1000000000000"));
  }
  SUBCASE("zip64 locator pointing at the wrong bytes") {
    set_le(b, kLoc + 8, 0, 8);
    CHECK(contains(refusal(b), "no zip64 end of central directory signature at byte offset 0"));
  }
  SUBCASE("zip64 record with a wrong size field") {
    set_le(b, kZ64 + 4, 45, 8);
    CHECK(contains(refusal(b), "declares a size of 45 bytes"));
  }
  SUBCASE("zip64 record placing the central directory past the end of the file") {
    set_le(b, kZ64 + 48, 1'000'000'000'000'000, 8);
    set_le(b, kEocd + 16, 0xFFFFFFFF, 4);
    CHECK(contains(refusal(b), "runs past the end records at byte offset 652 (file size 750)"));
  }
  SUBCASE("zip64 record with a huge central directory size") {
    set_le(b, kZ64 + 40, 0xFFFF'FFFF'FFFF'FFF0, 8);
    set_le(b, kEocd + 12, 0xFFFFFFFF, 4);
    CHECK(contains(refusal(b),
                   "zip: the central directory (18446744073709551600 bytes at byte offset 466) runs past"));
  }
  SUBCASE("more records than Limits::max_zip_entries") {
    set_le(b, kZ64 + 24, 1ull << 40, 8);
    set_le(b, kZ64 + 32, 1ull << 40, 8);
    set_le(b, kEocd + 8, 0xFFFF, 2);
    set_le(b, kEocd + 10, 0xFFFF, 2);
    CHECK(
        contains(refusal(b),
                 "declares 1099511627776 records, more than the limit of 1000000 (Limits::max_zip_entries)"));
    Limits few;
    few.max_zip_entries = 2;
    CHECK(contains(refusal(good, few), "declares 3 records, more than the limit of 2"));
  }
  SUBCASE("more records than fit in the central directory") {
    set_le(b, kZ64 + 24, 100, 8);
    set_le(b, kZ64 + 32, 100, 8);
    set_le(b, kEocd + 8, 0xFFFF, 2);
    set_le(b, kEocd + 10, 0xFFFF, 2);
    CHECK(contains(refusal(b), "declare 100 records, which cannot fit in a central directory of 186 bytes"));
  }
  SUBCASE("more records than the central directory holds") {
    set_le(b, kZ64 + 24, 4, 8);
    set_le(b, kZ64 + 32, 4, 8);
    set_le(b, kEocd + 8, 4, 2);
    set_le(b, kEocd + 10, 4, 2);
    CHECK(contains(refusal(b),
                   "zip: central directory entry 3 at byte offset 652 runs past the end of the central "
                   "directory (byte offset 652, file size 750)"));
  }
  SUBCASE("fewer records than the central directory holds") {
    set_le(b, kZ64 + 24, 2, 8);
    set_le(b, kZ64 + 32, 2, 8);
    set_le(b, kEocd + 8, 2, 2);
    set_le(b, kEocd + 10, 2, 2);
    CHECK(
        contains(refusal(b), "entries end at byte offset 590 but it is declared to end at byte offset 652"));
  }
  SUBCASE("a central directory larger than Limits::max_central_directory_bytes") {
    Limits small;
    small.max_central_directory_bytes = 100;
    CHECK(contains(refusal(good, small), "the central directory is 186 bytes, more than the limit of 100"));
  }
}

TEST_CASE("ZipReader refuses corrupted central directory entries, naming entry and offset") {
  Bytes b = scalar0d();
  SUBCASE("bad signature") {
    set_le(b, kCd0, 0x12345678, 4);
    CHECK(contains(refusal(b), "central directory entry 0 at byte offset 466 has no signature"));
  }
  SUBCASE("a name running past the central directory") {
    set_le(b, kCd2 + 28, 1000, 2);
    CHECK(contains(refusal(b),
                   "central directory entry 2 at byte offset 590 declares a name, extra field and comment "
                   "(1000 bytes) running past the end of the central directory (byte offset 652)"));
  }
  SUBCASE("a local header offset past the end") {
    set_le(b, kCd1 + 42, 1'000'000'000, 4);
    const Error err = error_of([&] { ZipReader r(b, {}, "bad.pt"); });
    CHECK(contains(err.what(),
                   "local header of record 'scalar0d/data/0' at byte offset 1000000000 runs past the start "
                   "of the central directory (byte offset 466)"));
    CHECK(err.context().file == "bad.pt");
    CHECK(err.context().record == "scalar0d/data/0");
    CHECK(err.context().offset == 1'000'000'000u);
  }
  SUBCASE("a local header offset pointing at another record") {
    set_le(b, kCd1 + 42, 0, 4);
    CHECK(contains(refusal(b),
                   "local header at byte offset 0 names 'scalar0d/data.pkl' but the central directory names "
                   "'scalar0d/data/0'"));
  }
  SUBCASE("huge declared sizes") {
    set_le(b, kCd0 + 20, 0xFFFFFFFE, 4);
    set_le(b, kCd0 + 24, 0xFFFFFFFE, 4);
    CHECK(contains(refusal(b),
                   "payload of record 'scalar0d/data.pkl' (4294967294 bytes at byte offset 64) runs past "
                   "the start of the central directory"));
  }
  SUBCASE("a size overlapping the next record") {
    set_le(b, kCd0 + 20, 200, 4);
    set_le(b, kCd0 + 24, 200, 4);
    CHECK(contains(refusal(b),
                   "records 'scalar0d/data.pkl' and 'scalar0d/data/0' overlap: the first ends at byte "
                   "offset 264, the second starts at byte offset 222"));
  }
  SUBCASE("stored with different compressed and uncompressed sizes") {
    set_le(b, kCd0 + 24, 143, 4);
    CHECK(contains(refusal(b), "is stored but declares 142 compressed and 143 uncompressed bytes"));
  }
  SUBCASE("saturated sizes without a zip64 extra field") {
    set_le(b, kCd0 + 20, 0xFFFFFFFF, 4);
    set_le(b, kCd0 + 24, 0xFFFFFFFF, 4);
    CHECK(contains(refusal(b), "has a saturated (0xFFFFFFFF) size or offset but no zip64 extra field"));
  }
  SUBCASE("an unsupported compression method") {
    set_le(b, kCd0 + 10, 99, 2);
    CHECK(contains(refusal(b), "central directory entry 0 at byte offset 466 uses compression method 99"));
  }
  SUBCASE("an encrypted record") {
    set_le(b, kCd1 + 8, 0x0809, 2);
    CHECK(contains(refusal(b), "central directory entry 1 at byte offset 529 is encrypted"));
  }
  SUBCASE("a NUL byte in a name") {
    b[kCd2 + 46 + 3] = std::byte{0};
    CHECK(contains(refusal(b), "central directory entry 2 at byte offset 590 has a NUL byte in its name"));
  }
  SUBCASE("a bad local header signature") {
    set_le(b, 222, 0, 4);
    CHECK(
        contains(refusal(b),
                 "no local header signature at byte offset 222 where record 'scalar0d/data/0' should start"));
  }
  SUBCASE("a local extra field running into the central directory") {
    set_le(b, 340 + 28, 60000, 2);
    CHECK(contains(refusal(b),
                   "local header of record 'scalar0d/version' at byte offset 340 declares a name and extra "
                   "field running past the start of the central directory"));
  }
  SUBCASE("a local header with another method than the central directory") {
    set_le(b, 222 + 8, 8, 2);
    CHECK(
        contains(refusal(b),
                 "local header of record 'scalar0d/data/0' says method 8 but the central directory says 0"));
  }
}

TEST_CASE("ZipReader bounds-checks entries made or changed by the caller") {
  const Bytes bytes = scalar0d();
  const ZipReader reader(bytes);
  ZipEntry e = *reader.find("scalar0d/data/0");
  SUBCASE("a size that disagrees with the compressed size") {
    e.size = 1'000'000;
    CHECK(contains(error_message([&] { reader.stored_bytes(e); }),
                   "different compressed and uncompressed sizes"));
    CHECK(contains(error_message([&] { reader.read(e, false); }),
                   "different compressed and uncompressed sizes"));
  }
  SUBCASE("sizes running into the central directory") {
    e.size = e.compressed_size = 1'000'000;
    CHECK(contains(error_message([&] { reader.stored_bytes(e); }),
                   "runs past the start of the central directory"));
  }
  SUBCASE("an offset past the end of the file") {
    e.header_offset = ~std::uint64_t{0} - 10;
    CHECK(contains(error_message([&] { reader.data_offset(e); }),
                   "runs past the start of the central directory"));
  }
  SUBCASE("an unsupported method") {
    e.method = 5;
    CHECK(contains(error_message([&] { reader.read(e, false); }), "is compressed (method 5)"));
  }
}

TEST_CASE("ZipReader refuses duplicate names, overlapping records and malformed extra fields") {
  SUBCASE("two records with one name") {
    const Bytes b =
        build_zip({{.name = "r/x", .payload = bytes_of("1")}, {.name = "r/x", .payload = bytes_of("2")}});
    CHECK(contains(refusal(b), "the archive has two records named 'r/x'"));
  }
  SUBCASE("two records whose names differ only by letter case (torch's lookup ignores case)") {
    const Bytes b = build_zip(
        {{.name = "r/data.pkl", .payload = bytes_of("1")}, {.name = "r/Data.pkl", .payload = bytes_of("2")}});
    CHECK(contains(refusal(b), "records 'r/data.pkl' and 'r/Data.pkl' differ only by letter case"));
  }
  SUBCASE("a record whose declared size covers the next record") {
    const Bytes b = build_zip({{.name = "r/a", .payload = bytes_of("hello"), .size = 100, .csize = 100},
                               {.name = "r/b", .payload = Bytes(200)}});
    CHECK(contains(refusal(b), "records 'r/a' and 'r/b' overlap"));
  }
  SUBCASE("an extra field longer than the extra data") {
    const Bytes b =
        build_zip({{.name = "r/a", .payload = bytes_of("x"), .cd_extra = from_hex("0100100001000000")}});
    CHECK(contains(refusal(b), "has an extra field (id 1, 16 bytes) running past the end of its extra data"));
  }
  SUBCASE("a truncated extra field header") {
    const Bytes b = build_zip({{.name = "r/a", .payload = bytes_of("x"), .cd_extra = from_hex("0100")}});
    CHECK(contains(refusal(b), "truncated extra field header"));
  }
  SUBCASE("a zip64 extra field without the compressed size it must hold") {
    const Bytes b = build_zip({{.name = "r/a",
                                .payload = bytes_of("x"),
                                .size = 0xFFFFFFFF,
                                .csize = 0xFFFFFFFF,
                                .cd_extra = from_hex("010008000100000000000000")}});
    CHECK(contains(refusal(b), "zip64 extra field too short to hold its compressed size"));
  }
  SUBCASE("a zip64 extra field whose sizes are read in the spec's order") {
    const Bytes b = build_zip({{.name = "r/a",
                                .payload = bytes_of("x"),
                                .size = 0xFFFFFFFF,
                                .csize = 0xFFFFFFFF,
                                .cd_extra = from_hex("01001000"
                                                     "0100000000000000"
                                                     "0100000000000000")}});
    const ZipReader reader(b);
    CHECK(reader.entries()[0].size == 1);
    CHECK(reader.entries()[0].compressed_size == 1);
    CHECK(as_string(reader.read(reader.entries()[0], true)) == "x");
  }
}
