// sgckpt/detail/dcp/publish.hpp: a DCP checkpoint appears whole or not at all. The ranks write
// into a staging directory next to the target ("<dir>.staging-<save id>"); once every file and
// .metadata are on disk, rank 0 swaps the staging directory with the target in one step
// (renameat2 RENAME_EXCHANGE) and removes the old one. A save killed at any point leaves the
// previous checkpoint where it was; what it had staged is removed by the next save.
#pragma once

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc, _GNU_SOURCE)
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

#include "sgckpt/detail/fs/file.hpp"

namespace sgckpt::detail::dcp {

// `dir` is normalized by the caller (no trailing slash: io/dcp/save.hpp).
inline std::filesystem::path staging_path(const std::filesystem::path& dir, const std::string& save_id) {
  return dir.parent_path() / (dir.filename().string() + ".staging-" + save_id);
}

// Calls f(entry) for each real directory (not a link) named "<dir>.staging-*" next to `dir`.
template <class F>
void for_each_staging(const std::filesystem::path& dir, F&& f) {
  const std::string prefix = dir.filename().string() + ".staging-";
  const auto parent = dir.parent_path().empty() ? std::filesystem::path(".") : dir.parent_path();
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(parent, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    if (it->path().filename().string().rfind(prefix, 0) == 0 && it->is_directory(ec) && !it->is_symlink(ec))
      if (!f(it->path())) return;
}

inline void sync_path(const std::filesystem::path& p) {
  const int fd = ::open(p.empty() ? "." : p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fs::file_error("cannot open to fsync", p, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) throw fs::file_error("fsync failed", p, err);
}

// A target that exists must be a DCP checkpoint (or empty): a save never replaces anything else.
inline void check_replaceable(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(dir, ec))) return;
  if (!std::filesystem::is_directory(std::filesystem::symlink_status(dir, ec)))
    throw Error(ErrorKind::Usage,
                "cannot save a DCP checkpoint to '" + dir.string() + "': it exists and is not a directory");
  if (!std::filesystem::is_empty(dir, ec) && !std::filesystem::exists(dir / ".metadata", ec))
    throw Error(ErrorKind::Usage,
                "cannot save a DCP checkpoint to '" + dir.string() +
                    "': the directory holds other files and no .metadata (not a DCP checkpoint)");
}

// A save killed between the two renames of the fallback (no RENAME_EXCHANGE) left no `dir` and
// the old checkpoint as "<dir>.staging-<id>.old": it is put back before anything else.
inline void recover_interrupted_swap(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(dir, ec))) return;
  for_each_staging(dir, [&](const std::filesystem::path& p) {
    if (p.extension() != ".old" || !std::filesystem::exists(p / ".metadata", ec)) return true;
    if (::rename(p.c_str(), dir.c_str()) != 0)
      throw fs::file_error("cannot put back the checkpoint an interrupted save moved aside", dir, errno);
    return false;
  });
}

// Removes "<dir>.staging-*" siblings other than `keep` (what killed saves left).
inline void remove_stale_staging(const std::filesystem::path& dir, const std::filesystem::path& keep) {
  for_each_staging(dir, [&](const std::filesystem::path& p) {
    std::error_code ec;
    if (p.filename() != keep.filename()) std::filesystem::remove_all(p, ec);
    return true;
  });
}

// Makes the staging directory the checkpoint at `dir`, atomically, and removes what was there.
inline void publish(const std::filesystem::path& staging, const std::filesystem::path& dir, bool durable) {
  if (durable) sync_path(staging);
  std::error_code ec;
  const bool replace = std::filesystem::exists(std::filesystem::symlink_status(dir, ec));
  if (!replace) {
    if (::rename(staging.c_str(), dir.c_str()) != 0)
      throw fs::file_error("cannot rename the staged checkpoint into place", dir, errno);
  } else if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    if (err != EINVAL && err != ENOSYS)
      throw fs::file_error("cannot swap the staged checkpoint into place", dir, err);
    // A file system without RENAME_EXCHANGE: two renames, with a moment in which only the old
    // checkpoint (under "<dir>.staging-...old") exists, never a half-written one.
    const auto old = std::filesystem::path(staging.string() + ".old");
    if (::rename(dir.c_str(), old.c_str()) != 0)
      throw fs::file_error("cannot move the old checkpoint aside", dir, errno);
    if (::rename(staging.c_str(), dir.c_str()) != 0) {
      const int err = errno;
      ::rename(old.c_str(), dir.c_str());  // put the old checkpoint back
      throw fs::file_error("cannot rename the staged checkpoint into place", dir, err);
    }
    std::filesystem::remove_all(old, ec);
  } else {
    std::filesystem::remove_all(staging, ec);  // now the old checkpoint
  }
  if (durable) sync_path(dir.parent_path());
}

}  // namespace sgckpt::detail::dcp
