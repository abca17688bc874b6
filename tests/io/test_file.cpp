// The file layer: read-only mappings, atomic and durable replacement, and the cleanup of
// temporaries left by crashed writers.
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/io/file.hpp"

using namespace sgckpt;
using namespace sgckpt::detail::fs;  // the internals under test
using sgckpt::test::as_bytes;
using sgckpt::test::as_string;
using sgckpt::test::contains;
using sgckpt::test::error_message;

namespace {

// Counts fsync() calls on regular files and on directories, so the tests can see what the
// durable flag does. The definition below takes the place of libc's in this executable and
// forwards to it.
std::atomic<int> fsyncs_of_files{0}, fsyncs_of_dirs{0};

std::string read_text(const std::filesystem::path& p) {
  return as_string(test::read_file(p));
}

void write_text(const std::filesystem::path& p, std::string_view s) {
  test::write_file(p, as_bytes(s));
}

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A pid that certainly belonged to a process and now belongs to none: a child that exited
// and was reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return child;
}

}  // namespace

extern "C" int fsync(int fd) {
  using Fn = int (*)(int);
  static const Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "fsync"));
  struct stat st;
  if (::fstat(fd, &st) == 0) (S_ISDIR(st.st_mode) ? fsyncs_of_dirs : fsyncs_of_files)++;
  return real(fd);
}

TEST_CASE("MappedFile maps a whole file read-only") {
  test::TempDir dir;
  write_text(dir / "a.bin", "checkpoint bytes");
  const auto m = MappedFile::open(dir / "a.bin");
  CHECK(as_string(m->bytes()) == "checkpoint bytes");
  CHECK(m->path() == (dir / "a.bin").string());
}

TEST_CASE("MappedFile maps an empty file to an empty span") {
  test::TempDir dir;
  write_text(dir / "empty", "");
  const auto m = MappedFile::open(dir / "empty");
  CHECK(m->bytes().empty());
}

TEST_CASE("MappedFile errors name the file and the system's reason") {
  test::TempDir dir;
  const auto missing = error_message([&] { MappedFile::open(dir / "missing.pt"); });
  CHECK(contains(missing, "cannot open file for reading: No such file or directory"));
  CHECK(contains(missing, "missing.pt"));
  CHECK(contains(error_message([&] { MappedFile::open(dir.path()); }), "not a regular file"));
}

TEST_CASE("AtomicFile writes into a temporary sibling and renames it over the final file on commit") {
  test::TempDir dir;
  const auto final_path = dir / "ckpt.pth";
  write_text(final_path, "old checkpoint");
  const auto old_mapping = MappedFile::open(final_path);  // a reader still using the old file
  {
    AtomicFile f(final_path, /*durable=*/false);
    CHECK(f.temp_path().parent_path() == final_path.parent_path());
    CHECK(f.temp_path().filename().string().rfind("ckpt.pth.tmp." + std::to_string(::getpid()) + ".", 0) ==
          0);
    f.write(as_bytes("new "));
    f.write(as_bytes("checkpoint, longer"));
    CHECK(f.position() == 22);
    // Until commit() the final file is the old one and the data sits in the temporary.
    CHECK(read_text(final_path) == "old checkpoint");
    CHECK(read_text(f.temp_path()) == "new checkpoint, longer");
    f.commit();
    CHECK(!std::filesystem::exists(f.temp_path()));
  }
  CHECK(read_text(final_path) == "new checkpoint, longer");
  CHECK(names_in(dir.path()) == std::vector<std::string>{"ckpt.pth"});
  // The old file was replaced, not truncated: its reader still sees the old bytes.
  CHECK(as_string(old_mapping->bytes()) == "old checkpoint");
}

TEST_CASE("AtomicFile abandoned before commit leaves the old file intact and no temporary behind") {
  test::TempDir dir;
  const auto final_path = dir / "ckpt.pth";
  write_text(final_path, "old checkpoint");
  try {
    AtomicFile f(final_path);
    f.write(as_bytes("half a new checkp"));
    throw std::runtime_error("training crashed mid-save");
  } catch (const std::runtime_error&) {
  }
  CHECK(read_text(final_path) == "old checkpoint");
  CHECK(names_in(dir.path()) == std::vector<std::string>{"ckpt.pth"});

  // With no old file, nothing appears at all.
  { AtomicFile f(dir / "fresh.pth"); }
  CHECK(!std::filesystem::exists(dir / "fresh.pth"));
  CHECK(names_in(dir.path()) == std::vector<std::string>{"ckpt.pth"});
}

TEST_CASE("AtomicFile creates files with mode 0644 narrowed by the umask") {
  test::TempDir dir;
  const mode_t saved = ::umask(077);
  {
    AtomicFile f(dir / "private.pth");
    f.commit();
  }
  ::umask(022);
  {
    AtomicFile f(dir / "shared.pth");
    f.commit();
  }
  ::umask(saved);
  struct stat st;
  REQUIRE(::stat((dir / "private.pth").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir / "shared.pth").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
}

TEST_CASE("AtomicFile with durable=true fsyncs the file and its directory; durable=false does neither") {
  test::TempDir dir;
  const int files0 = fsyncs_of_files, dirs0 = fsyncs_of_dirs;
  {
    AtomicFile f(dir / "durable.pth", /*durable=*/true);
    f.write(as_bytes("x"));
    f.commit();
  }
  CHECK(fsyncs_of_files - files0 == 1);
  CHECK(fsyncs_of_dirs - dirs0 == 1);
  const int files1 = fsyncs_of_files, dirs1 = fsyncs_of_dirs;
  {
    AtomicFile f(dir / "fast.pth", /*durable=*/false);
    f.write(as_bytes("x"));
    f.commit();
  }
  CHECK(fsyncs_of_files == files1);
  CHECK(fsyncs_of_dirs == dirs1);
  CHECK(read_text(dir / "durable.pth") == "x");
  CHECK(read_text(dir / "fast.pth") == "x");
}

TEST_CASE("AtomicFile reports a failed write with the file, the temporary and the byte offset") {
  // RLIMIT_FSIZE makes the kernel write only up to the limit (a partial write, which must be
  // continued) and then fail with EFBIG, like a disk filling up mid-save.
  test::TempDir dir;
  const auto final_path = dir / "ckpt.pth";
  write_text(final_path, "old checkpoint");
  struct rlimit saved;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto* const saved_handler = ::signal(SIGXFSZ, SIG_IGN);
  std::string message, temp;
  {
    AtomicFile f(final_path);
    temp = f.temp_path().string();
    const std::vector<std::byte> data(100000, std::byte{'x'});
    struct rlimit small = saved;
    small.rlim_cur = 65536;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    message = error_message([&] { f.write(data); });
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(f.position() == 65536);  // the partial write was continued up to the limit
    CHECK(contains(error_message([&] { f.commit(); }), "already committed or failed"));
  }
  ::signal(SIGXFSZ, saved_handler);
  CHECK(contains(message, "while writing '" + final_path.string() + "'"));
  CHECK(contains(message, "(temporary file '" + temp + "')"));
  CHECK(contains(message, "at byte offset 65536"));
  CHECK(read_text(final_path) == "old checkpoint");
  CHECK(names_in(dir.path()) == std::vector<std::string>{"ckpt.pth"});
}

TEST_CASE("AtomicFile refuses to be used after commit") {
  test::TempDir dir;
  AtomicFile f(dir / "once.pth");
  f.commit();
  CHECK(contains(error_message([&] { f.commit(); }), "already committed"));
  CHECK(contains(error_message([&] { f.write(as_bytes("late")); }), "already committed"));
}

TEST_CASE("AtomicFile refuses a path that names no file") {
  CHECK(contains(error_message([] { AtomicFile f("some/dir/"); }), "does not name a file"));
}

TEST_CASE("remove_stale_temporaries removes leftovers of dead writers and keeps those of live ones") {
  test::TempDir dir;
  const auto final_path = dir / "ckpt.pth";
  const std::string self = std::to_string(::getpid());
  const std::string dead = std::to_string(dead_pid());
  const std::string parent = std::to_string(::getppid());  // alive, and not us
  write_text(final_path, "checkpoint");
  write_text(dir / ("ckpt.pth.tmp." + dead + ".0"), "crashed writer");
  write_text(dir / ("ckpt.pth.tmp." + self + ".999999"), "an earlier process with our pid");
  write_text(dir / ("ckpt.pth.tmp." + parent + ".3"), "another live writer");
  write_text(dir / ("other.pth.tmp." + dead + ".0"), "another checkpoint's leftover");
  write_text(dir / ("ckpt.pth.tmp." + dead + ".x"), "not a name we write");
  write_text(dir / "ckpt.pth.tmp.notes", "not a name we write");
  AtomicFile live(final_path);  // our own writer, in progress
  live.write(as_bytes("in progress"));

  CHECK(remove_stale_temporaries(final_path) == 2);
  const std::vector<std::string> expected = [&] {
    std::vector<std::string> v{"ckpt.pth",
                               "ckpt.pth.tmp." + dead + ".x",
                               "ckpt.pth.tmp." + parent + ".3",
                               live.temp_path().filename().string(),
                               "ckpt.pth.tmp.notes",
                               "other.pth.tmp." + dead + ".0"};
    std::sort(v.begin(), v.end());
    return v;
  }();
  CHECK(names_in(dir.path()) == expected);
  live.commit();
  CHECK(read_text(final_path) == "in progress");
  CHECK(remove_stale_temporaries(final_path) == 0);
  CHECK(remove_stale_temporaries(dir / "missing-dir" / "x.pth") == 0);
}
