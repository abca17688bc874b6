// tests/fuzz/fuzz_replay.cpp: runs both fuzz targets (fuzz_targets.hpp) over every file of
// the directories (or files) named on the command line, without libFuzzer, so that any
// compiler and every normal build replay the corpus (CTest test fuzz/replay).
//
//   fuzz_replay DIR_OR_FILE...
//
// A file fails when a target lets anything but sgckpt::Error escape, or takes longer than
// 10 s (libFuzzer's -timeout in bench/fuzz_campaign.sh). Crashes and sanitizer reports end
// the process, naming the file first (it is printed before it runs).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.hpp"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path p(argv[i]);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "fuzz_replay: %s does not exist\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  const bool verbose = std::getenv("SGCKPT_REPLAY_VERBOSE") != nullptr;
  int failures = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto* data = reinterpret_cast<const std::uint8_t*>(chars.data());
    if (verbose) std::fprintf(stderr, "fuzz_replay: %s\n", f.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    for (int target = 0; target < 2; ++target) {
      const char* name = target == 0 ? "pth" : "pickle";
      try {
        if (target == 0)
          sgckpt_fuzz::pth_one(data, chars.size());
        else
          sgckpt_fuzz::pickle_one(data, chars.size());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "FAIL %s [%s]: escaped %s: %s\n", f.c_str(), name, typeid(e).name(), e.what());
        ++failures;
      } catch (...) {
        std::fprintf(stderr, "FAIL %s [%s]: escaped a non-std exception\n", f.c_str(), name);
        ++failures;
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 10) {
      std::fprintf(stderr, "FAIL %s: took %.1f s (limit 10 s)\n", f.c_str(), secs);
      ++failures;
    }
  }
  std::printf("fuzz_replay: %zu files, %d failures\n", files.size(), failures);
  return failures ? 1 : 0;
}
