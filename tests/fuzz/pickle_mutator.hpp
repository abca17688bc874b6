// tests/fuzz/pickle_mutator.hpp: a structure-aware mutator for pickles (fuzz_pickle).
//
// Byte-level mutation rarely produces the semantic shapes that broke the reader in round 2:
// a BUILD after a tensor rebuild, a rebuild nested in a rebuild, a stride-0 shape of 2^62,
// a key spelled twice in two string opcodes. This mutator works on whole opcodes: it
// deletes, duplicates and moves them, inserts snippets of torch's vocabulary at opcode
// boundaries, and replaces integer arguments with boundary values; one time in four it
// leaves the input to libFuzzer's byte-level mutations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace sgckpt_fuzz {

// Length of the opcode at p[0] with its argument, or 0 when it is unknown or truncated.
inline std::size_t opcode_length(const std::uint8_t* p, std::size_t n) {
  if (n == 0) return 0;
  auto sized = [&](std::size_t width) -> std::size_t {
    if (n < 1 + width) return 0;
    std::uint64_t len = 0;
    for (std::size_t i = 0; i < width; ++i) len |= std::uint64_t{p[1 + i]} << (8 * i);
    return len <= n - 1 - width ? 1 + width + static_cast<std::size_t>(len) : 0;
  };
  auto lines = [&](int count) -> std::size_t {
    std::size_t i = 1;
    for (int k = 0; k < count; ++k) {
      while (i < n && p[i] != '\n') ++i;
      if (i == n) return 0;
      ++i;
    }
    return i;
  };
  auto fixed = [&](std::size_t width) -> std::size_t { return n >= 1 + width ? 1 + width : 0; };
  switch (p[0]) {
    case 'K':
    case 'q':
    case 'h':
    case 0x80:
    case 0x82:
      return fixed(1);
    case 'M':
    case 0x83:
      return fixed(2);
    case 'J':
    case 'r':
    case 'j':
    case 0x84:
      return fixed(4);
    case 'G':
    case 0x95:
      return fixed(8);
    case 'U':
    case 0x8c:
    case 'C':
    case 0x8a:
      return sized(1);
    case 'T':
    case 'X':
    case 'B':
    case 0x8b:
      return sized(4);
    case 0x8d:
    case 0x8e:
    case 0x96:
      return sized(8);
    case 'I':
    case 'L':
    case 'F':
    case 'S':
    case 'V':
    case 'p':
    case 'g':
    case 'P':
      return lines(1);
    case 'c':
    case 'i':
      return lines(2);
    default:
      return 1;  // argument-less opcodes (and unknown bytes, taken one at a time)
  }
}

// Opcode boundaries of `data` (offsets, ending with data.size() when it parses to the end).
inline std::vector<std::size_t> opcode_boundaries(const std::uint8_t* data, std::size_t size) {
  std::vector<std::size_t> at{0};
  std::size_t pos = 0;
  while (pos < size) {
    const std::size_t len = opcode_length(data + pos, size - pos);
    if (len == 0) break;
    pos += len;
    at.push_back(pos);
  }
  return at;
}

// Snippets of the vocabulary torch's files are made of, and of the round-2 attacks.
inline const std::vector<std::string>& pickle_snippets() {
  static const std::vector<std::string> s = {
      std::string("b"),   // BUILD
      std::string("}b"),  // BUILD with {}
      std::string("ctorch._tensor\n_rebuild_from_type_v2\n"),
      std::string("ctorch._utils\n_rebuild_tensor_v2\n"),
      std::string("ctorch._utils\n_rebuild_parameter\n"),
      std::string("ctorch._utils\n_rebuild_parameter_with_state\n"),
      std::string("ctorch\nTensor\n"),
      std::string("ctorch\nFloatStorage\n"),
      std::string("ccollections\nOrderedDict\n"),
      std::string("(X\x07\x00\x00\x00storage", 13),
      std::string("\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40", 10),  // 2^62
      std::string("\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f", 10),  // 2^63 - 1
      std::string("K\x00\x85", 3),                                  // (0,)
      std::string("J\xff\xff\xff\xff", 5),                          // -1
      std::string("U\x02\xc3\xa9", 4),                              // 'é' as SHORT_BINSTRING
      std::string("X\x02\x00\x00\x00\xc3\xa9", 7),                  // 'é' as BINUNICODE
      std::string("U\x02w\xff", 4),                                 // not UTF-8
      std::string("h\x00", 2),
      std::string("q\x00", 2),
      std::string("\x94"),
      std::string("}"),
      std::string("]"),
      std::string(")"),
      std::string("("),
      std::string("t"),
      std::string("s"),
      std::string("u"),
      std::string("a"),
      std::string("e"),
      std::string("R"),
      std::string("Q"),
      std::string("\x85"),
      std::string("\x86"),
      std::string("\x87"),
      std::string("N"),
  };
  return s;
}

// One structure-aware mutation of data[0, size) in place (capacity max_size); returns the new
// size, or 0 to ask the caller for a byte-level mutation instead.
inline std::size_t mutate_pickle(std::uint8_t* data, std::size_t size, std::size_t max_size, unsigned seed) {
  std::mt19937 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const std::vector<std::size_t> at = opcode_boundaries(data, size);
  const std::size_t ops = at.size() - 1;
  if (ops == 0 || pick(4) == 0) return 0;
  std::string b(reinterpret_cast<const char*>(data), size);
  const std::size_t i = pick(ops);
  const std::string op = b.substr(at[i], at[i + 1] - at[i]);
  const std::size_t where = at[pick(at.size())];
  switch (pick(5)) {
    case 0:  // delete an opcode
      b.erase(at[i], op.size());
      break;
    case 1:  // duplicate an opcode elsewhere
      b.insert(where, op);
      break;
    case 2: {  // move an opcode
      b.erase(at[i], op.size());
      b.insert(std::min(where, b.size()), op);
      break;
    }
    case 3:  // insert a snippet
      b.insert(where, pickle_snippets()[pick(pickle_snippets().size())]);
      break;
    default: {  // an integer argument gets a boundary value
      static const std::uint32_t kValues[] = {0,    1,      2,          0x7F,        0x80,
                                              0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu};
      const std::uint32_t v = kValues[pick(sizeof kValues / sizeof kValues[0])];
      const char code = op[0];
      const std::size_t width = code == 'K' ? 1 : code == 'M' ? 2 : code == 'J' ? 4 : 0;
      if (width == 0) return 0;
      for (std::size_t k = 0; k < width; ++k) b[at[i] + 1 + k] = static_cast<char>(v >> (8 * k));
      break;
    }
  }
  if (b.size() > max_size || b.empty()) return 0;
  std::memcpy(data, b.data(), b.size());
  return b.size();
}

}  // namespace sgckpt_fuzz
