// sgckpt/detail/json_cursor.hpp: reads JSON text from an untrusted file, one token at a time.
//
// The safetensors header is JSON. Its reader walks the text with this cursor and builds only
// what it needs, so memory stays proportional to the header (already bounded by its caller),
// nesting is bounded (kMaxDepth: skipped values too), and every failure is a corrupt Error at
// the byte offset where the text stops being what was expected. Strings must be valid UTF-8
// and their escapes valid (a \u surrogate must be a proper pair), as serde_json demands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sgckpt/core/error.hpp"
#include "sgckpt/detail/utf8.hpp"

namespace sgckpt::detail {

class JsonCursor {
 public:
  static constexpr int kMaxDepth = 64;

  // `text` starts at byte `base` of the file (for the offsets errors report).
  JsonCursor(std::string_view text, std::uint64_t base) : s_(text), base_(base) {}

  std::uint64_t offset() const noexcept { return base_ + i_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::Corrupt, "invalid JSON: " + what, ErrorContext::at_offset(offset()));
  }

  void skip_whitespace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool at_end() {
    skip_whitespace();
    return i_ == s_.size();
  }
  char peek() {
    skip_whitespace();
    if (i_ == s_.size()) fail("unexpected end of text");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "', found '" + s_[i_] + "'");
    ++i_;
  }

  // An object: calls member(key) with the cursor on each member's value, which member must
  // read. An empty object calls nothing.
  template <class F>
  void object(F&& member) {
    expect('{');
    if (peek() == '}') {
      ++i_;
      return;
    }
    for (;;) {
      const std::string key = string();
      expect(':');
      member(key);
      if (peek() == '}') {
        ++i_;
        return;
      }
      expect(',');
    }
  }

  // An array: calls element() with the cursor on each element.
  template <class F>
  void array(F&& element) {
    expect('[');
    if (peek() == ']') {
      ++i_;
      return;
    }
    for (;;) {
      element();
      if (peek() == ']') {
        ++i_;
        return;
      }
      expect(',');
    }
  }

  // A non-negative integer without sign, fraction or exponent that fits in 64 bits.
  std::uint64_t uint() {
    if (peek() < '0' || s_[i_] > '9') fail("expected a non-negative integer");
    if (s_[i_] == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9')
      fail("a number has a leading zero");
    std::uint64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[i_] - '0');
      if (v > (UINT64_MAX - d) / 10) fail("an integer does not fit in 64 bits");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E'))
      fail("expected an integer, found a fraction or an exponent");
    return v;
  }

  // A string, unescaped, as UTF-8.
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character inside a string");
      if (c == '\\') {
        escape(out);
        continue;
      }
      const Utf8Step step = utf8_step(s_, i_);
      if (step.kind != Utf8Step::Ascii && step.kind != Utf8Step::Valid) fail("a string is not valid UTF-8");
      out.append(s_.substr(i_, step.length));
      i_ += step.length;
    }
  }

  // Any value, read and dropped (members of a tensor entry that safetensors ignores).
  void skip_value(int depth = 0) {
    if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    switch (peek()) {
      case '{':
        object([&](const std::string&) { skip_value(depth + 1); });
        return;
      case '[':
        array([&] { skip_value(depth + 1); });
        return;
      case '"':
        (void)string();
        return;
      default:
        break;
    }
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return;
      }
    number();
  }

 private:
  void number() {
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    const std::size_t start = i_;
    while (i_ < s_.size() && ((s_[i_] >= '0' && s_[i_] <= '9') || s_[i_] == '.' || s_[i_] == 'e' ||
                              s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
      ++i_;
    if (i_ == start || s_[start] < '0' || s_[start] > '9') fail("expected a value");
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("a \\u escape needs four hex digits");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      const char h = s_[i_];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f')
        v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        v |= static_cast<unsigned>(h - 'A' + 10);
      else
        fail("a \\u escape needs four hex digits");
    }
    return v;
  }

  void escape(std::string& out) {
    if (++i_ >= s_.size()) fail("unterminated escape");
    const char e = s_[i_++];
    switch (e) {
      case '"':
      case '\\':
      case '/':
        out.push_back(e);
        return;
      case 'b':
        out.push_back('\b');
        return;
      case 'f':
        out.push_back('\f');
        return;
      case 'n':
        out.push_back('\n');
        return;
      case 'r':
        out.push_back('\r');
        return;
      case 't':
        out.push_back('\t');
        return;
      case 'u':
        break;
      default:
        fail(std::string("invalid escape '\\") + e + "'");
    }
    unsigned cp = hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail("a lone low surrogate in a \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (s_.substr(i_, 2) != "\\u") fail("a high surrogate without its low half");
      i_ += 2;
      const unsigned lo = hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail("a high surrogate without its low half");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string_view s_;
  std::uint64_t base_;
  std::size_t i_ = 0;
};

}  // namespace sgckpt::detail
