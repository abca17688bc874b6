// sgckpt/engine/dist/dcp_group.hpp: a Collective as the group of a DCP save
// (sgckpt::dcp::Group, io/dcp/save.hpp): the library asks only for rank, size and an
// all-gather of byte strings, so it depends on no communication library.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "sgckpt/engine/dist/collective.hpp"
#include "sgckpt/io/dcp/save.hpp"

namespace sgckpt::engine::dist {

// The group of `c`'s ranks; `c` must outlive the returned group.
inline sgckpt::dcp::Group dcp_group(Collective& c) {
  sgckpt::dcp::Group g;
  g.rank = c.rank();
  g.size = c.world_size();
  g.all_gather = [&c](std::string mine) {
    const auto blobs = c.all_gather(std::as_bytes(std::span(mine.data(), mine.size())));
    std::vector<std::string> out;
    out.reserve(blobs.size());
    for (const auto& b : blobs) out.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
    return out;
  };
  return g;
}

}  // namespace sgckpt::engine::dist
