// sgckpt/detail/zip/crc32.hpp: CRC-32 (the zip/zlib polynomial), fast enough for the save hot path.
//
// Every byte of a checkpoint goes through CRC-32 when it is saved (and, with verify_crc, when
// it is loaded). zlib 1.2.x computes it at about 2-3 GB/s, which is slower than writing to the
// page cache, so a save would spend more time on the checksum than on the write. On x86-64
// CPUs with PCLMULQDQ we fold 64 bytes per step with carry-less multiplication (Intel, "Fast
// CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction", 2009; the same
// constants as Linux's crc32-pclmul and Chromium's zlib), chosen at run time, and use zlib
// for everything else: short inputs, the last len % 16 bytes, and other CPUs.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "sgckpt/detail/cpu_features.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SGCKPT_CRC32_PCLMUL 1
#include <immintrin.h>
#endif

namespace sgckpt::detail::zip {

// zlib's crc32_z takes a size_t length (crc32 takes 32 bits): no chunking needed.
inline std::uint32_t crc32_zlib(std::uint32_t crc, const std::byte* p, std::size_t n) {
  return static_cast<std::uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(p), n));
}

#ifdef SGCKPT_CRC32_PCLMUL
// One folding step: x * k (both 64-bit halves, carry-less) + next.
__attribute__((target("pclmul,sse4.1"))) inline __m128i crc32_fold(__m128i x, __m128i k, __m128i next) {
  const __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
  const __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

// Folds n bytes (n >= 64, n % 16 == 0) into the zlib-style CRC `crc` and returns the new CRC.
// The four 128-bit lanes are folded 512 bits forward (k1, k2), then into one lane and 128
// bits at a time (k3, k4). The last lane X is congruent to the whole message modulo the
// polynomial, so the CRC of the message is the plain CRC of X's 16 bytes; zlib finishes
// that, which saves the Barrett reduction and its constants.
__attribute__((target("pclmul,sse4.1"))) inline std::uint32_t crc32_pclmul(std::uint32_t crc,
                                                                           const std::byte* p,
                                                                           std::size_t n) {
  const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
  const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
  const auto load = [](const std::byte* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  const auto fold = crc32_fold;

  __m128i x1 = load(p), x2 = load(p + 16), x3 = load(p + 32), x4 = load(p + 48);
  // zlib's pre-conditioning: the running register starts as ~crc, xored into the first bytes.
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128(static_cast<int>(~crc)));
  p += 64;
  n -= 64;
  while (n >= 64) {
    x1 = fold(x1, k1k2, load(p));
    x2 = fold(x2, k1k2, load(p + 16));
    x3 = fold(x3, k1k2, load(p + 32));
    x4 = fold(x4, k1k2, load(p + 48));
    p += 64;
    n -= 64;
  }
  x1 = fold(x1, k3k4, x2);
  x1 = fold(x1, k3k4, x3);
  x1 = fold(x1, k3k4, x4);
  while (n >= 16) {
    x1 = fold(x1, k3k4, load(p));
    p += 16;
    n -= 16;
  }
  alignas(16) std::byte rest[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(rest), x1);
  // crc32(0xFFFFFFFF, X) starts from a zero register and returns the conditioned result.
  return crc32_zlib(0xFFFFFFFFu, rest, 16);
}

#endif

// CRC-32 of `data`, continuing from `crc` (0 for a fresh start), exactly like zlib's crc32().
inline std::uint32_t crc32(std::uint32_t crc, std::span<const std::byte> data) {
  const std::byte* p = data.data();
  std::size_t n = data.size();
#ifdef SGCKPT_CRC32_PCLMUL
  // Below 64 bytes (one fold step) the table-driven zlib code is as fast.
  if (n >= 64 && detail::cpu_features().pclmul) {
    const std::size_t body = n & ~std::size_t{15};
    crc = crc32_pclmul(crc, p, body);
    p += body;
    n -= body;
  }
#endif
  return n ? crc32_zlib(crc, p, n) : crc;
}

inline std::uint32_t crc32(std::span<const std::byte> data) {
  return crc32(0, data);
}

}  // namespace sgckpt::detail::zip
