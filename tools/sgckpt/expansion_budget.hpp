// tools/sgckpt/expansion_budget.hpp: how much a command may produce from the files it reads.
//
// A few kilobytes of pickle can describe gigabytes: a long key repeated in every key path of
// a listing, a string of control characters escaped six-fold and referenced a thousand
// times, a stride-0 view of 2^62 elements to hash or average. Each command's output (text,
// bytes hashed, tensors written) is bounded by a budget proportional to its inputs, and
// refused with a clear error when a file asks for more.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::tool {

class ExpansionBudget {
 public:
  static constexpr std::uint64_t kPerInputByte = 64;
  // Text for people (listings, JSON) and tensors written: an honest file's are smaller than
  // the file, or a few MB. Bytes hashed: an honest file hashes each stored byte about once.
  static constexpr std::uint64_t kOutputAllowance = 16ull << 20;
  static constexpr std::uint64_t kHashAllowance = 1ull << 30;

  // No limit (library use, tests).
  ExpansionBudget() = default;
  // allowance + 64 bytes per byte of the input files.
  static ExpansionBudget for_files(const std::vector<std::string>& paths,
                                   std::uint64_t allowance = kOutputAllowance) {
    std::uint64_t total = 0;
    for (const auto& p : paths) {
      std::error_code ec;
      if (std::filesystem::is_directory(p, ec)) {  // a DCP checkpoint: the files in it
        for (auto it = std::filesystem::directory_iterator(p, ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
          if (it->is_regular_file(ec)) total += it->file_size(ec);
        continue;
      }
      const auto n = std::filesystem::file_size(p, ec);
      if (!ec) total += n;
    }
    ExpansionBudget b;
    b.limit_ = allowance + kPerInputByte * total;
    b.allowance_ = allowance;
    b.input_bytes_ = total;
    return b;
  }

  std::uint64_t limit() const noexcept { return limit_; }

  // Throws when `amount` bytes of `what` exceed the budget.
  void check(std::uint64_t amount, const char* what) const {
    if (amount <= limit_) return;
    throw Error(std::string(what) + " would exceed " + std::to_string(limit_) + " bytes (" +
                std::to_string(kPerInputByte) + " per byte of the " + std::to_string(input_bytes_) +
                "-byte input plus " + std::to_string(allowance_ >> 20) +
                " MiB): the file expands far more than a checkpoint does (an amplification attack?)");
  }

 private:
  std::uint64_t limit_ = UINT64_MAX;
  std::uint64_t input_bytes_ = 0;
  std::uint64_t allowance_ = 0;
};

}  // namespace sgckpt::tool
