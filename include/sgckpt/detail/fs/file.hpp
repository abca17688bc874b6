// sgckpt/detail/fs/file.hpp: the file system side of checkpoints: read-only mappings for loading,
// atomic and durable replacement for saving (POSIX).
//
// Saving never writes into the final file. It writes a temporary sibling and renames it over
// the final name: a crash leaves either the old checkpoint or the new one, never a torn mix
// (torch.save itself is not atomic; Lightning issue #688 shows the resulting "unexpected
// EOF" on resume). Truncating the final file instead would also corrupt any process that
// has it mapped (safetensors issue #762): a rename leaves the old inode alive for them.
// With `durable`, the file is fsync'ed before the rename and its directory after it, so a
// checkpoint reported as saved survives a power loss (docs/security.md).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <utility>

#include "sgckpt/core/error.hpp"

namespace sgckpt::detail::fs {

inline std::string errno_text(int err) {
  return std::strerror(err);
}

inline Error file_error(const std::string& message, const std::filesystem::path& p, int err) {
  ErrorContext c;
  c.file = p.string();
  return Error(ErrorKind::Io, message + ": " + errno_text(err), c);
}

// The names of the temporaries this process is writing right now (a process-wide counter
// makes each name unique, whatever directory it is in). remove_stale_temporaries() uses it to
// tell our live files from leftovers of an earlier process that had the same pid (pids
// repeat across container restarts).
struct LiveTemporaries {
  std::mutex mutex;
  std::set<std::string> paths;

  static LiveTemporaries& instance() {
    static LiveTemporaries live;
    return live;
  }
  void add(const std::string& p) {
    std::lock_guard<std::mutex> lock(mutex);
    paths.insert(p);
  }
  void remove(const std::string& p) {
    std::lock_guard<std::mutex> lock(mutex);
    paths.erase(p);
  }
  bool contains(const std::string& p) {
    std::lock_guard<std::mutex> lock(mutex);
    return paths.count(p) != 0;
  }
};

inline std::string temp_prefix(const std::filesystem::path& final_path) {
  return final_path.filename().string() + ".tmp.";
}

// What a file that is not a regular file is, for messages.
inline const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "an unknown kind of file";
}

inline Error not_regular_file_error(const std::filesystem::path& p, mode_t mode) {
  ErrorContext c;
  c.file = p.string();
  return Error(ErrorKind::Refused,
               std::string("not a regular file (") + file_type_name(mode) + "), so it cannot be read", c);
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens `p` read-only if it is a regular file (a symbolic link to one is followed); returns
// the descriptor, with its fstat in `st`. A FIFO under a checkpoint's name would block open()
// until some writer appears, that is forever, and a device or socket reads without end. So
// the type is checked by name first (a device is then never opened: opening some has side
// effects), the open itself uses O_NONBLOCK (a FIFO swapped in after that check does not
// block it), and the type is checked again on the descriptor, which is what will be read.
// O_NONBLOCK is then cleared: it means nothing for a regular file, but is not ours to leave.
inline int open_regular_file(const std::filesystem::path& p, struct stat& st) {
  // A name that cannot be stat'ed is left to open(), whose errno is the better message.
  if (::stat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) throw not_regular_file_error(p, st.st_mode);
  int fd;
  do fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;  // before the message is built (see AtomicFile::commit)
    throw file_error("cannot open file for reading", p, err);
  }
  FdCloser guard{fd};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    throw file_error("cannot stat file", p, err);
  }
  if (!S_ISREG(st.st_mode)) throw not_regular_file_error(p, st.st_mode);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno;
    throw file_error("cannot clear O_NONBLOCK on the file", p, err);
  }
  guard.fd = -1;
  return fd;
}

// The whole of a small regular file (a recipe, a text record), or an Error naming the file
// when it is not a regular file (a FIFO, a device) or holds more than `max_bytes`: the size
// is checked before anything is read, and again while reading (the file may grow). `what` names the content
// in the size message ("a recipe").
inline std::string read_regular_file(const std::filesystem::path& p, std::uint64_t max_bytes,
                                     const std::string& what = "this file") {
  struct stat st;
  const FdCloser fd{open_regular_file(p, st)};
  auto too_large = [&](std::uint64_t size) {
    ErrorContext c;
    c.file = p.string();
    return Error(ErrorKind::Limit,
                 "the file is " + std::to_string(size) + " bytes, more than the " +
                     std::to_string(max_bytes) + " bytes " + what + " may have",
                 c);
  };
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes) throw too_large(size);
  std::string text;
  text.reserve(static_cast<std::size_t>(size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      throw file_error("cannot read the file", p, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_bytes) throw too_large(text.size());  // it grew since fstat
  }
  return text;
}

// A read-only, private mapping of a whole regular file (anything else is refused: see
// open_regular_file). Tensors loaded with mmap view into it and keep it alive
// through the shared_ptr.
class MappedFile {
 public:
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& p) {
    std::shared_ptr<MappedFile> m(new MappedFile());
    m->path_ = p.string();
    struct stat st;
    const int fd = open_regular_file(p, st);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > SIZE_MAX) {
      ::close(fd);
      ErrorContext c;
      c.file = m->path_;
      throw Error(ErrorKind::Limit,
                  "file of " + std::to_string(size) + " bytes is too large to map on this platform", c);
    }
    // mmap refuses length 0; an empty file is simply an empty span.
    if (size > 0) {
      void* addr = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw file_error("cannot map file", p, err);
      }
      m->data_ = static_cast<const std::byte*>(addr);
      m->size_ = static_cast<std::size_t>(size);
    }
    // The mapping keeps the file's pages reachable; the descriptor is not needed any more.
    ::close(fd);
    return m;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::string& path() const noexcept { return path_; }

 private:
  MappedFile() = default;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

// Atomic, durable replacement of one file. Write everything, then commit(); until commit()
// the final path is untouched, and a writer destroyed without commit() (an exception, an
// early return) removes its temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path final_path, bool durable = true)
      : final_(std::move(final_path)), durable_(durable) {
    if (final_.filename().empty() || final_.filename() == "." || final_.filename() == "..")
      throw Error("cannot save to '" + final_.string() + "': the path does not name a file");
    const std::filesystem::path dir = final_.parent_path();
    // Same directory as the final file: rename() is atomic only within one file system.
    static std::atomic<std::uint64_t> counter{0};
    const std::string prefix = temp_prefix(final_) + std::to_string(::getpid()) + ".";
    auto& live = LiveTemporaries::instance();
    for (int attempt = 0;; ++attempt) {
      const std::string name = prefix + std::to_string(counter.fetch_add(1));
      temp_ = dir / name;
      // Registered before it exists, so a concurrent remove_stale_temporaries() in this
      // process never takes it for a leftover.
      live.add(name);
      // O_EXCL: never reuse a file someone else created; 0644 is narrowed by the umask.
      do fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      while (fd_ < 0 && errno == EINTR);
      if (fd_ >= 0) break;
      const int err = errno;
      live.remove(name);
      // EEXIST: a leftover from an earlier process with our pid; try the next number.
      if (err != EEXIST || attempt >= 1000)
        throw file_error("cannot create temporary file '" + temp_.string() + "' to save", final_, err);
    }
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
    LiveTemporaries::instance().remove(temp_.filename().string());
  }

  // Writes all of `data` at the current position with as few system calls as possible.
  void write(std::span<const std::byte> data) {
    if (fd_ < 0 || failed_)
      throw error_here(ErrorKind::Usage, "write() on a file that was already committed or failed");
    // Linux writes at most 0x7ffff000 bytes per call; ask for 1 GiB at a time.
    constexpr std::size_t kMaxWrite = std::size_t{1} << 30;
    const std::byte* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, std::min(left, kMaxWrite));
      if (n < 0) {
        if (errno == EINTR) continue;
        failed_ = true;
        throw write_error(errno);
      }
      if (n == 0) {  // not expected from a regular file; do not spin on it
        failed_ = true;
        throw error_here(ErrorKind::Io, "write() made no progress while writing '" + final_.string() + "'");
      }
      p += n;
      left -= static_cast<std::size_t>(n);
      position_ += static_cast<std::uint64_t>(n);
    }
  }

  std::uint64_t position() const noexcept { return position_; }
  const std::filesystem::path& temp_path() const noexcept { return temp_; }
  const std::filesystem::path& final_path() const noexcept { return final_; }

  // Makes the written bytes the final file: [fsync] + close + rename + [fsync directory].
  void commit() {
    if (fd_ < 0 || failed_)
      throw error_here(ErrorKind::Usage, "commit() on a file that was already committed or failed");
    // Errors of delayed writes (NFS, full disks) surface at fsync or close, not at write.
    // errno is saved before the message is built: the order in which function arguments are
    // evaluated is unspecified, and the allocations of the message may overwrite errno (an
    // ENOSPC would then be reported as some other reason).
    if (durable_ && ::fsync(fd_) != 0) {
      const int err = errno;
      failed_ = true;
      throw file_error("fsync failed for the temporary file '" + temp_.string() + "'", final_, err);
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0 && errno != EINTR) {
      const int err = errno;
      failed_ = true;
      throw file_error("closing the temporary file '" + temp_.string() + "' failed", final_, err);
    }
    if (::rename(temp_.c_str(), final_.c_str()) != 0) {
      const int err = errno;
      failed_ = true;
      throw file_error("cannot rename '" + temp_.string() + "' to the final name", final_, err);
    }
    committed_ = true;
    if (durable_) sync_directory();
  }

 private:
  Error error_here(ErrorKind kind, const std::string& message) const {
    ErrorContext c;
    c.file = final_.string();
    c.offset = position_;
    return Error(kind, message, c);
  }

  Error write_error(int err) const {
    std::string what;
    switch (err) {
      case ENOSPC:
        what = "no space left on device";
        break;
      case EDQUOT:
        what = "disk quota exceeded";
        break;
      case EIO:
        what = "I/O error";
        break;
      default:
        what = "write failed (" + errno_text(err) + ")";
        break;
    }
    return error_here(ErrorKind::Io, what + " while writing '" + final_.string() + "' (temporary file '" +
                                         temp_.string() + "') at byte offset " + std::to_string(position_));
  }

  // The rename is only durable once the directory entry is on disk.
  void sync_directory() {
    std::filesystem::path dir = final_.parent_path();
    if (dir.empty()) dir = ".";
    int dfd;
    do dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (dfd < 0 && errno == EINTR);
    if (dfd < 0) {
      const int err = errno;  // before the message is built (see commit())
      throw file_error("saved, but cannot open the directory to fsync it", final_, err);
    }
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    // EINVAL: this file system cannot sync directories; there is nothing more to do.
    if (rc != 0 && err != EINVAL)
      throw file_error("saved, but fsync of the directory failed, so the save may not survive a crash",
                       final_, err);
  }

  std::filesystem::path final_;
  std::filesystem::path temp_;
  int fd_ = -1;
  std::uint64_t position_ = 0;
  bool durable_;
  bool committed_ = false;
  bool failed_ = false;
};

// Removes "<final>.tmp.<pid>.<n>" siblings of `final_path` that no live writer owns: those
// whose process is gone (kill(pid, 0) fails with ESRCH), and those carrying our own pid that
// this process is not writing (left by an earlier process with the same pid). A temporary of
// any other live process is kept, and so is anything under such a name that is not a plain
// file (a symbolic link, a directory, a FIFO): what a link points to is never deleted.
// Returns how many files were removed; a file that vanishes meanwhile (another cleaner) is
// not counted. The directory itself is trusted: callers check that it is inside their
// checkpoint root (ckpt/run_dir.hpp).
inline std::size_t remove_stale_temporaries(const std::filesystem::path& final_path) {
  std::filesystem::path dir = final_path.parent_path();
  if (dir.empty()) dir = ".";
  const std::string prefix = temp_prefix(final_path);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return 0;
    throw file_error("cannot list the directory '" + dir.string() + "' to remove stale temporary files",
                     final_path, errno);
  }
  struct Closer {
    DIR* d;
    ~Closer() { ::closedir(d); }
  } closer{d};

  const pid_t self = ::getpid();
  std::size_t removed = 0;
  while (const dirent* ent = ::readdir(d)) {
    const std::string name = ent->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // The rest must be "<pid>.<n>", both decimal; anything else is not ours to judge.
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size() || dot > 9) continue;
    if (rest.find_first_not_of("0123456789.") != std::string::npos ||
        rest.find('.', dot + 1) != std::string::npos)
      continue;
    const long pid = std::stol(rest.substr(0, dot));
    if (pid <= 0) continue;
    const std::filesystem::path p = dir / name;
    bool stale;
    if (pid == self)
      stale = !LiveTemporaries::instance().contains(name);
    else
      stale = ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;  // EPERM: alive, not ours
    if (!stale) continue;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // only plain files
    if (::unlink(p.c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace sgckpt::detail::fs
