// tests/fuzz/fuzz_targets.hpp: the two fuzz targets, shared by the libFuzzer entry points
// (fuzz_pth.cpp, fuzz_pickle.cpp; clang -fsanitize=fuzzer) and by the plain corpus replay
// driver (fuzz_replay.cpp; any compiler), so that every normal build runs exactly the code
// the fuzzers ran.
//
// Contract under test (docs/security.md): for ANY input the reader either
// returns a value or throws sgckpt::Error. Only sgckpt::Error is caught here: anything else
// (std::bad_alloc, std::length_error, std::out_of_range, ...) escapes, and libFuzzer (or the
// replay driver) reports it as a bug. Crashes, sanitizer reports, timeouts and memory past
// the RSS limit are reported by the fuzzer itself.
//
// The limits are small on purpose (the defaults allow gigabytes): resource exhaustion must
// show up as a clean refusal well inside libFuzzer's -rss_limit_mb=2048 and -timeout=10.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "sgckpt/core/identical.hpp"
#include "sgckpt/sgckpt.hpp"

namespace sgckpt_fuzz {

inline sgckpt::Limits fuzz_limits() {
  sgckpt::Limits l;
  l.max_pickle_bytes = 16ull << 20;
  l.max_opcodes = 10'000'000;
  l.max_values = 1'000'000;
  l.max_memo = 1'000'000;
  l.max_string_bytes = 16ull << 20;
  l.max_zip_entries = 100'000;
  l.max_central_directory_bytes = 16ull << 20;
  l.max_inflated_record_bytes = 64ull << 20;
  // A few KB of deflated EMPTY_DICTs fill the default 256 MiB allowance, which under ASan
  // takes longer than libFuzzer's timeout; the budget logic is the same at 16 MiB.
  l.memory_allowance = 16ull << 20;
  // max_depth keeps its default: deep nesting must be refused by the real default.
  return l;
}

// Reads every byte a tensor can reach, so that a view lying outside its storage is an ASan
// report rather than a silent read. Bounded: an expanded view (stride 0) may have far more
// elements than bytes, so past a budget only the first and last elements are touched; and a
// storage is read whole once, however many tensors view it (tests/hostile/round2/
// amp_json_many_views.pt: 2000 views of one 16 MiB storage).
inline std::uint64_t touch_tensor(const sgckpt::Tensor& t, std::unordered_set<const void*>& storages_seen) {
  std::uint64_t sum = 0;
  if (!t.defined()) return 0;
  if (storages_seen.insert(t.storage().get()).second)
    for (std::byte b : t.storage()->bytes()) sum += std::to_integer<unsigned>(b);  // whole storage
  const std::size_t n = t.numel();
  if (n == 0) return sum;
  const std::size_t isz = t.itemsize();
  auto add = [&](const std::byte* p) {
    for (std::size_t i = 0; i < isz; ++i) sum += std::to_integer<unsigned>(p[i]);
  };
  if (n <= (1u << 16)) {
    t.for_each_element(add);
  } else {
    // The first and the farthest element (offset + sum((size_i - 1) * stride_i)).
    std::int64_t last = t.storage_offset();
    for (std::size_t d = 0; d < t.dim(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
    const std::byte* base = t.storage()->data();
    add(base + static_cast<std::size_t>(t.storage_offset()) * isz);
    add(base + static_cast<std::size_t>(last) * isz);
  }
  return sum;
}

inline std::uint64_t touch(const sgckpt::Value& v) {
  std::uint64_t sum = 0;
  std::unordered_set<const void*> storages_seen;
  v.visit_tensors([&](const std::string&, const sgckpt::TensorValue<sgckpt::Tensor>& tv) {
    sum += touch_tensor(tv.tensor, storages_seen);
  });
  return sum;
}

inline volatile std::uint64_t g_sink = 0;

// ---- Differential checks ------------------------------------------------------------------
// An accepted file must read the same through every path (copy and zero-copy mmap), and
// what sgckpt writes must read back as the same value: a difference is a parser
// differential, the class of bug that makes a reviewed file deliver other weights.

// Deep equality of two value trees (sgckpt::identical), except that a tensor view with more
// than 2^16 elements (possibly stride-0 over 2^62) compares its first and last elements only.
inline bool same_tensor(const sgckpt::Tensor& x, const sgckpt::Tensor& y) {
  if (x.dtype() != y.dtype() || x.shape() != y.shape()) return false;
  if (x.numel() <= (1u << 16)) return x.equal(y);
  std::vector<std::int64_t> first(x.dim(), 0), last(x.shape());
  for (auto& i : last) --i;
  const std::size_t isz = x.itemsize();
  auto at = [&](const sgckpt::Tensor& t, const std::vector<std::int64_t>& idx) {
    std::int64_t off = t.storage_offset();
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
    return t.storage()->data() + static_cast<std::size_t>(off) * isz;
  };
  return std::memcmp(at(x, first), at(y, first), isz) == 0 && std::memcmp(at(x, last), at(y, last), isz) == 0;
}

inline bool same_value(const sgckpt::Value& a, const sgckpt::Value& b) {
  return !sgckpt::first_difference(
      a, b, [](const sgckpt::Tensor& x, const sgckpt::Tensor& y) { return same_tensor(x, y); });
}

[[noreturn]] inline void differential(const char* what) {
  std::fprintf(stderr, "sgckpt fuzz: DIFFERENTIAL: %s\n", what);
  std::abort();
}

// What sgckpt writes for `v` must read back as `v` (when the writer accepts it).
inline void check_round_trip(const sgckpt::Value& v) {
  std::vector<std::byte> image;
  try {
    image = sgckpt::save_to_memory(v);
  } catch (const sgckpt::Error&) {
    return;  // not every readable value is writable (e.g. dtypes without a storage class)
  }
  sgckpt::LoadOptions opt;
  opt.limits = fuzz_limits();
  sgckpt::Value back;
  try {
    back = sgckpt::load(std::span<const std::byte>(image), opt, "round trip");
  } catch (const sgckpt::Error& e) {
    std::fprintf(stderr, "sgckpt fuzz: the writer's output is refused: %s\n", e.what());
    differential("sgckpt cannot read what it wrote");
  }
  if (!same_value(v, back)) differential("save + load changed the value");
}

// Whole reader: sniffing, zip (stored/deflate, zip64), legacy streams, pickle, tensor views.
inline int pth_one(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span(data, size));
  sgckpt::LoadOptions opt;
  opt.limits = fuzz_limits();
  // torch never checks CRCs, and a mutated data.pkl would almost always fail its CRC before
  // the pickle is parsed: the first pass skips the check so mutations reach the deep layers.
  opt.verify_crc = false;
  sgckpt::Value first;
  try {
    first = sgckpt::load(bytes, opt, "fuzz");
    g_sink = g_sink + touch(first);
  } catch (const sgckpt::Error&) {
    return 0;
  }
  check_round_trip(first);
  // Accepted: run the other paths too. CRC verification, and the zero-copy path of
  // mmap'ed files (storages viewing the buffer), from a 64-byte aligned copy like a mapping.
  try {
    opt.verify_crc = true;
    sgckpt::Value v = sgckpt::load(bytes, opt, "fuzz");
    g_sink = g_sink + touch(v);
  } catch (const sgckpt::Error&) {
  }
  try {
    std::shared_ptr<std::byte> copy(static_cast<std::byte*>(::operator new (size + 1, std::align_val_t{64})),
                                    [](std::byte* p) { ::operator delete (p, std::align_val_t{64}); });
    if (size) std::memcpy(copy.get(), data, size);
    opt.mmap = true;
    opt.verify_crc = false;
    sgckpt::Value v =
        sgckpt::detail::load_bytes(std::span<const std::byte>(copy.get(), size), copy, opt, "fuzz");
    g_sink = g_sink + touch(v);
    if (!same_value(first, v)) differential("the mmap path read other values than the copying path");
  } catch (const sgckpt::Error&) {
    differential("the mmap path refused what the copying path accepted");
  }
  return 0;
}

// Resolver for the pickle-only target: zeroed storages of the requested size, up to a cap.
inline std::shared_ptr<sgckpt::Storage> fuzz_resolver(const sgckpt::detail::pickle::StorageRequest& r) {
  constexpr std::uint64_t kCap = 1ull << 20;
  if (r.nbytes > kCap)
    throw sgckpt::Error("fuzz resolver: storage of " + std::to_string(r.nbytes) + " bytes refused");
  return sgckpt::Storage::zeros(static_cast<std::size_t>(r.nbytes));
}

// The pickle machine alone, in zip mode and (for the same bytes) legacy mode, where storage
// persistent ids are 6-tuples with view metadata.
inline int pickle_one(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span(data, size));
  for (bool legacy : {false, true}) {
    sgckpt::detail::pickle::ReaderConfig cfg;
    cfg.limits = fuzz_limits();
    cfg.legacy = legacy;
    try {
      std::size_t used = 0;
      sgckpt::Value v = sgckpt::detail::pickle::read(bytes, fuzz_resolver, cfg, &used);
      if (used > size) std::abort();  // consumed more than it was given
      g_sink = g_sink + touch(v);
      if (!legacy) check_round_trip(v);
    } catch (const sgckpt::Error&) {
    }
  }
  return 0;
}

}  // namespace sgckpt_fuzz
