// sgckpt/core/float_text.hpp: a double as Python prints it.
//
// Checkpoints come from Python, and the text sgckpt writes about them (inspect, JSON, diff,
// the run log) shows floats as Python would: the shortest text that reads back as the same
// double, always with '.' or an exponent ("1.0", "0.1", "1e+16", "-0.0", "5e-324"); NaN and
// infinities as "nan", "inf", "-inf".
#pragma once

#include <charconv>
#include <cmath>
#include <string>

namespace sgckpt {

inline std::string float_text(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

}  // namespace sgckpt
