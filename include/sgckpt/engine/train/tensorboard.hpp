// sgckpt/engine/train/tensorboard.hpp: TensorBoard event files, written without protobuf.
//
// An event file is a sequence of TFRecords: uint64 length, uint32 masked CRC-32C of the length
// bytes, the serialized Event, uint32 masked CRC-32C of it (all little-endian). An Event is a
// protobuf message; the writer needs four fields of it and three of Summary, encoded here by
// hand (docs/tensorboard.md has the field table). The first record names the file version
// ("brain.Event:2"), as TensorBoard's own writer does; scalars use Summary.Value.simple_value,
// what torch's SummaryWriter.add_scalar writes and TensorBoard's scalar plugin reads.
//
// Each record goes to the file in one write(), and flush() hands everything to the kernel, so a
// killed process leaves at most one torn record at the end. A new run on the same directory
// (a resume) first cuts any torn tail off the event files already there (repair_event_files),
// then, like SuperGradients' SummaryWriter, starts a new file beside them.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::engine {

namespace tensorboard {

// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), bytewise: event records are small.
inline std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// TFRecord's masking (rotate right by 15, add a constant), so that a CRC of CRCs is not trivial.
inline std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// ---- protobuf encoding of the few fields used ------------------------------------------------

inline void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline void put_fixed(std::string& out, std::uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}
inline void put_bytes_field(std::string& out, unsigned field, std::string_view bytes) {
  put_varint(out, (field << 3) | 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}
inline void put_double_field(std::string& out, unsigned field, double v) {
  std::uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_varint(out, (field << 3) | 1);
  put_fixed(out, bits, 8);
}

// Event{wall_time, step, file_version}.
inline std::string file_version_event(double wall_time) {
  std::string e;
  put_double_field(e, 1, wall_time);
  put_bytes_field(e, 3, "brain.Event:2");
  return e;
}

// Event{wall_time, step, summary{value{tag, simple_value}}}.
inline std::string scalar_event(std::string_view tag, float value, std::int64_t step, double wall_time) {
  std::string v;
  put_bytes_field(v, 1, tag);
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  put_varint(v, (2 << 3) | 5);
  put_fixed(v, bits, 4);
  std::string summary;
  put_bytes_field(summary, 1, v);
  std::string e;
  put_double_field(e, 1, wall_time);
  put_varint(e, 2 << 3);
  put_varint(e, static_cast<std::uint64_t>(step));
  put_bytes_field(e, 5, summary);
  return e;
}

// The TFRecord framing of one serialized message.
inline std::string record(std::string_view data) {
  std::string r;
  put_fixed(r, data.size(), 8);
  put_fixed(r, masked_crc32c(r.data(), 8), 4);
  r.append(data);
  put_fixed(r, masked_crc32c(data.data(), data.size()), 4);
  return r;
}

// The length of the prefix of `bytes` made of whole, checksummed records.
inline std::size_t valid_prefix(std::string_view bytes) {
  std::size_t at = 0;
  while (bytes.size() - at >= 12) {
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    std::uint32_t len_crc = 0, data_crc = 0;
    for (int i = 0; i < 4; ++i)
      len_crc |= std::uint32_t{static_cast<unsigned char>(bytes[at + 8 + i])} << (8 * i);
    if (len_crc != masked_crc32c(bytes.data() + at, 8) || n > bytes.size() - at - 16) break;
    for (int i = 0; i < 4; ++i)
      data_crc |= std::uint32_t{static_cast<unsigned char>(bytes[at + 12 + n + i])} << (8 * i);
    if (data_crc != masked_crc32c(bytes.data() + at + 12, n)) break;
    at += 16 + n;
  }
  return at;
}

inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace tensorboard

// Cuts what follows the last whole record off every event file in `dir` (a process killed
// mid-record leaves a torn tail, which TensorBoard reports as data loss). Returns the number
// of bytes removed. A file that is not a regular file is left alone.
inline std::uint64_t repair_event_files(const std::filesystem::path& dir) {
  std::uint64_t removed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("events.out.tfevents.", 0) != 0 || !entry.is_regular_file(ec)) continue;
    const int fd = ::open(entry.path().c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
      throw Error(ErrorKind::Io, "cannot open event file: " + std::string(std::strerror(errno)),
                  {entry.path().string(), {}, {}, {}});
    struct stat st {};
    std::string bytes;
    if (::fstat(fd, &st) == 0) bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    bytes.resize(got);
    const std::size_t keep = tensorboard::valid_prefix(bytes);
    if (keep < bytes.size()) {
      if (::ftruncate(fd, static_cast<off_t>(keep)) != 0) {
        ::close(fd);
        throw Error(ErrorKind::Io, "cannot cut the torn tail of an event file",
                    {entry.path().string(), {}, keep, {}});
      }
      removed += bytes.size() - keep;
    }
    ::close(fd);
  }
  return removed;
}

// One event file, open for appending records.
class EventWriter {
 public:
  // Creates events.out.tfevents.<unix time>.<host>.<pid>.<n> in `dir` (TensorBoard's naming)
  // and writes the file-version record.
  explicit EventWriter(const std::filesystem::path& dir) {
    static std::atomic<unsigned> counter{0};
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    const double now = tensorboard::unix_seconds();
    path_ = dir / ("events.out.tfevents." + std::to_string(static_cast<std::int64_t>(now)) + "." + host +
                   "." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)));
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw Error(ErrorKind::Io, "cannot create event file: " + std::string(std::strerror(errno)),
                  {path_.string(), {}, {}, {}});
    write(tensorboard::file_version_event(now));
  }
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  ~EventWriter() {
    if (fd_ >= 0) ::close(fd_);
  }

  void add_scalar(std::string_view tag, double value, std::int64_t step,
                  double wall_time = tensorboard::unix_seconds()) {
    write(tensorboard::scalar_event(tag, static_cast<float>(value), step, wall_time));
  }
  // Records reach the kernel as they are written; this also makes them durable (an epoch's
  // scalars survive a power loss once the epoch's checkpoint does).
  void flush() {
    if (::fdatasync(fd_) != 0)
      throw Error(ErrorKind::Io, "cannot sync event file: " + std::string(std::strerror(errno)),
                  {path_.string(), {}, {}, {}});
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void write(const std::string& event) {
    const std::string r = tensorboard::record(event);
    std::size_t done = 0;
    while (done < r.size()) {
      const ssize_t n = ::write(fd_, r.data() + done, r.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw Error(ErrorKind::Io, "cannot write event file: " + std::string(std::strerror(errno)),
                    {path_.string(), {}, {}, {}});
      done += static_cast<std::size_t>(n);
    }
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace sgckpt::engine
