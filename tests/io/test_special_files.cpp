// Files that are not what they seem (issue 13, hostile input round 2, class B): a FIFO, a
// device or a directory under a checkpoint's name is refused at once with an sgckpt::Error
// that names the path and says what it is. open() of a FIFO without a writer used to block
// forever (`sgckpt inspect fifo`, a resume whose run directory holds a FIFO). A symbolic link
// to a regular file is still followed and loads.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

#include "../test_support.hpp"
#include "sgckpt/detail/fs/file.hpp"
#include "sgckpt/io/file.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using sgckpt::test::contains;
namespace fs = std::filesystem;

namespace {

struct Outcome {
  bool refused = false;  // threw sgckpt::Error
  std::string message;
};

// Runs f in another thread and returns how it ended, or fails the test when it has not
// returned within a second. A regression that blocks in open() of `fifo` is then released by
// opening the FIFO for writing (and closing it: the reader sees end of file), so the test
// fails instead of hanging.
Outcome within_a_second(const fs::path& fifo, const std::function<void()>& f) {
  auto done = std::async(std::launch::async, [&f] {
    try {
      f();
    } catch (const Error& e) {
      return Outcome{true, e.what()};
    } catch (const std::exception& e) {
      return Outcome{false, e.what()};
    }
    return Outcome{false, "(returned normally)"};
  });
  if (done.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
    FAIL_CHECK("still blocked after a second: released by opening the FIFO for writing");
    const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  return done.get();
}

fs::path make_fifo(const test::TempDir& dir, const std::string& name) {
  const fs::path p = dir / name;
  REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
  return p;
}

}  // namespace

TEST_SUITE("io/special_files") {
  TEST_CASE("a FIFO under a checkpoint's name is refused at once, naming the path and what it is") {
    test::TempDir dir;
    const fs::path fifo = make_fifo(dir, "ckpt_latest.pth");

    const Outcome loaded = within_a_second(fifo, [&] { load(fifo); });
    CHECK(loaded.refused);
    CHECK(contains(loaded.message, "not a regular file (a FIFO)"));
    CHECK(contains(loaded.message, fifo.string()));

    LoadOptions mapped;
    mapped.mmap = true;
    CHECK(contains(within_a_second(fifo, [&] { load(fifo, mapped); }).message, "(a FIFO)"));
    CHECK(contains(within_a_second(fifo, [&] { detail::fs::MappedFile::open(fifo); }).message, "(a FIFO)"));
    // The small-file reader (recipes, recipe.yaml of a run) refuses it the same way.
    CHECK(contains(within_a_second(fifo, [&] { read_regular_file(fifo, 1 << 20); }).message, "(a FIFO)"));
  }

  TEST_CASE("a symbolic link to a FIFO is refused; a symbolic link to a checkpoint still loads") {
    test::TempDir dir;
    const fs::path fifo = make_fifo(dir, "pipe");
    fs::create_symlink(fifo, dir / "via_link.pth");
    CHECK(contains(within_a_second(fifo, [&] { load(dir / "via_link.pth"); }).message, "(a FIFO)"));

    Value v = Value::make_dict();
    v["epoch"] = Value(Int(3));
    save(v, dir / "real.pth");
    fs::create_symlink(dir / "real.pth", dir / "link.pth");
    CHECK(load(dir / "link.pth").at("epoch").as_int() == 3);
  }

  TEST_CASE("directories and devices are refused by name, before anything reads them") {
    test::TempDir dir;
    CHECK(contains(test::error_message([&] { load(dir.path()); }), "not a regular file (a directory)"));
    // /dev/zero would read without end; it is never even opened.
    const std::string zero = test::error_message([&] { read_regular_file("/dev/zero", 1 << 20); });
    CHECK(contains(zero, "not a regular file (a character device)"));
    CHECK(contains(zero, "/dev/zero"));
  }

  TEST_CASE("read_regular_file refuses a file larger than its bound before reading it") {
    test::TempDir dir;
    test::write_file(dir / "recipe.yaml", test::as_bytes(std::string(100, '#')));
    CHECK(read_regular_file(dir / "recipe.yaml", 100) == std::string(100, '#'));
    const std::string msg =
        test::error_message([&] { read_regular_file(dir / "recipe.yaml", 99, "a recipe"); });
    CHECK(contains(msg, "the file is 100 bytes, more than the 99 bytes a recipe may have"));
    CHECK(contains(msg, "recipe.yaml"));
  }
}
