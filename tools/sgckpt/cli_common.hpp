// tools/sgckpt/cli_common.hpp: pieces shared by the subcommands of `sgckpt`.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "sgckpt/core/error.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::tool {

// Adds the options that control reading a checkpoint.
//   --mmap    map the file; tensors are zero-copy views into the mapping
//   --no-crc  (with_crc_flag) skip the CRC-32 check of each record
//   --no-numpy  refuse numpy scalars and arrays (as torch's weights_only loader does)
inline void add_load_options(CLI::App& cmd, LoadOptions& options, bool with_crc_flag) {
  cmd.add_flag("--mmap", options.mmap,
               "Memory-map the file instead of reading it (tensors view the mapping)");
  cmd.add_flag_callback(
      "--no-numpy", [&options] { options.numpy = false; },
      "Refuse numpy scalars and arrays instead of reading them");
  if (with_crc_flag)
    cmd.add_flag_callback(
        "--no-crc", [&options] { options.verify_crc = false; },
        "Do not check the CRC-32 of the archive's records");
}

// Writes all of `s` to standard output and flushes; throws sgckpt::Error when that fails
// (a full disk, a closed pipe with SIGPIPE ignored, ...).
inline void write_stdout(std::string_view s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
    const int err = errno;
    throw Error(std::string("cannot write to standard output: ") + std::strerror(err));
  }
  if (std::fflush(stdout) != 0) {
    const int err = errno;
    throw Error(std::string("cannot write to standard output: ") + std::strerror(err));
  }
}

}  // namespace sgckpt::tool
