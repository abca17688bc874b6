// tests/io/pickle_builder.hpp: hand-made pickles for the reader's tests (hostile input is
// written opcode by opcode on purpose), and the reader run on them without storages.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "sgckpt/detail/pickle/reader.hpp"

namespace sgckpt::test {

namespace pickle = sgckpt::detail::pickle;
namespace op = pickle::op;

// A pickle under construction, for refusal tests (hostile input is hand-made on purpose).
struct P {
  // Filled in the body: GCC 12 -O2 misreads an initializer_list here (-Wmaybe-uninitialized).
  P() { b.assign({op::PROTO, std::uint8_t{2}}); }
  std::vector<std::uint8_t> b;
  P& raw(std::initializer_list<std::uint8_t> x) {
    b.insert(b.end(), x);
    return *this;
  }
  P& str(const std::string& s) {
    b.push_back(op::BINUNICODE);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(s.size() >> (8 * i)));
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  P& global(const std::string& m, const std::string& n) {
    b.push_back(op::GLOBAL);
    b.insert(b.end(), m.begin(), m.end());
    b.push_back('\n');
    b.insert(b.end(), n.begin(), n.end());
    b.push_back('\n');
    return *this;
  }
  P& i1(std::uint8_t v) { return raw({op::BININT1, v}); }
  P& stop() { return raw({op::STOP}); }
  std::span<const std::byte> bytes() const { return std::as_bytes(std::span(b)); }
};

inline std::shared_ptr<Storage> no_storage(const pickle::StorageRequest&) {
  throw Error("no storages here");
}

inline Value read(const P& p, const pickle::StorageResolver& r = no_storage, Limits lim = {}) {
  pickle::ReaderConfig cfg;
  cfg.limits = lim;
  return pickle::read(p.bytes(), r, cfg);
}

inline std::string refusal(const P& p, Limits lim = {}) {
  try {
    read(p, no_storage, lim);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace sgckpt::test
