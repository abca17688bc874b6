// sgckpt/ckpt/checked_int.hpp: numbers read from a checkpoint into native types, range-checked.
//
//   const int epoch = int_in_range<int>(d.at("epoch"), "epoch", 0);
//   // 'epoch' = 4294967297 does not fit in int (key path 'epoch')
//
// A file's integers are Python ints of any size. Narrowing one with static_cast (or as_int()
// and a cast) silently wraps: a checkpoint whose epoch is 2^32 + 1 used to continue training
// from epoch 1 while the log said 4294967297. Every integer a loop takes from a file goes
// through int_in_range instead, with the bounds the use needs (a count is >= 0, a divisor
// >= 1, a counter that is incremented stays below its type's maximum); what does not fit is
// an Error naming the key, never a different number.
#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"

namespace sgckpt {

namespace detail {

template <std::integral T>
constexpr const char* int_type_name() {
  if constexpr (std::is_same_v<T, int>) return "int";
  if constexpr (std::is_same_v<T, unsigned>) return "unsigned int";
  if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  if constexpr (std::is_same_v<T, std::uint64_t>) return "uint64";
  return "the target integer type";
}

// The key's own name: the last component of its path ("optimizer_state_dict/state/0/step"
// -> "step"), with its parent when it is a list index ("param_groups/0/params/3" -> "params/3").
inline std::string_view key_name(std::string_view key_path) {
  auto slash = key_path.rfind('/');
  if (slash == std::string_view::npos) return key_path;
  const bool index = key_path.find_first_not_of("0123456789", slash + 1) == std::string_view::npos;
  if (index && slash > 0) {
    const auto parent = key_path.rfind('/', slash - 1);
    slash = parent == std::string_view::npos ? 0 : parent + 1;
    return key_path.substr(slash);
  }
  return key_path.substr(slash + 1);
}

inline Error int_range_error(std::string_view key_path, const std::string& value, const std::string& why) {
  return Error(ErrorKind::Schema, "'" + std::string(key_name(key_path)) + "' = " + value + " " + why,
               ErrorContext::at_key(std::string(key_path)));
}

template <class T>
std::string range_text(T lo, T hi) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

// The shortest text that reads back as the same double ("9007199254740992", "1e+30", "inf").
inline std::string number_text(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

}  // namespace detail

// v as T when lo <= v <= hi; otherwise an Error naming `key_path` (the file is added by the
// caller's context, e.g. Error::with_file).
template <std::integral T, std::integral U>
T int_in_range(U v, std::string_view key_path, T lo = std::numeric_limits<T>::min(),
               T hi = std::numeric_limits<T>::max()) {
  if (!std::in_range<T>(v))  // compares without wrapping, whatever the signedness
    throw detail::int_range_error(key_path, std::to_string(v),
                                  std::string("does not fit in ") + detail::int_type_name<T>());
  const T t = static_cast<T>(v);
  if (t < lo || t > hi)
    throw detail::int_range_error(key_path, std::to_string(v),
                                  "is out of range " + detail::range_text(lo, hi));
  return t;
}

// The same for a value read from a file: it must be an int (a bool, a float or a str is not
// a count), of any size.
template <std::integral T>
T int_in_range(const Value& v, std::string_view key_path, T lo = std::numeric_limits<T>::min(),
               T hi = std::numeric_limits<T>::max()) {
  if (!v.is_int())
    throw Error(
        ErrorKind::Schema,
        "'" + std::string(detail::key_name(key_path)) + "' is a " + kind_name(v.kind()) + ", not an int",
        ErrorContext::at_key(std::string(key_path)));
  const Int& i = v.as_big_int();
  if (!i.fits_int64())
    throw detail::int_range_error(key_path, i.to_string(),
                                  std::string("does not fit in ") + detail::int_type_name<T>());
  return int_in_range<T>(i.to_int64(), key_path, lo, hi);
}

// A number (a float, or a count kept in floating point such as Adam's float32 `step`)
// within [lo, hi]; NaN is outside every range.
inline double number_in_range(double d, std::string_view key_path,
                              double lo = -std::numeric_limits<double>::infinity(),
                              double hi = std::numeric_limits<double>::infinity()) {
  if (!(d >= lo && d <= hi))
    throw detail::int_range_error(
        key_path, detail::number_text(d),
        "is out of range [" + detail::number_text(lo) + ", " + detail::number_text(hi) + "]");
  return d;
}

// The same for a value read from a file: an int (of any size; as_number() cannot convert
// one beyond int64) or a float.
inline double number_in_range(const Value& v, std::string_view key_path,
                              double lo = -std::numeric_limits<double>::infinity(),
                              double hi = std::numeric_limits<double>::infinity()) {
  if (v.is_int()) {  // checked as an int, so that the message shows it exactly
    if (!v.as_big_int().fits_int64())
      throw detail::int_range_error(key_path, v.as_big_int().to_string(), "does not fit in int64");
    const auto d = static_cast<double>(v.as_int());
    if (!(d >= lo && d <= hi))
      throw detail::int_range_error(
          key_path, std::to_string(v.as_int()),
          "is out of range [" + detail::number_text(lo) + ", " + detail::number_text(hi) + "]");
    return d;
  }
  if (!v.is_number())
    throw Error(
        ErrorKind::Schema,
        "'" + std::string(detail::key_name(key_path)) + "' is a " + kind_name(v.kind()) + ", not a number",
        ErrorContext::at_key(std::string(key_path)));
  return number_in_range(v.as_number(), key_path, lo, hi);
}

// Runs f and returns its result; an Error it throws gets `file` as its file (when it has
// none), so that a range error names both the key and the checkpoint.
template <class F>
auto checked_in_file(const std::string& file, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw e.with_file(file);
  }
}

}  // namespace sgckpt
