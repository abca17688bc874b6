// sgckpt/core/error.hpp: the one exception type of the library.
//
// Every failure says what went wrong and where: the file, the zip record, the byte
// offset inside that record (or file) and the key path inside the object tree; and what
// kind of failure it is (ErrorKind), for callers that react differently to each.
// Library code never aborts or prints; it throws sgckpt::Error.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace sgckpt {

// What kind of failure an Error is. The message gives the details and may be reworded; the
// kind is the stable part of the API (docs/errors.md says which failures have which kind).
enum class ErrorKind : std::uint8_t {
  Usage,      // the caller's mistake: an invalid argument or call (the kind when none is given)
  Io,         // the operating system failed a file operation (open, read, write, sync, rename)
  Truncated,  // the input ends before what it announces
  Corrupt,    // bytes that are not a valid .pth, zip or pickle (signature, checksum, structure)
  Refused,    // well-formed, but not read on purpose: a global outside the allowlist, a
              // construct torch would read differently, a feature sgckpt does not support
  Limit,      // a resource bound would be exceeded (sgckpt::Limits, memory)
  Schema,     // well-formed data that is not what was asked for: a missing key, another kind of value
  Mismatch,   // two things that must agree do not: a model and a checkpoint (keys, shapes, dtypes)
  Timeout,    // a peer (another rank, a store) did not answer within the configured time
};

inline const char* kind_name(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::Io:
      return "io";
    case ErrorKind::Truncated:
      return "truncated";
    case ErrorKind::Corrupt:
      return "corrupt";
    case ErrorKind::Refused:
      return "refused";
    case ErrorKind::Limit:
      return "limit";
    case ErrorKind::Schema:
      return "schema";
    case ErrorKind::Mismatch:
      return "mismatch";
    case ErrorKind::Timeout:
      return "timeout";
    case ErrorKind::Usage:
      break;
  }
  return "usage";
}

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
  Error(ErrorKind kind, std::string message, ErrorContext context = {})
      : std::runtime_error(compose(message, context)),
        message_(std::move(message)),
        context_(std::move(context)),
        kind_(kind) {}
  // A usage error (the caller's mistake).
  explicit Error(std::string message, ErrorContext context = {})
      : Error(ErrorKind::Usage, std::move(message), std::move(context)) {}

  ErrorKind kind() const noexcept { return kind_; }
  // The bare message, without the location.
  const std::string& message() const noexcept { return message_; }
  const ErrorContext& context() const noexcept { return context_; }

  // Returns a copy of this error with missing context filled in. Inner layers know the
  // byte offset; outer layers know the file: each adds what it knows and rethrows.
  Error with_file(const std::string& file) const {
    ErrorContext c = context_;
    if (c.file.empty()) c.file = file;
    return Error(kind_, message_, c);
  }
  Error with_key_path(const std::string& prefix) const {
    ErrorContext c = context_;
    if (!prefix.empty()) c.key_path = c.key_path.empty() ? prefix : prefix + "/" + c.key_path;
    return Error(kind_, message_, c);
  }
  Error with_record(const std::string& record) const {
    ErrorContext c = context_;
    if (c.record.empty()) c.record = record;
    return Error(kind_, message_, c);
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
  ErrorKind kind_ = ErrorKind::Usage;
};

}  // namespace sgckpt
