// sgckpt/detail/dcp/exchange.hpp: the small messages the ranks of a DCP save exchange through
// the caller's all-gather (each rank's plan, then where it wrote each item): length-prefixed
// fields, so a key may hold any byte.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sgckpt/core/error.hpp"

namespace sgckpt::detail::dcp {

class MessageWriter {
 public:
  MessageWriter& num(std::int64_t v) {
    out_ += std::to_string(v);
    out_ += ' ';
    return *this;
  }
  MessageWriter& text(std::string_view s) {
    num(static_cast<std::int64_t>(s.size()));
    out_.append(s);
    return *this;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class MessageReader {
 public:
  explicit MessageReader(std::string_view in) : in_(in) {}
  std::int64_t num() {
    const auto sp = in_.find(' ', pos_);
    if (sp == std::string_view::npos) bad();
    std::int64_t v = 0;
    bool neg = false;
    std::size_t i = pos_;
    if (i < sp && in_[i] == '-') {
      neg = true;
      ++i;
    }
    if (i == sp || sp - i > 18) bad();
    for (; i < sp; ++i) {
      if (in_[i] < '0' || in_[i] > '9') bad();
      v = v * 10 + (in_[i] - '0');
    }
    pos_ = sp + 1;
    return neg ? -v : v;
  }
  std::string text() {
    const auto n = num();
    if (n < 0 || static_cast<std::uint64_t>(n) > in_.size() - pos_) bad();
    std::string s(in_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  [[noreturn]] static void bad() {
    throw Error(ErrorKind::Corrupt, "malformed message from another rank of a DCP save");
  }
  std::string_view in_;
  std::size_t pos_ = 0;
};

// The all-gather of `size` threads of one process (convert's --dcp N writes as N ranks would).
class LocalExchange {
 public:
  explicit LocalExchange(int size) : slots_(static_cast<std::size_t>(size)) {}

  std::vector<std::string> all_gather(int rank, std::string mine) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return !draining_; });  // the previous round is still being read
    slots_[static_cast<std::size_t>(rank)] = std::move(mine);
    if (++arrived_ == slots_.size()) {
      draining_ = true;
      result_ = slots_;
      cv_.notify_all();
    } else {
      const auto round = round_;
      cv_.wait(lock, [&] { return round_ != round || draining_; });
    }
    std::vector<std::string> out = result_;
    if (++left_ == slots_.size()) {  // the last reader opens the next round
      arrived_ = left_ = 0;
      draining_ = false;
      ++round_;
      cv_.notify_all();
    }
    return out;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::string> slots_, result_;
  std::size_t arrived_ = 0, left_ = 0;
  std::uint64_t round_ = 0;
  bool draining_ = false;
};

}  // namespace sgckpt::detail::dcp
