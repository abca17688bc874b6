// sgckpt/ckpt/remote/store.hpp: where remote copies of a run go (docs/remote.md).
//
// A Store holds objects under keys ("experiment/RUN_x/ckpt_latest.pth"): put a finished local
// file, get one into a local path atomically, list a prefix, delete. Two implementations:
// LocalDirStore (another disk, a network mount; here) and S3Store (S3's API on libcurl,
// s3.hpp). The lifecycle only sees this interface (sync.hpp uploads, pull.hpp downloads), so
// lifecycle.hpp needs no network library.
//
// Promises every Store keeps:
//   - an object appears only whole under its key (a put that fails leaves the previous
//     object, or none);
//   - get() writes a temporary beside the destination and renames it over only once every
//     byte arrived and the checksum recorded at upload agrees (a refused download leaves the
//     local file as it was);
//   - errors are StoreError: an sgckpt::Error that also says whether trying again may help
//     (transient) and never carries a credential.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/detail/fs/file.hpp"

namespace sgckpt::remote {

// A store error. transient(): the network or the server failed in a way that may pass (a
// refused or cut connection, a timeout, HTTP 5xx / 429); false for what repeating cannot fix
// (wrong credentials, no such bucket, a checksum that does not agree).
class StoreError : public Error {
 public:
  StoreError(ErrorKind kind, std::string message, bool transient, long http_status = 0)
      : Error(kind, std::move(message)), transient_(transient), http_status_(http_status) {}
  bool transient() const noexcept { return transient_; }
  long http_status() const noexcept { return http_status_; }

 private:
  bool transient_;
  long http_status_;
};

// A local file opened for upload. Its bytes are those of the moment it was opened: sgckpt
// replaces files by rename, never in place, so the open descriptor keeps reading the version
// it opened even after a newer save took the name. Files that grow by appending (a run log)
// upload the prefix of size() bytes they had then.
class SourceFile {
 public:
  static SourceFile open(const std::filesystem::path& p) {
    struct stat st {};
    const int fd = detail::fs::open_regular_file(p, st);
    return SourceFile(std::make_shared<Fd>(fd), static_cast<std::uint64_t>(st.st_size), p);
  }

  std::uint64_t size() const noexcept { return size_; }
  const std::filesystem::path& path() const noexcept { return path_; }

  // Reads out.size() bytes at `offset`; the file ending early (it was truncated in place by
  // someone else) is an Error naming the file and the offset.
  void read_at(std::uint64_t offset, std::span<std::byte> out) const {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n =
          ::pread(fd_->fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ErrorContext c;
        c.file = path_.string();
        c.offset = offset + done;
        throw Error(n < 0 ? ErrorKind::Io : ErrorKind::Truncated,
                    n < 0 ? "cannot read the file to upload: " + detail::fs::errno_text(errno)
                          : "the file to upload became shorter while it was read",
                    c);
      }
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { ::close(fd); }
  };
  SourceFile(std::shared_ptr<Fd> fd, std::uint64_t size, std::filesystem::path p)
      : fd_(std::move(fd)), size_(size), path_(std::move(p)) {}

  std::shared_ptr<Fd> fd_;
  std::uint64_t size_ = 0;
  std::filesystem::path path_;
};

struct ObjectInfo {
  std::string key;
  std::uint64_t size = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // Where the store is ("s3://bucket/prefix", "/mnt/backup"): for messages, never a secret.
  virtual std::string url() const = 0;
  // Uploads the file's bytes to `key`; the object appears whole or not at all.
  virtual void put(const SourceFile& source, const std::string& key, std::stop_token stop = {}) = 0;
  // Downloads `key` into `destination` (atomically, verified; see the promises above).
  virtual void get(const std::string& key, const std::filesystem::path& destination,
                   std::stop_token stop = {}) = 0;
  // The objects whose key starts with `prefix`, in key order.
  virtual std::vector<ObjectInfo> list(const std::string& prefix, std::stop_token stop = {}) = 0;
  // Deletes `key` (no error when it does not exist).
  virtual void remove(const std::string& key) = 0;
};

// A key: '/'-separated plain names, none empty, "." or "..", no control characters, at
// most 1024 bytes (S3's limit). Keys name local files on download: this is what keeps a
// hostile listing from writing outside the destination.
inline void check_key(std::string_view key) {
  auto bad = [&](const std::string& why) {
    return StoreError(ErrorKind::Refused, "invalid object key \"" + std::string(key) + "\": " + why, false);
  };
  if (key.empty() || key.size() > 1024) throw bad("empty or longer than 1024 bytes");
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = std::min(key.find('/', start), key.size());
    const std::string_view part = key.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") throw bad("empty, '.' or '..' path component");
    if (end == key.size()) break;
    start = end + 1;
  }
  for (const char ch : key)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f || ch == '\\')
      throw bad("control character or '\\'");
}

// Joins a prefix ("" or "a/b") and a key part.
inline std::string join_key(std::string_view prefix, std::string_view rest) {
  std::string k(prefix);
  while (!k.empty() && k.back() == '/') k.pop_back();
  if (!k.empty() && !rest.empty()) k += '/';
  k += rest;
  return k;
}

// A directory as a store: another disk or a network mount. Objects are files under the
// root; put() writes a temporary beside the final name and renames it (detail::fs::AtomicFile).
class LocalDirStore final : public Store {
 public:
  explicit LocalDirStore(std::filesystem::path root, bool durable = true)
      : root_(std::move(root)), durable_(durable) {}

  std::string url() const override { return root_.string(); }

  void put(const SourceFile& source, const std::string& key, std::stop_token stop = {}) override {
    check_key(key);
    const std::filesystem::path dest = root_ / key;
    std::error_code ec;
    std::filesystem::create_directories(dest.parent_path(), ec);
    if (ec)
      throw StoreError(ErrorKind::Io,
                       "cannot create \"" + dest.parent_path().string() + "\": " + ec.message(), true);
    copy(source, dest, stop);
  }

  void get(const std::string& key, const std::filesystem::path& destination,
           std::stop_token stop = {}) override {
    check_key(key);
    const std::filesystem::path src = root_ / key;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(src, ec))
      throw StoreError(ErrorKind::Usage, "no object \"" + key + "\" in " + url(), false, 404);
    copy(SourceFile::open(src), destination, stop);
  }

  std::vector<ObjectInfo> list(const std::string& prefix, std::stop_token = {}) override {
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!std::filesystem::is_directory(root_, ec)) return out;
    for (auto it = std::filesystem::recursive_directory_iterator(root_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
      const std::string key = it->path().lexically_relative(root_).generic_string();
      if (key.rfind(prefix, 0) != 0 || key.find(".tmp.") != std::string::npos) continue;
      out.push_back({key, static_cast<std::uint64_t>(it->file_size(ec))});
    }
    if (ec) throw StoreError(ErrorKind::Io, "cannot list " + url() + ": " + ec.message(), true);
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  void remove(const std::string& key) override {
    check_key(key);
    std::error_code ec;
    std::filesystem::remove(root_ / key, ec);
    if (ec)
      throw StoreError(ErrorKind::Io, "cannot delete \"" + (root_ / key).string() + "\": " + ec.message(),
                       true);
  }

 private:
  void copy(const SourceFile& source, const std::filesystem::path& dest, std::stop_token stop) const {
    detail::fs::AtomicFile out(dest, durable_);
    std::vector<std::byte> buf(std::size_t{4} << 20);
    for (std::uint64_t off = 0; off < source.size();) {
      if (stop.stop_requested())
        throw StoreError(ErrorKind::Usage, "copy to \"" + dest.string() + "\" cancelled", false);
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), source.size() - off));
      source.read_at(off, std::span(buf.data(), n));
      out.write(std::span<const std::byte>(buf.data(), n));
      off += n;
    }
    out.commit();
  }

  std::filesystem::path root_;
  bool durable_;
};

}  // namespace sgckpt::remote
