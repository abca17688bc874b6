// sgckpt/detail/pickle/reader.hpp: a restricted pickle machine for checkpoint data.
//
// It runs the pickle opcodes of protocols 2 to 5 that describe data (containers, scalars,
// strings, memo, persistent ids) and nothing else. A GLOBAL is only a name looked up in a
// fixed allowlist (tensor rebuild functions, storage classes, dtypes, OrderedDict, Counter,
// torch.Size); no Python object is ever created from a name, so nothing can execute.
// Everything else is refused with the opcode's byte offset. Container operations are
// type-checked (SETITEM only on dicts, APPEND only on lists: CVE-2026-24747), storage sizes
// and tensor views are checked against the records, and every resource is bounded by
// Limits: opcodes, memo, nodes, string bytes, nesting depth. Cycles are refused.
//
// The machine builds a graph of shared nodes (a memo reference yields the same object, as
// in Python), then converts it once into a sgckpt::Value tree.
//
// The parts, one file each: the opcode machine (machine.hpp, data opcodes only),
// torch's globals and their rebuild rules (globals.hpp, rebuild.hpp), the
// object graph (graph.hpp), the amplification budget that owns every counter
// (budget.hpp), and the conversion into values (convert.hpp).
#pragma once

#include <cstddef>
#include <span>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/pickle/convert.hpp"
#include "sgckpt/detail/pickle/machine.hpp"
#include "sgckpt/detail/pickle/rebuild.hpp"

namespace sgckpt::detail::pickle {

// Runs one pickle (up to its STOP) and returns its value. `consumed`, if given, receives
// the number of bytes read, for streams that hold several pickles back to back.
inline Value read(std::span<const std::byte> data, const StorageResolver& resolver,
                  const ReaderConfig& config = {}, std::size_t* consumed = nullptr) {
  Machine m(data, resolver, config);
  Node& root = m.run();
  Value v = Converter(m.budget(), config.limits)(root);
  if (consumed) *consumed = m.consumed();
  return v;
}

}  // namespace sgckpt::detail::pickle
