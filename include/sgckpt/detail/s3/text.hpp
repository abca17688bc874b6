// sgckpt/detail/s3/text.hpp: the small text codecs S3 requests and answers need: AWS's URI
// encoding, hex, and the few elements read from S3's XML answers (docs/remote.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sgckpt::detail::s3 {

// AWS SigV4's URI encoding: unreserved characters (A-Z a-z 0-9 - _ . ~) as they are, '/'
// kept in paths (keep_slash), everything else %XX with upper-case hex.
inline std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

inline std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}

// XML character references back to text (&amp; &lt; &gt; &quot; &apos; &#N; &#xN;); an
// unknown or malformed one stays as it is.
inline std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const std::size_t semi = s[i] == '&' ? s.find(';', i) : std::string_view::npos;
    if (semi == std::string_view::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    std::optional<std::uint32_t> cp;
    if (ent == "amp")
      cp = '&';
    else if (ent == "lt")
      cp = '<';
    else if (ent == "gt")
      cp = '>';
    else if (ent == "quot")
      cp = '"';
    else if (ent == "apos")
      cp = '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      const bool hexa = ent[1] == 'x' || ent[1] == 'X';
      std::uint32_t v = 0;
      bool ok = ent.size() > (hexa ? 2u : 1u);
      for (std::size_t k = hexa ? 2 : 1; ok && k < ent.size(); ++k) {
        const char c = ent[k];
        int d = -1;
        if (c >= '0' && c <= '9')
          d = c - '0';
        else if (hexa && c >= 'a' && c <= 'f')
          d = c - 'a' + 10;
        else if (hexa && c >= 'A' && c <= 'F')
          d = c - 'A' + 10;
        ok = d >= 0 && v < 0x110000;
        v = v * (hexa ? 16 : 10) + static_cast<std::uint32_t>(d);
      }
      if (ok && v < 0x110000 && !(v >= 0xD800 && v < 0xE000)) cp = v;
    }
    if (!cp) {
      out += s[i];
      continue;
    }
    const std::uint32_t v = *cp;  // UTF-8
    if (v < 0x80) {
      out += static_cast<char>(v);
    } else if (v < 0x800) {
      out += static_cast<char>(0xC0 | (v >> 6));
      out += static_cast<char>(0x80 | (v & 0x3F));
    } else if (v < 0x10000) {
      out += static_cast<char>(0xE0 | (v >> 12));
      out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (v & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (v >> 18));
      out += static_cast<char>(0x80 | ((v >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (v & 0x3F));
    }
    i = semi;
  }
  return out;
}

// The raw contents of every <tag>...</tag> in `xml`, in order. S3's answers are flat enough
// for this (no CDATA, no attributes on the elements read); nested elements of the same name
// do not occur in them.
inline std::vector<std::string_view> xml_elements(std::string_view xml, std::string_view tag) {
  std::vector<std::string_view> out;
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  for (std::size_t pos = 0;;) {
    const std::size_t a = xml.find(open, pos);
    if (a == std::string_view::npos) break;
    const std::size_t b = xml.find(close, a + open.size());
    if (b == std::string_view::npos) break;
    out.push_back(xml.substr(a + open.size(), b - a - open.size()));
    pos = b + close.size();
  }
  return out;
}

// The text of the first <tag> in `xml`, unescaped; nullopt when there is none.
inline std::optional<std::string> xml_text(std::string_view xml, std::string_view tag) {
  const auto all = xml_elements(xml, tag);
  if (all.empty()) return std::nullopt;
  return xml_unescape(all.front());
}

inline std::string xml_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace sgckpt::detail::s3
