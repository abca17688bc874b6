// sgckpt/core/error.hpp: the one exception type of the library.
//
// Every failure says what went wrong and where: the file, the zip record, the byte
// offset inside that record (or file) and the key path inside the object tree.
// Library code never aborts or prints; it throws sgckpt::Error.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace sgckpt {

struct ErrorContext {
  std::string file;                     // path of the file being read or written, if any
  std::string record;                   // zip record name (e.g. "archive/data.pkl"), if any
  std::optional<std::uint64_t> offset;  // byte offset in the record (or in the file)
  std::string key_path;                 // e.g. "optimizer_state_dict/state/3/exp_avg"

  static ErrorContext at_key(std::string path) {
    ErrorContext c;
    c.key_path = std::move(path);
    return c;
  }
  static ErrorContext at_offset(std::uint64_t off) {
    ErrorContext c;
    c.offset = off;
    return c;
  }
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, ErrorContext context = {})
      : std::runtime_error(compose(message, context)),
        message_(std::move(message)),
        context_(std::move(context)) {}

  // The bare message, without the location.
  const std::string& message() const noexcept { return message_; }
  const ErrorContext& context() const noexcept { return context_; }

  // Returns a copy of this error with missing context filled in. Inner layers know the
  // byte offset; outer layers know the file: each adds what it knows and rethrows.
  Error with_file(const std::string& file) const {
    ErrorContext c = context_;
    if (c.file.empty()) c.file = file;
    return Error(message_, c);
  }
  Error with_key_path(const std::string& prefix) const {
    ErrorContext c = context_;
    if (!prefix.empty()) c.key_path = c.key_path.empty() ? prefix : prefix + "/" + c.key_path;
    return Error(message_, c);
  }
  Error with_record(const std::string& record) const {
    ErrorContext c = context_;
    if (c.record.empty()) c.record = record;
    return Error(message_, c);
  }

 private:
  static std::string compose(const std::string& message, const ErrorContext& c) {
    std::string where;
    auto add = [&](const std::string& part) {
      if (!where.empty()) where += ", ";
      where += part;
    };
    if (!c.file.empty()) add("file '" + c.file + "'");
    if (!c.record.empty()) add("record '" + c.record + "'");
    if (c.offset) add("byte offset " + std::to_string(*c.offset));
    if (!c.key_path.empty()) {
      // Hostile nesting makes paths thousands of levels deep: keep the message one readable line.
      constexpr std::size_t kMax = 200;
      add("key path '" +
          (c.key_path.size() <= kMax ? c.key_path : "..." + c.key_path.substr(c.key_path.size() - kMax)) +
          "'");
    }
    if (where.empty()) return message;
    return message + " (" + where + ")";
  }

  std::string message_;
  ErrorContext context_;
};

}  // namespace sgckpt
