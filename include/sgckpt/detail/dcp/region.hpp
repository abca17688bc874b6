// sgckpt/detail/dcp/region.hpp: boxes of a tensor (a chunk, a shard, the region a rank asks for):
// their volume, their intersection, and the copy of a box between two tensors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "sgckpt/core/tensor.hpp"
#include "sgckpt/io/dcp/metadata.hpp"

namespace sgckpt::detail::dcp {

using sgckpt::dcp::Chunk;

[[noreturn]] inline void fail_at(ErrorKind kind, const std::string& fqn, const std::string& msg) {
  throw Error(kind, msg, ErrorContext::at_key(fqn));
}

// Chunks of one tensor compared pairwise (after sorting on the first dimension) before the
// check gives up: 100k chunks along dimension 1 would otherwise take 10^10 steps.
inline constexpr std::uint64_t kMaxChunkComparisons = 50'000'000;

// Elements in a box; nullopt when the count overflows 64 bits.
inline std::optional<std::uint64_t> volume(const Shape& sizes) {
  std::uint64_t n = 1;
  for (auto s : sizes)
    if (sgckpt::detail::mul_overflows(n, static_cast<std::uint64_t>(s), n)) return std::nullopt;
  return n;
}

// The box both `a` and `b` cover (same rank), or nullopt when they share no element.
inline std::optional<Chunk> intersect(const Chunk& a, const Chunk& b) {
  Chunk out;
  for (std::size_t d = 0; d < a.offsets.size(); ++d) {
    const std::int64_t lo = std::max(a.offsets[d], b.offsets[d]);
    const std::int64_t hi = std::min(a.offsets[d] + a.sizes[d], b.offsets[d] + b.sizes[d]);
    if (hi <= lo) return std::nullopt;
    out.offsets.push_back(lo);
    out.sizes.push_back(hi - lo);
  }
  return out;
}

// Copies the box `box` (in global coordinates) from `src`, which holds the box at `src_at`, into
// `dst`, which holds the box at `dst_at`. Same dtype; any strides.
inline void copy_box(const Tensor& src, const Shape& src_at, Tensor& dst, const Shape& dst_at,
                     const Chunk& box) {
  for (auto n : box.sizes)
    if (n == 0) return;
  const std::size_t es = src.itemsize();
  const std::size_t dims = box.sizes.size();
  const std::byte* s0 = src.raw_data();
  std::byte* d0 = dst.mutable_raw_data();
  if (dims == 0) {
    std::memcpy(d0, s0, es);
    return;
  }
  // Byte offsets of the box's first element in each tensor.
  std::int64_t so = 0, dof = 0;
  for (std::size_t d = 0; d < dims; ++d) {
    so += (box.offsets[d] - src_at[d]) * src.strides()[d];
    dof += (box.offsets[d] - dst_at[d]) * dst.strides()[d];
  }
  const bool runs = src.strides()[dims - 1] == 1 && dst.strides()[dims - 1] == 1;
  Shape idx(dims, 0);
  const std::int64_t inner = runs ? box.sizes[dims - 1] : 1;
  const std::size_t outer_dims = runs ? dims - 1 : dims;
  for (;;) {
    std::int64_t s = so, t = dof;
    for (std::size_t d = 0; d < outer_dims; ++d) {
      s += idx[d] * src.strides()[d];
      t += idx[d] * dst.strides()[d];
    }
    std::memcpy(d0 + t * static_cast<std::int64_t>(es), s0 + s * static_cast<std::int64_t>(es),
                static_cast<std::size_t>(inner) * es);
    std::size_t d = outer_dims;
    while (d > 0) {
      --d;
      if (++idx[d] < box.sizes[d]) break;
      idx[d] = 0;
      if (d == 0) return;
    }
    if (outer_dims == 0) return;
  }
}

inline void check_inside(const Chunk& c, const Shape& size, const std::string& fqn, ErrorKind kind) {
  if (c.offsets.size() != size.size() || c.sizes.size() != size.size())
    fail_at(kind, fqn,
            "a chunk of " + std::to_string(c.sizes.size()) + " dimensions in a tensor of " +
                std::to_string(size.size()));
  for (std::size_t d = 0; d < size.size(); ++d) {
    const std::int64_t o = c.offsets[d], n = c.sizes[d];
    if (o < 0 || n < 0 || o > size[d] || n > size[d] - o)
      fail_at(kind, fqn,
              "chunk [" + std::to_string(o) + ", +" + std::to_string(n) + ") of dimension " +
                  std::to_string(d) + " lies outside the tensor's size " + std::to_string(size[d]));
  }
}

inline bool overlap(const Chunk& a, const Chunk& b) {
  for (std::size_t d = 0; d < a.offsets.size(); ++d)
    if (a.offsets[d] >= b.offsets[d] + b.sizes[d] || b.offsets[d] >= a.offsets[d] + a.sizes[d]) return false;
  return true;
}
inline bool empty_box(const Chunk& c) {
  return std::any_of(c.sizes.begin(), c.sizes.end(), [](std::int64_t n) { return n == 0; });
}

// No element is in two chunks: torch would read it from either, and what a region holds
// would depend on the order of the reads.
inline void check_disjoint(const std::vector<Chunk>& chunks, const std::string& fqn, ErrorKind kind) {
  if (chunks.size() < 2 || chunks[0].offsets.empty()) {
    if (chunks.size() >= 2 && chunks[0].offsets.empty())
      fail_at(kind, fqn, "a 0-dimensional tensor with " + std::to_string(chunks.size()) + " chunks");
    return;
  }
  std::vector<std::size_t> order(chunks.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return chunks[a].offsets[0] < chunks[b].offsets[0]; });
  std::uint64_t comparisons = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Chunk& a = chunks[order[i]];
    if (empty_box(a)) continue;
    for (std::size_t j = i + 1; j < order.size() && chunks[order[j]].offsets[0] < a.offsets[0] + a.sizes[0];
         ++j) {
      if (++comparisons > kMaxChunkComparisons)
        throw Error(ErrorKind::Limit,
                    "too many chunks to check for overlaps (" + std::to_string(chunks.size()) + ")",
                    ErrorContext::at_key(fqn));
      if (!empty_box(chunks[order[j]]) && overlap(a, chunks[order[j]]))
        fail_at(kind, fqn,
                "chunks " + std::to_string(order[i]) + " and " + std::to_string(order[j]) + " overlap");
    }
  }
}

}  // namespace sgckpt::detail::dcp
