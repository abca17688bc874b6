// tests/test_support.hpp: small helpers shared by the test suites: where the shared fixtures
// are, reading and writing whole files, scratch directories, and checking error messages.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::test {

// The repository root: SGCKPT_SOURCE_DIR when the build defines it, else two levels above
// this header (<repo>/tests/test_support.hpp).
inline std::filesystem::path source_dir() {
#ifdef SGCKPT_SOURCE_DIR
  return std::filesystem::path(SGCKPT_SOURCE_DIR);
#else
  return std::filesystem::weakly_canonical(std::filesystem::absolute(__FILE__)).parent_path().parent_path();
#endif
}

// The read-only shared folder (specs, torch fixtures): $SGCKPT_SHARED_DIR, else <repo>/../shared.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SGCKPT_SHARED_DIR"); env && *env) return env;
  return source_dir().parent_path() / "shared";
}

// Files written by real torch 1.13.1 (see its README.md).
inline std::filesystem::path torch113_dir() {
  return shared_dir() / "fixtures" / "torch-1.13";
}

inline std::vector<std::byte> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("test: cannot open " + p.string());
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) bytes[i] = static_cast<std::byte>(chars[i]);
  return bytes;
}

inline void write_file(const std::filesystem::path& p, std::span<const std::byte> bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("test: cannot write " + p.string());
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

inline std::string as_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/sgckpt-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("test: mkdtemp failed");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Runs f, which must throw sgckpt::Error, and returns the full message (what()); records a
// test failure and returns "" if it does not throw.
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const sgckpt::Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected an sgckpt::Error, but nothing was thrown");
  return {};
}

// Like error_message, but returns the Error itself, for checks on its context.
template <class F>
sgckpt::Error error_of(F&& f) {
  try {
    f();
  } catch (const sgckpt::Error& e) {
    return e;
  }
  FAIL_CHECK("expected an sgckpt::Error, but nothing was thrown");
  return sgckpt::Error("(nothing thrown)");
}

inline bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

}  // namespace sgckpt::test
