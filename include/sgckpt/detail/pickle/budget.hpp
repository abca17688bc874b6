// sgckpt/detail/pickle/budget.hpp: the amplification budget of one pickle: every counter of what
// a file has made the reader do so far, and the checks that bound it (sgckpt::Limits).
//
// Memory. Counting objects bounds neither their size nor what a small file can ask for:
// a deflated data.pkl or a memo reference (2 bytes) can stand for megabytes. So the bytes
// of nodes, container slots and strings are summed, and may not exceed memory_allowance
// plus memory_per_input_byte times the size of the file (see Limits).
//
// Amplification. A memo reference (BINGET: 2 input bytes) can make the machine copy
// megabytes: a memoized str used as a key or converted at every reference, a dict passed
// to Counter() again and again, a shared container copied into the value tree each time it
// is reached (the billion laughs). Counting objects alone let files of a few hundred bytes
// or KB allocate tens of GB or run for minutes (tests/hostile/bomb_*). So:
//  * every repeated copy is charged: one value per kBytesPerValue bytes of str/bytes/key/
//    big int, one per element of a copied container, shape or stride (the first copy of a
//    node's data is free: it is bounded by the input, and a large honest str must load);
//  * charges count toward max_values, and, with the value tree (converted(), which also
//    charges every key path by length), may not exceed kCopyFactor times the objects the
//    pickle really created plus kCopyAllowance.
// Real checkpoints share little and copy short strings: they stay far below the bound.
//
// Every check throws ErrorKind::Limit. While the machine runs, the error names the offset of
// the opcode being run (the `offset` the budget is given); the checks of the conversion name
// the key path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "sgckpt/core/error.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::pickle {

class Budget {
 public:
  static constexpr std::uint64_t kBytesPerValue = 16;
  static constexpr std::uint64_t kCopyFactor = 16;
  static constexpr std::uint64_t kCopyAllowance = 100'000;

  // `input_bytes`: the size of the whole input (the file) the memory budget scales with; 0:
  // `pickle_bytes`. `offset`: where the machine is, named by the errors it causes.
  Budget(const Limits& limits, std::uint64_t input_bytes, std::uint64_t pickle_bytes,
         const std::size_t& offset)
      : lim_(limits),
        input_bytes_(input_bytes),
        memory_budget_(budget(limits, input_bytes ? input_bytes : pickle_bytes)),
        offset_(offset) {}
  Budget(const Budget&) = delete;
  Budget& operator=(const Budget&) = delete;

  // ---- while the machine runs ------------------------------------------------------------
  // One opcode executed.
  void opcode() {
    if (++ops_ > lim_.max_opcodes)
      fail("pickle executes more than " + std::to_string(lim_.max_opcodes) + " opcodes");
  }
  // One object created, taking `bytes` of memory.
  void object(std::uint64_t bytes) {
    if (++nodes_ + charged_ > lim_.max_values)
      fail("pickle creates more than " + std::to_string(lim_.max_values) + " objects (limit)");
    account(bytes);
  }
  // Memory: nodes, container slots, strings, and the value tree's values.
  void account(std::uint64_t bytes) {
    memory_ += bytes;
    if (memory_ > memory_budget_)
      fail("pickle needs more than " + std::to_string(memory_budget_) + " bytes of memory for its objects (" +
           std::to_string(lim_.memory_per_input_byte) + " per byte of the " + std::to_string(input_bytes_) +
           "-byte input plus " + std::to_string(lim_.memory_allowance) + "; a memory amplification attack?)");
  }
  // A repeated copy worth `values` (see above).
  void charge(std::uint64_t values) {
    charged_ += values;
    if (nodes_ + charged_ > lim_.max_values)
      fail("pickle creates more than " + std::to_string(lim_.max_values) +
           " objects (limit; copies of strings, keys and shapes count by size)");
    if (charged_ > copy_budget())
      fail("pickle copies memoized data worth " + std::to_string(charged_) + " values, more than " +
           std::to_string(kCopyFactor) + " times the " + std::to_string(nodes_) +
           " objects it creates (an amplification attack?)");
  }

  // ---- while the graph is converted into the value tree ----------------------------------
  // One value at `path`: `base` for the value and its key path, `size_cost` for the data it
  // copies again. A value counts as a copy of shared data when `copy_starts` (a shared
  // container reached again) or inside such a copy (enter_copy()).
  void converted(std::uint64_t base, std::uint64_t size_cost, bool copy_starts, const std::string& path) {
    out_values_ += base + size_cost;
    if (out_values_ > lim_.max_values)
      throw Error(ErrorKind::Limit,
                  "checkpoint expands to more than " + std::to_string(lim_.max_values) +
                      " values (limit; shared containers are copied, strings count by size)",
                  ErrorContext::at_key(path));
    copies_ += size_cost + (in_copy_ > 0 || copy_starts ? base : 0);
    if (copies_ > copy_budget())
      throw Error(ErrorKind::Limit,
                  "checkpoint expands to " + std::to_string(out_values_) + " values, " +
                      std::to_string(copies_) + " of them copies of shared data, from only " +
                      std::to_string(nodes_) + " pickled objects (a billion-laughs amplification attack?)",
                  ErrorContext::at_key(path));
  }
  // Around the conversion of a shared container reached again: everything below is a copy.
  void enter_copy() noexcept { ++in_copy_; }
  void leave_copy() noexcept { --in_copy_; }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorKind::Limit, msg, ErrorContext::at_offset(offset_));
  }
  static std::uint64_t budget(const Limits& lim, std::uint64_t input_bytes) {
    std::uint64_t per_input;
    if (sgckpt::detail::mul_overflows(lim.memory_per_input_byte, input_bytes, per_input)) return UINT64_MAX;
    return lim.memory_allowance > UINT64_MAX - per_input ? UINT64_MAX : lim.memory_allowance + per_input;
  }
  std::uint64_t copy_budget() const { return kCopyAllowance + kCopyFactor * nodes_; }

  const Limits& lim_;
  std::uint64_t input_bytes_;  // as given (0: the pickle's size), for messages
  std::uint64_t memory_budget_;
  const std::size_t& offset_;
  std::uint64_t ops_ = 0;         // opcodes executed
  std::uint64_t memory_ = 0;      // bytes of nodes, slots, strings and values (see account)
  std::uint64_t nodes_ = 0;       // objects created (object)
  std::uint64_t charged_ = 0;     // copies charged (charge)
  std::uint64_t out_values_ = 0;  // values of the value tree (converted)
  std::uint64_t copies_ = 0;      // of them, copies of shared data
  std::uint32_t in_copy_ = 0;     // > 0 while converting a shared container reached again
};

}  // namespace sgckpt::detail::pickle
