// sgckpt/engine/ops/gemm.hpp: the one matrix multiply of the CPU backend.
//
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
//
// on row-major float32 matrices with leading dimensions, as cblas_sgemm(CblasRowMajor, ...)
// (the CUDA backend calls cuBLAS with the same arguments). op(X) is X or X^T. Single-threaded:
// the callers parallelize over the batch. This is the only engine header that includes Eigen.
//
// Two implementations, chosen once per process:
//   * x86-64 with AVX2+FMA or AVX-512 (GCC / Clang): a packed GEMM in the style of BLIS / Goto
//     whose micro-kernels are compiled for those instruction sets with target attributes and
//     picked at run time (cpuid). The library stays portable (no -march flag needed) yet uses
//     the wide vector units: in a portable build Eigen only gets SSE2, 3-5x slower on the
//     convolutions that are nearly all of a ResNet's training step.
//   * anything else: Eigen's GEMM.
// $SGCKPT_GEMM=eigen|avx2|avx512 forces one (tests, comparing machines); an unsupported choice
// falls back to the best available.
//
// Determinism: each C element is the same sequence of float operations whatever the thread
// count or scheduling (the blocking depends only on M, N and K), so results are bit-identical
// run to run. Both micro-kernels accumulate every element the same way (one FMA per k, in
// order, in KC blocks), so AVX2 and AVX-512 machines agree bit for bit; Eigen (and so a
// machine without AVX2) rounds differently.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "sgckpt/detail/cpu_features.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__) && !defined(SGCKPT_NO_X86_KERNELS)
#define SGCKPT_GEMM_X86 1
#include <immintrin.h>
#else
#define SGCKPT_GEMM_X86 0
#endif

namespace sgckpt::engine::ops {

// The packed layout of a block of B: rows p < kc, columns j < n cut into panels of `width`
// columns, stored panel after panel, each panel row by row:
//   B[p0 + p][j0 + j] -> dst[(j / width) * kc * width + p * width + j % width].
// With width >= n it is plain row-major with leading dimension width.
inline float* panel_at(float* dst, std::int64_t kc, std::int64_t width, std::int64_t p, std::int64_t j) {
  return dst + (j / width) * kc * width + p * width + j % width;
}

namespace gemm_detail {

enum class Isa { Eigen, Avx2, Avx512 };

inline Isa detect_isa() {
#if SGCKPT_GEMM_X86
  const bool avx2 = sgckpt::detail::cpu_features().avx2_fma;
  const bool avx512 = sgckpt::detail::cpu_features().avx512f;
  Isa best = avx512 ? Isa::Avx512 : avx2 ? Isa::Avx2 : Isa::Eigen;
  if (const char* env = std::getenv("SGCKPT_GEMM"); env && *env) {
    if (std::strcmp(env, "eigen") == 0) return Isa::Eigen;
    if (std::strcmp(env, "avx2") == 0 && avx2) return Isa::Avx2;
    if (std::strcmp(env, "avx512") == 0 && avx512) return Isa::Avx512;
  }
  return best;
#else
  return Isa::Eigen;
#endif
}

// The implementation sgemm uses in this process.
inline Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

inline void sgemm_eigen(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
                        float alpha, const float* A, std::int64_t lda, const float* B, std::int64_t ldb,
                        float beta, float* C, std::int64_t ldc) {
  using Stride = Eigen::OuterStride<>;
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Idx = Eigen::Index;
  Eigen::Map<RowMat, 0, Stride> c(C, static_cast<Idx>(M), static_cast<Idx>(N), Stride(ldc));
  // A row-major X^T is the same memory as a column-major X: transposes cost nothing.
  auto run = [&](const auto& a, const auto& b) {
    if (beta == 0.0f) {
      c.noalias() = alpha * (a * b);
    } else {
      if (beta != 1.0f) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  const Idx m = static_cast<Idx>(M), n = static_cast<Idx>(N), k = static_cast<Idx>(K);
  if (!trans_a && !trans_b)
    run(Eigen::Map<const RowMat, 0, Stride>(A, m, k, Stride(lda)),
        Eigen::Map<const RowMat, 0, Stride>(B, k, n, Stride(ldb)));
  else if (!trans_a && trans_b)
    run(Eigen::Map<const RowMat, 0, Stride>(A, m, k, Stride(lda)),
        Eigen::Map<const ColMat, 0, Stride>(B, k, n, Stride(ldb)));
  else if (trans_a && !trans_b)
    run(Eigen::Map<const ColMat, 0, Stride>(A, m, k, Stride(lda)),
        Eigen::Map<const RowMat, 0, Stride>(B, k, n, Stride(ldb)));
  else
    run(Eigen::Map<const ColMat, 0, Stride>(A, m, k, Stride(lda)),
        Eigen::Map<const ColMat, 0, Stride>(B, k, n, Stride(ldb)));
}

#if SGCKPT_GEMM_X86

// ---- packing ---------------------------------------------------------------------------
// The micro-kernel reads an MR x kc sliver of op(A) as kc columns of MR floats and a kc x NR
// sliver of op(B) as kc rows of NR floats, both contiguous; rows / columns past the matrix
// edge are zero. Packing also absorbs the transposes.

template <int MR>
void pack_a(bool trans, const float* A, std::int64_t lda, std::int64_t i0, std::int64_t rows, std::int64_t p0,
            std::int64_t kc, float* dst) {
  if (rows < MR) std::fill(dst, dst + kc * MR, 0.0f);
  if (trans) {  // op(A)[i][p] = A[p][i]: each k is a contiguous run of rows
    for (std::int64_t p = 0; p < kc; ++p) {
      const float* src = A + (p0 + p) * lda + i0;
      for (std::int64_t i = 0; i < rows; ++i) dst[p * MR + i] = src[i];
    }
    return;
  }
  // op(A) = A: MR rows are interleaved. Weight matrices pass through here once per GEMM, and
  // for the deep layers (few columns, many weights) element by element this was a third of
  // the time of the multiply itself, hence 4x4 transposes.
  std::int64_t i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= rows; i += 4) {
    const float* s0 = A + (i0 + i) * lda + p0;
    std::int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
      __m128 a = _mm_loadu_ps(s0 + p), b = _mm_loadu_ps(s0 + lda + p);
      __m128 c = _mm_loadu_ps(s0 + 2 * lda + p), d = _mm_loadu_ps(s0 + 3 * lda + p);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      _mm_storeu_ps(dst + p * MR + i, a);
      _mm_storeu_ps(dst + (p + 1) * MR + i, b);
      _mm_storeu_ps(dst + (p + 2) * MR + i, c);
      _mm_storeu_ps(dst + (p + 3) * MR + i, d);
    }
    for (; p < kc; ++p)
      for (std::int64_t r = 0; r < 4; ++r) dst[p * MR + i + r] = s0[r * lda + p];
  }
#endif
  for (; i < rows; ++i) {
    const float* src = A + (i0 + i) * lda + p0;
    for (std::int64_t p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
  }
}

// The MR-high slivers of rows [i0, i0 + mc) of op(A), columns [p0, p0 + kc), one after the
// other (sliver s at dst + s * kc * MR).
template <int MR>
void pack_a_block(bool trans, const float* A, std::int64_t lda, std::int64_t i0, std::int64_t mc,
                  std::int64_t p0, std::int64_t kc, float* dst) {
  if (!trans) {
    for (std::int64_t ir = 0; ir < mc; ir += MR)
      pack_a<MR>(false, A, lda, i0 + ir, std::min<std::int64_t>(MR, mc - ir), p0, kc, dst + ir * kc);
    return;
  }
  // op(A) = Aᵀ: row p of A holds column p of every sliver. Reading it once for all slivers
  // keeps the reads sequential; sliver by sliver, each read 32 bytes of a row lda floats
  // from the last (a TLB miss per float, for transposed weights).
  const std::int64_t full = mc / MR * MR;
  if (full < mc) pack_a<MR>(true, A, lda, i0 + full, mc - full, p0, kc, dst + full * kc);
  for (std::int64_t p = 0; p < kc; ++p) {
    const float* src = A + (p0 + p) * lda + i0;
    float* out = dst + p * MR;
    for (std::int64_t ir = 0; ir < full; ir += MR)
      for (int i = 0; i < MR; ++i) out[ir * kc + i] = src[ir + i];  // fixed length: vectorized
  }
}

inline void pack_b(bool trans, const float* B, std::int64_t ldb, std::int64_t p0, std::int64_t kc,
                   std::int64_t j0, std::int64_t n, float* dst, std::int64_t width) {
  if (trans) {  // B[p][j] = stored[j][p]: read rows contiguously, write with stride width
    for (std::int64_t j = 0; j < n; ++j) {
      const float* src = B + (j0 + j) * ldb + p0;
      float* out = panel_at(dst, kc, width, 0, j);
      for (std::int64_t p = 0; p < kc; ++p) out[p * width] = src[p];
    }
  } else {
    for (std::int64_t p = 0; p < kc; ++p)
      for (std::int64_t j = 0; j < n; j += width)
        std::memcpy(panel_at(dst, kc, width, p, j), B + (p0 + p) * ldb + j0 + j,
                    static_cast<std::size_t>(std::min(width, n - j)) * sizeof(float));
  }
}

// ---- micro-kernels -----------------------------------------------------------------------
// C[MR, NR] (row stride ldc) = alpha * Σ_p a[p] ⊗ b[p] + beta * C, where beta == 0 does not
// read C (it may be uninitialized). The accumulators stay in registers over the kc steps.

// 8 x 32 with AVX-512: 16 zmm accumulators; per step two loads of b and eight broadcasts of a
// (folded into the FMAs), so the two FMA ports are the limit.
__attribute__((target("avx512f"))) inline void kernel_avx512_8x32(std::int64_t kc, const float* a,
                                                                  const float* b, float* c, std::int64_t ldc,
                                                                  float alpha, float beta) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b + p * 32), b1 = _mm512_loadu_ps(b + p * 32 + 16);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512 ai = _mm512_set1_ps(a[p * 8 + i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < 2; ++j) {
      float* cp = c + i * ldc + j * 16;
      __m512 r;
      if (beta == 0.0f)
        r = _mm512_mul_ps(acc[i][j], va);
      else if (beta == 1.0f)
        r = _mm512_fmadd_ps(acc[i][j], va, _mm512_loadu_ps(cp));
      else
        r = _mm512_fmadd_ps(acc[i][j], va, _mm512_mul_ps(_mm512_loadu_ps(cp), vb));
      _mm512_storeu_ps(cp, r);
    }
}

// 6 x 16 with AVX2: 12 ymm accumulators, 2 for b, 1 for the broadcast.
__attribute__((target("avx2,fma"))) inline void kernel_avx2_6x16(std::int64_t kc, const float* a,
                                                                 const float* b, float* c, std::int64_t ldc,
                                                                 float alpha, float beta) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * 16), b1 = _mm256_loadu_ps(b + p * 16 + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + p * 6 + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < 2; ++j) {
      float* cp = c + i * ldc + j * 8;
      __m256 r;
      if (beta == 0.0f)
        r = _mm256_mul_ps(acc[i][j], va);
      else if (beta == 1.0f)
        r = _mm256_fmadd_ps(acc[i][j], va, _mm256_loadu_ps(cp));
      else
        r = _mm256_fmadd_ps(acc[i][j], va, _mm256_mul_ps(_mm256_loadu_ps(cp), vb));
      _mm256_storeu_ps(cp, r);
    }
}

struct AlignedFree {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
inline std::unique_ptr<float[], AlignedFree> aligned_floats(std::int64_t n) {
  return std::unique_ptr<float[], AlignedFree>(static_cast<float*>(
      ::operator new[](static_cast<std::size_t>(n) * sizeof(float), std::align_val_t(64))));
}

// ---- the blocked driver ----------------------------------------------------------------
// Loops as BLIS: a KC x NC block of B is packed once (it stays in L2/L3), then for each
// MC x KC block of op(A) (packed, L2) every NR-wide sliver of B (L1) meets every MR-high
// sliver of A. K is split into KC blocks; block 0 applies beta, the later ones add.
// fill_b(p0, kc, j0, n, dst, NR) packs a block of B (see panel_at).
template <int MR, int NR, class Kernel, class FillB>
void sgemm_packed(Kernel kernel, bool trans_a, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                  const float* A, std::int64_t lda, FillB& fill_b, float beta, float* C, std::int64_t ldc) {
  constexpr std::int64_t KC = 256, MC = 24 * MR, NC = 64 * NR;
  auto round_up = [](std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; };
  const std::int64_t kc_max = std::min(K, KC);
  auto apack = aligned_floats(round_up(std::min(M, MC), MR) * kc_max);
  auto bpack = aligned_floats(round_up(std::min(N, NC), NR) * kc_max);
  alignas(64) float edge[MR * NR];

  for (std::int64_t jc = 0; jc < N; jc += NC) {
    const std::int64_t nc = std::min(NC, N - jc);
    for (std::int64_t pc = 0; pc < K; pc += KC) {
      const std::int64_t kc = std::min(KC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;
      if (nc % NR != 0) {  // the kernel reads the last panel in full: zero its overhang
        float* last = bpack.get() + nc / NR * NR * kc;
        std::fill(last, last + kc * NR, 0.0f);
      }
      fill_b(pc, kc, jc, nc, bpack.get(), std::int64_t{NR});
      for (std::int64_t ic = 0; ic < M; ic += MC) {
        const std::int64_t mc = std::min(MC, M - ic);
        pack_a_block<MR>(trans_a, A, lda, ic, mc, pc, kc, apack.get());
        for (std::int64_t jr = 0; jr < nc; jr += NR) {
          const std::int64_t cols = std::min<std::int64_t>(NR, nc - jr);
          const float* bp = bpack.get() + jr * kc;
          for (std::int64_t ir = 0; ir < mc; ir += MR) {
            const std::int64_t rows = std::min<std::int64_t>(MR, mc - ir);
            const float* ap = apack.get() + ir * kc;
            float* cp = C + (ic + ir) * ldc + jc + jr;
            if (rows == MR && cols == NR) {
              kernel(kc, ap, bp, cp, ldc, alpha, beta_k);
              continue;
            }
            // An edge tile: the raw sums aside, then merged into the part inside C with the
            // kernel's own rounding, so results do not depend on where the tile edges fall.
            kernel(kc, ap, bp, edge, NR, 1.0f, 0.0f);
            for (std::int64_t i = 0; i < rows; ++i)
              for (std::int64_t j = 0; j < cols; ++j) {
                float& out = cp[i * ldc + j];
                const float acc = edge[i * NR + j];
                out = beta_k == 0.0f   ? acc * alpha
                      : beta_k == 1.0f ? std::fma(acc, alpha, out)
                                       : std::fma(acc, alpha, out * beta_k);
              }
          }
        }
      }
    }
  }
}

#endif  // SGCKPT_GEMM_X86

// C = beta * C when there is nothing to multiply.
inline void scale_c(std::int64_t M, std::int64_t N, float beta, float* C, std::int64_t ldc) {
  for (std::int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f)
      std::fill(row, row + N, 0.0f);
    else if (beta != 1.0f)
      for (std::int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

}  // namespace gemm_detail

// The GEMM kernels in use: "avx512", "avx2" or "eigen" (the run log records it: two
// machines agree bit for bit only with the same ones, docs/engine.md).
inline const char* gemm_kernels() {
  switch (gemm_detail::isa()) {
    case gemm_detail::Isa::Avx512:
      return "avx512";
    case gemm_detail::Isa::Avx2:
      return "avx2";
    case gemm_detail::Isa::Eigen:
      return "eigen";
  }
  return "?";
}

// The CPU features the engine's loops choose between ("avx2+fma avx512f pclmul", or "none").
inline std::string cpu_features_text() {
  const auto& f = sgckpt::detail::cpu_features();
  std::string t;
  for (const auto& [has, name] :
       {std::pair{f.avx2_fma, "avx2+fma"}, {f.avx512f, "avx512f"}, {f.pclmul, "pclmul"}})
    if (has) t += (t.empty() ? "" : " ") + std::string(name);
  return t.empty() ? "none" : t;
}

// As sgemm below with B[K, N] not stored but produced block by block:
//   fill_b(p0, kc, j0, n, dst, width) writes B[p0 + p][j0 + j] for p < kc, j < n to
//   panel_at(dst, kc, width, p, j).
// Lets a convolution feed its column matrix straight from the image into the packed layout
// (no im2col matrix written to memory and read back). The Eigen path materializes B with one
// call fill_b(0, K, 0, N, buffer, N).
template <class FillB>
void sgemm_implicit_b(bool trans_a, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                      const float* A, std::int64_t lda, FillB&& fill_b, float beta, float* C,
                      std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_detail::scale_c(M, N, beta, C, ldc);
#if SGCKPT_GEMM_X86
  switch (gemm_detail::isa()) {
    case gemm_detail::Isa::Avx512:
      return gemm_detail::sgemm_packed<8, 32>(gemm_detail::kernel_avx512_8x32, trans_a, M, N, K, alpha, A,
                                              lda, fill_b, beta, C, ldc);
    case gemm_detail::Isa::Avx2:
      return gemm_detail::sgemm_packed<6, 16>(gemm_detail::kernel_avx2_6x16, trans_a, M, N, K, alpha, A, lda,
                                              fill_b, beta, C, ldc);
    case gemm_detail::Isa::Eigen:
      break;
  }
#endif
  std::unique_ptr<float[]> b(new float[static_cast<std::size_t>(K * N)]);
  fill_b(std::int64_t{0}, K, std::int64_t{0}, N, b.get(), N);
  gemm_detail::sgemm_eigen(trans_a, false, M, N, K, alpha, A, lda, b.get(), N, beta, C, ldc);
}

inline void sgemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                  const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                  std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return gemm_detail::scale_c(M, N, beta, C, ldc);
#if SGCKPT_GEMM_X86
  if (gemm_detail::isa() != gemm_detail::Isa::Eigen) {
    auto pack = [&](std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t n, float* dst,
                    std::int64_t width) { gemm_detail::pack_b(trans_b, B, ldb, p0, kc, j0, n, dst, width); };
    return sgemm_implicit_b(trans_a, M, N, K, alpha, A, lda, pack, beta, C, ldc);
  }
#endif
  gemm_detail::sgemm_eigen(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace sgckpt::engine::ops
