// tools/sgckpt/tensor_hash.hpp: a tensor's elements as a stream of byte runs, and their SHA-256.
//
// The bytes of a tensor are its elements in row-major order, each as its little-endian
// in-memory representation (what Tensor::contiguous_bytes() returns): bool one byte 0/1,
// float16/bfloat16 their 16 raw bits, complex interleaved real/imaginary. They are streamed
// straight from the storage (a memory mapping, possibly): a contiguous tensor is one run, a
// strided view is walked without copying the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sha256.hpp"

namespace sgckpt::tool {

// Calls sink(const std::byte* data, std::size_t n) with the tensor's element bytes in
// row-major order, in as few runs as the layout allows: one run for a contiguous tensor,
// one run per row when the innermost (collapsed) dimension is dense, else one per element.
template <class Sink>
void for_each_byte_run(const Tensor& t, Sink&& sink) {
  const std::size_t numel = t.numel();
  if (numel == 0) return;
  if (!t.storage() || t.storage()->data() == nullptr)
    throw Error("tensor with " + std::to_string(numel) + " elements has no storage");
  const std::size_t isz = t.itemsize();
  if (t.is_contiguous()) {
    sink(t.raw_data(), numel * isz);
    return;
  }
  // Drop size-1 dimensions and merge dimensions that are dense with respect to each other.
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
  for (std::size_t d = 0; d < t.dim(); ++d) {
    const std::int64_t size = t.shape()[d];
    const std::int64_t stride = t.strides()[d];
    if (size == 1) continue;
    if (!sizes.empty() && strides.back() == stride * size) {
      sizes.back() *= size;
      strides.back() = stride;
    } else {
      sizes.push_back(size);
      strides.push_back(stride);
    }
  }
  const std::byte* base = t.storage()->data();
  std::int64_t offset = t.storage_offset();
  if (sizes.empty()) {  // a single element
    sink(base + static_cast<std::size_t>(offset) * isz, isz);
    return;
  }
  const bool dense_rows = strides.back() == 1;
  const std::size_t run_elements = dense_rows ? static_cast<std::size_t>(sizes.back()) : 1;
  const std::size_t outer_dims = dense_rows ? sizes.size() - 1 : sizes.size();
  const std::size_t run_bytes = run_elements * isz;
  const std::size_t runs = numel / run_elements;

  // Short runs are gathered into a buffer so that the sink sees reasonably large chunks.
  constexpr std::size_t kGatherBelow = 4096;
  constexpr std::size_t kBufferBytes = 64 * 1024;
  std::vector<std::byte> buffer;
  if (run_bytes < kGatherBelow) buffer.reserve(kBufferBytes);

  std::vector<std::int64_t> index(outer_dims, 0);
  for (std::size_t r = 0; r < runs; ++r) {
    const std::byte* p = base + static_cast<std::size_t>(offset) * isz;
    if (run_bytes < kGatherBelow) {
      if (buffer.size() + run_bytes > kBufferBytes) {
        sink(static_cast<const std::byte*>(buffer.data()), buffer.size());
        buffer.clear();
      }
      buffer.insert(buffer.end(), p, p + run_bytes);
    } else {
      sink(p, run_bytes);
    }
    for (std::size_t d = outer_dims; d-- > 0;) {
      if (++index[d] < sizes[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (sizes[d] - 1);
      index[d] = 0;
    }
  }
  if (!buffer.empty()) sink(static_cast<const std::byte*>(buffer.data()), buffer.size());
}

// SHA-256 (lowercase hex) of the tensor's element bytes as described above. Bool elements
// are hashed as 0 or 1 whatever non-zero byte the storage holds.
inline std::string tensor_sha256(const Tensor& t) {
  Sha256 h;
  if (t.dtype() == DType::Bool) {
    std::byte normalized[4096];
    for_each_byte_run(t, [&](const std::byte* p, std::size_t n) {
      while (n > 0) {
        const std::size_t k = n < sizeof(normalized) ? n : sizeof(normalized);
        for (std::size_t i = 0; i < k; ++i)
          normalized[i] = p[i] != std::byte{0} ? std::byte{1} : std::byte{0};
        h.update(normalized, k);
        p += k;
        n -= k;
      }
    });
  } else {
    for_each_byte_run(t, [&](const std::byte* p, std::size_t n) { h.update(p, n); });
  }
  return h.hex();
}

}  // namespace sgckpt::tool
