// sgckpt/engine/data/idx.hpp: the IDX files of MNIST and Fashion-MNIST, plain or gzip'ed.
//
//   IdxArray a = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
//   a.dims == {60000, 28, 28}; a.data.size() == 60000 * 28 * 28
//
// Format (yann.lecun.com/exdb/mnist): two zero bytes, a type code (0x08 = unsigned byte, the
// only one these datasets use), the number of dimensions, each dimension as a big-endian
// uint32, then the elements in row-major order. zlib's gzread reads both gzip and plain files.
// A file that lies (wrong magic, zero or huge dimensions, short or overlong data) is refused
// with the file and the uncompressed byte offset; reading stops after `max_bytes` of data, so
// a hostile header cannot make us allocate without bound.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/io/file.hpp"

namespace sgckpt::engine::data {

struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;  // row-major
};

inline IdxArray read_idx(const std::filesystem::path& path, std::uint64_t max_bytes = std::uint64_t{1} << 30,
                         std::int64_t limit_first_dim = -1) {
  const std::string file = path.string();
  auto fail = [&](ErrorKind kind, const std::string& what, std::uint64_t offset) {
    ErrorContext c;
    c.file = file;
    c.offset = offset;
    return Error(kind, "IDX file \"" + file + "\": " + what, c);
  };
  // A regular file only: gzopen() of a FIFO under a dataset's name would block forever.
  struct stat st;
  const int fd = sgckpt::open_regular_file(path, st);
  std::unique_ptr<gzFile_s, decltype(&gzclose)> f(gzdopen(fd, "rb"), &gzclose);
  if (!f) {
    ::close(fd);
    throw fail(ErrorKind::Io, "cannot open it", 0);
  }
  std::uint64_t offset = 0;
  auto read = [&](void* dst, std::size_t n, const char* what) {
    std::size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(f.get(), static_cast<char*>(dst) + done, chunk);
      if (got < 0) {
        int errnum = 0;
        const char* msg = gzerror(f.get(), &errnum);
        throw fail(ErrorKind::Io, std::string("read error in ") + what + ": " + (msg ? msg : "zlib error"),
                   offset + done);
      }
      if (got == 0)
        throw fail(
            ErrorKind::Truncated,
            std::string("truncated ") + what + " (" + std::to_string(n - done) + " more bytes expected)",
            offset + done);
      done += static_cast<std::size_t>(got);
    }
    offset += n;
  };

  std::uint8_t magic[4];
  read(magic, 4, "header");
  if (magic[0] != 0 || magic[1] != 0)
    throw fail(ErrorKind::Corrupt, "not an IDX file (the first two bytes are not zero)", 0);
  if (magic[2] != 0x08)
    throw fail(ErrorKind::Refused,
               "element type 0x" + std::to_string(magic[2]) + " is not supported (only 0x08, unsigned byte)",
               2);
  const int ndim = magic[3];
  if (ndim < 1 || ndim > 4)
    throw fail(ErrorKind::Refused, std::to_string(ndim) + " dimensions (1 to 4 are supported)", 3);
  IdxArray a;
  std::uint64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    const std::uint64_t at = offset;
    std::uint8_t b[4];
    read(b, 4, "dimension");
    const std::uint64_t n =
        (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) | (std::uint64_t{b[2]} << 8) | b[3];
    if (n == 0) throw fail(ErrorKind::Corrupt, "dimension " + std::to_string(d) + " is zero", at);
    total *= n;  // at most 4 factors below 2^32 each: checked against max_bytes at every step
    if (total > max_bytes)
      throw fail(ErrorKind::Limit, "holds more than the " + std::to_string(max_bytes) + "-byte limit", at);
    a.dims.push_back(static_cast<std::int64_t>(n));
  }
  // Only the first `limit_first_dim` items when asked (a subset for a quick run).
  std::uint64_t want = total;
  if (limit_first_dim >= 0 && limit_first_dim < a.dims[0]) {
    want = total / static_cast<std::uint64_t>(a.dims[0]) * static_cast<std::uint64_t>(limit_first_dim);
    a.dims[0] = limit_first_dim;
  }
  a.data.resize(static_cast<std::size_t>(want));
  read(a.data.data(), a.data.size(), "data");
  if (want == total) {
    char extra;
    if (gzread(f.get(), &extra, 1) != 0)
      throw fail(ErrorKind::Corrupt, "trailing bytes after the data", offset);
  }
  return a;
}

}  // namespace sgckpt::engine::data
