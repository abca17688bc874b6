// sgckpt/engine/ops/conv2d.hpp: 2-D convolution (square stride and padding, no dilation, no
// groups), forward and backward, float32, NCHW, as torch.nn.functional.conv2d.
//
// Method: im2col + GEMM. For one image x[C,H,W] the column matrix col[C*R*S, P*Q] holds, in
// row (c,r,s) and column (p,q), the input pixel under kernel tap (r,s) of output pixel (p,q)
// (zero in the padding). Then
//   forward:   y[K, P*Q]  = W[K, C*R*S] · col            (+ bias[k] on row k)
//   backward:  dW        += dy[K, P*Q] · colᵀ
//              dcol       = Wᵀ · dy,  dx = col2im(dcol)   (col2im sums taps back into pixels)
//              db[k]     += Σ dy[k, :]
// Small feature maps (deep layers: P*Q = 16 or 64) make thin GEMMs, so several images are
// laid side by side in one column matrix, col[C*R*S, G*P*Q], G images per GEMM.
//
// The column matrix is never stored whole: the GEMM asks for it piece by piece
// (sgemm_implicit_b) and fill_col_rows / fill_col_cols write those pieces straight from the
// images into the GEMM's packed layout. Writing col to memory and reading it back cost more
// than a tenth of a training step (it is 9x the image for 3x3 kernels and outgrows the caches).
// Only the backward's dcol is stored, for col2im.
//
// Threads: groups of images are split over parallel_for; each thread has its own buffers and
// its own partial dW / db, summed in thread order at the end (deterministic for a given thread
// count).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "sgckpt/engine/ops/gemm.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"
#include "sgckpt/engine/parallel.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sgckpt::engine::ops {

namespace detail {

// A GEMM should have at least this many columns to run near full speed.
inline constexpr std::int64_t kMinGemmColumns = 256;

inline std::int64_t images_per_gemm(const Conv2dShape& s) {
  if (s.images_per_gemm > 0) return std::min(s.images_per_gemm, s.N);
  const std::int64_t pq = s.P() * s.Q();
  std::int64_t g = (kMinGemmColumns + pq - 1) / pq;
  // ... but keep at least one group per thread.
  const std::int64_t per_thread = (s.N + num_threads() - 1) / num_threads();
  return std::clamp<std::int64_t>(std::min(g, per_thread), 1, s.N);
}

// Output positions o in [0, out_len) whose input position o*stride - pad + tap lies in
// [0, in_len) form the range [lo, hi).
inline void valid_range(std::int64_t out_len, std::int64_t in_len, std::int64_t stride, std::int64_t pad,
                        std::int64_t tap, std::int64_t& lo, std::int64_t& hi) {
  const std::int64_t first = pad - tap;  // need o*stride >= first
  lo = first > 0 ? (first + stride - 1) / stride : 0;
  const std::int64_t end = in_len + pad - tap;  // need o*stride < end
  hi = end > 0 ? (end + stride - 1) / stride : 0;
  lo = std::min(lo, out_len);
  hi = std::clamp(hi, lo, out_len);
}

inline std::unique_ptr<float[]> scratch(std::int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<std::size_t>(std::max<std::int64_t>(n, 1))]);
}

}  // namespace detail

namespace detail {

// The column matrix of G images side by side, cut for one piece of the GEMM: which input row
// each of its rows (c, r, t) reads and which output pixels its columns are. Computed once per
// piece, so the copy loops do no divisions.
struct ColTap {         // a row (c, r, t) of col
  std::int64_t offset;  // c * H * W: channel c's plane
  std::int64_t r, t;
  std::int64_t q_lo, q_hi;  // outputs q with an input column inside the image (valid_range)
};
struct ColRun {         // consecutive columns of col within one output row
  std::int64_t offset;  // img * C * H * W: image img
  std::int64_t oh, ow;  // its first output pixel
  std::int64_t len;     // columns
  std::int64_t at;      // index of its first column in the piece
};

// Rows [p0, p0 + n) of col.
inline void col_taps(const Conv2dShape& s, std::int64_t p0, std::int64_t n, std::vector<ColTap>& taps) {
  const std::int64_t Q = s.Q();
  taps.resize(static_cast<std::size_t>(n));
  std::int64_t c = p0 / (s.R * s.S), r = p0 / s.S % s.R, t = p0 % s.S;
  for (auto& tap : taps) {
    tap.offset = c * s.H * s.W, tap.r = r, tap.t = t;
    valid_range(Q, s.W, s.stride, s.pad, t, tap.q_lo, tap.q_hi);
    if (++t == s.S) {
      t = 0;
      if (++r == s.R) r = 0, ++c;
    }
  }
}

// Columns [j0, j0 + n) of col, split at output rows and images.
inline void col_runs(const Conv2dShape& s, std::int64_t j0, std::int64_t n, std::vector<ColRun>& runs) {
  const std::int64_t Q = s.Q(), PQ = s.P() * Q, CHW = s.C * s.H * s.W;
  runs.clear();
  std::int64_t img = j0 / PQ, oh = j0 % PQ / Q, ow = j0 % Q;
  for (std::int64_t at = 0; at < n;) {
    const std::int64_t len = std::min(Q - ow, n - at);
    runs.push_back({img * CHW, oh, ow, len, at});
    at += len, ow = 0;
    if (++oh == s.P()) oh = 0, ++img;
  }
}

// out[i] = col[tap][run.at + i] for i < run.len: input pixels of one input row (zero where
// the kernel overhangs the image).
inline void gather_run(const float* x, const Conv2dShape& s, const ColTap& tap, const ColRun& run,
                       float* out) {
  const std::int64_t ih = run.oh * s.stride - s.pad + tap.r;
  const std::int64_t end = run.ow + run.len;
  const std::int64_t a = std::clamp(tap.q_lo, run.ow, end), b = std::clamp(tap.q_hi, a, end);
  if (ih < 0 || ih >= s.H || a == b) {
    std::fill(out, out + run.len, 0.0f);
    return;
  }
  std::fill(out, out + (a - run.ow), 0.0f);
  // input column of output q: q * stride - pad + t
  const float* src = x + run.offset + tap.offset + ih * s.W + a * s.stride - s.pad + tap.t;
  float* dst = out + (a - run.ow);
  if (s.stride == 1)
    std::copy(src, src + (b - a), dst);
  else
    for (std::int64_t i = 0; i < b - a; ++i) dst[i] = src[i * s.stride];
  std::fill(out + (b - run.ow), out + run.len, 0.0f);
}

// Stride 1 with as many output columns as input columns ('same' padding): output pixel pix of
// tap (r, t) reads input pixel pix + (r - pad) * W + (t - pad) of the plane. So a tap's row of
// col is one shifted copy of the plane, then zeros where the kernel overhangs: no per-output-
// row work, which on 4x4 .. 32x32 maps was most of the cost of building col.
inline bool shifted_copy_applies(const Conv2dShape& s) {
  return s.stride == 1 && s.Q() == s.W;
}

// out[i] = col[tap][pix0 + i] for i < len, for output pixels [pix0, pix0 + len) of one image
// whose channel plane is `plane` (shifted_copy_applies).
inline void gather_shifted(const float* plane, const Conv2dShape& s, const ColTap& tap, std::int64_t pix0,
                           std::int64_t len, float* out) {
  const std::int64_t Q = s.Q(), HW = s.H * s.W, end = pix0 + len;
  const std::int64_t shift = (tap.r - s.pad) * s.W + (tap.t - s.pad);
  std::int64_t p_lo, p_hi;  // output rows whose input row is inside the image
  valid_range(s.P(), s.H, 1, s.pad, tap.r, p_lo, p_hi);
  // Outside [lo, hi) every output pixel is in the padding; inside, the copy stays in the plane
  // and only the overhanging columns are wrong (they read a neighbouring row): zeroed after.
  const std::int64_t lo = std::clamp(std::max(p_lo * Q, -shift), pix0, end);
  const std::int64_t hi = std::clamp(std::min(p_hi * Q, HW - shift), lo, end);
  std::fill(out, out + (lo - pix0), 0.0f);
  std::copy(plane + lo + shift, plane + hi + shift, out + (lo - pix0));
  std::fill(out + (hi - pix0), out + len, 0.0f);
  if (tap.q_lo == 0 && tap.q_hi == Q) return;
  for (std::int64_t row = lo / Q * Q; row < hi; row += Q) {
    for (std::int64_t pix = std::max(row, lo); pix < std::min(row + tap.q_lo, hi); ++pix)
      out[pix - pix0] = 0.0f;
    for (std::int64_t pix = std::max(row + tap.q_hi, lo); pix < std::min(row + Q, hi); ++pix)
      out[pix - pix0] = 0.0f;
  }
}

// out[i] = col[tap][j0 + i] for i < n. runs: col_runs(s, j0, n), unless shifted_copy_applies.
inline void col_row(const float* x, const Conv2dShape& s, const ColTap& tap, std::int64_t j0, std::int64_t n,
                    const std::vector<ColRun>& runs, float* out) {
  if (!shifted_copy_applies(s)) {
    for (const auto& run : runs) gather_run(x, s, tap, run, out + run.at);
    return;
  }
  const std::int64_t PQ = s.P() * s.Q(), CHW = s.C * s.H * s.W;
  for (std::int64_t j = j0; j < j0 + n;) {  // one piece per image
    const std::int64_t img = j / PQ, pix = j - img * PQ, len = std::min(PQ - pix, j0 + n - j);
    gather_shifted(x + img * CHW + tap.offset, s, tap, pix, len, out + (j - j0));
    j += len;
  }
}

}  // namespace detail

// The block of the column matrix col of the images x[0..G) side by side (as im2col with
// ld = G*P*Q) that the forward GEMM asks for: col[p0 + p][j0 + j] for p < kc, j < n, written
// to panel_at(dst, kc, width, p, j).
inline void fill_col_rows(const float* x, const Conv2dShape& s, std::int64_t p0, std::int64_t kc,
                          std::int64_t j0, std::int64_t n, float* dst, std::int64_t width) {
  thread_local std::vector<detail::ColTap> taps;
  thread_local std::vector<detail::ColRun> runs;
  thread_local std::vector<float> row;
  detail::col_taps(s, p0, kc, taps);
  if (!detail::shifted_copy_applies(s)) detail::col_runs(s, j0, n, runs);
  if (width < n) row.resize(static_cast<std::size_t>(n));
  for (std::int64_t p = 0; p < kc; ++p) {
    const detail::ColTap& tap = taps[static_cast<std::size_t>(p)];
    if (width >= n) {  // one panel: the row goes straight in
      detail::col_row(x, s, tap, j0, n, runs, panel_at(dst, kc, width, p, 0));
      continue;
    }
    detail::col_row(x, s, tap, j0, n, runs, row.data());
    for (std::int64_t j = 0; j < n; j += width)
      std::copy_n(row.data() + j, std::min(width, n - j), panel_at(dst, kc, width, p, j));
  }
}

// The block of colᵀ (B of the dW GEMM): colᵀ[p0 + p][j0 + j] = col[j0 + j][p0 + p] for p < kc,
// j < n, written to panel_at(dst, kc, width, p, j).
inline void fill_col_cols(const float* x, const Conv2dShape& s, std::int64_t p0, std::int64_t kc,
                          std::int64_t j0, std::int64_t n, float* dst, std::int64_t width) {
  thread_local std::vector<detail::ColTap> taps;
  thread_local std::vector<detail::ColRun> runs;
  thread_local std::vector<float> row;
  detail::col_taps(s, j0, n, taps);
  if (!detail::shifted_copy_applies(s)) detail::col_runs(s, p0, kc, runs);
  // Four rows of col at a time, transposed in 4x4 tiles into the 4 adjacent columns they fill
  // (which share a panel: widths are multiples of 4, or one panel holds everything): one
  // store per 4 floats instead of a store per float at a stride.
  row.resize(static_cast<std::size_t>(4 * kc));
  float* r = row.data();
  std::int64_t j = 0;
#if defined(__SSE2__)
  if (width % 4 == 0 || width >= n)
    for (; j + 4 <= n; j += 4) {
      for (std::int64_t i = 0; i < 4; ++i)
        detail::col_row(x, s, taps[static_cast<std::size_t>(j + i)], p0, kc, runs, r + i * kc);
      float* out = panel_at(dst, kc, width, 0, j);
      std::int64_t p = 0;
      for (; p + 4 <= kc; p += 4) {
        __m128 a = _mm_loadu_ps(r + p), b = _mm_loadu_ps(r + kc + p);
        __m128 c = _mm_loadu_ps(r + 2 * kc + p), d = _mm_loadu_ps(r + 3 * kc + p);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        _mm_storeu_ps(out + p * width, a);
        _mm_storeu_ps(out + (p + 1) * width, b);
        _mm_storeu_ps(out + (p + 2) * width, c);
        _mm_storeu_ps(out + (p + 3) * width, d);
      }
      for (; p < kc; ++p)
        for (std::int64_t i = 0; i < 4; ++i) out[p * width + i] = r[i * kc + p];
    }
#endif
  for (; j < n; ++j) {
    detail::col_row(x, s, taps[static_cast<std::size_t>(j)], p0, kc, runs, r);
    float* out = panel_at(dst, kc, width, 0, j);
    for (std::int64_t p = 0; p < kc; ++p) out[p * width] = r[p];
  }
}

// The adjoint of im2col: dx[c][ih][iw] += every col entry that im2col read from (c, ih, iw).
inline void col2im(const float* col, std::int64_t ld, float* dx, const Conv2dShape& s) {
  const std::int64_t P = s.P(), Q = s.Q();
  for (std::int64_t c = 0; c < s.C; ++c)
    for (std::int64_t r = 0; r < s.R; ++r) {
      std::int64_t p_lo, p_hi;
      detail::valid_range(P, s.H, s.stride, s.pad, r, p_lo, p_hi);
      for (std::int64_t t = 0; t < s.S; ++t) {
        std::int64_t q_lo, q_hi;
        detail::valid_range(Q, s.W, s.stride, s.pad, t, q_lo, q_hi);
        const float* row = col + ((c * s.R + r) * s.S + t) * ld;
        for (std::int64_t p = p_lo; p < p_hi; ++p) {
          float* dst = dx + (c * s.H + p * s.stride - s.pad + r) * s.W;  // input row
          const float* src = row + p * Q;
          if (s.stride == 1) {
            const std::int64_t off = t - s.pad;
            for (std::int64_t q = q_lo; q < q_hi; ++q) dst[q + off] += src[q];
          } else {
            for (std::int64_t q = q_lo; q < q_hi; ++q) dst[q * s.stride - s.pad + t] += src[q];
          }
        }
      }
    }
}

// y[N,K,P,Q] = conv2d(x[N,C,H,W], w[K,C,R,S]) + b[K] (b may be null).
inline void conv2d_forward(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s) {
  const std::int64_t PQ = s.P() * s.Q(), CRS = s.CRS(), CHW = s.C * s.H * s.W;
  const std::int64_t G = detail::images_per_gemm(s);
  const std::int64_t groups = (s.N + G - 1) / G;

  parallel_for(groups, [&](std::int64_t g_begin, std::int64_t g_end, int) {
    auto tmp = detail::scratch(G > 1 ? s.K * G * PQ : 0);
    for (std::int64_t grp = g_begin; grp < g_end; ++grp) {
      const std::int64_t n0 = grp * G, g = std::min(G, s.N - n0), ld = g * PQ;
      const float* xg = x + n0 * CHW;
      // 1. Y[K, g*PQ] = W · col, straight into y when g == 1; col is the image itself for a
      //    pointwise conv of one image, else produced on the fly
      float* Y = g == 1 ? y + n0 * s.K * PQ : tmp.get();
      if (g == 1 && s.is_pointwise()) {
        sgemm(false, false, s.K, ld, CRS, 1.0f, w, CRS, xg, ld, 0.0f, Y, ld);
      } else {
        sgemm_implicit_b(
            false, s.K, ld, CRS, 1.0f, w, CRS,
            [&](std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t n, float* dst,
                std::int64_t width) { fill_col_rows(xg, s, p0, kc, j0, n, dst, width); },
            0.0f, Y, ld);
      }
      // 2. scatter Y's image blocks to y[n] and add the bias
      for (std::int64_t j = 0; j < g; ++j)
        for (std::int64_t k = 0; k < s.K; ++k) {
          float* out = y + ((n0 + j) * s.K + k) * PQ;
          if (g > 1) std::memcpy(out, Y + k * ld + j * PQ, static_cast<std::size_t>(PQ) * sizeof(float));
          if (b != nullptr)
            for (std::int64_t i = 0; i < PQ; ++i) out[i] += b[k];
        }
    }
  });
}

// Backward of conv2d_forward given dy[N,K,P,Q] and the forward's x and w:
//   dx[N,C,H,W]  = dL/dx   (overwritten; skipped when dx is null)
//   dw[K,C,R,S] += dL/dw   (accumulated, as torch accumulates .grad)
//   db[K]       += dL/db   (accumulated; skipped when db is null)
inline void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                            const Conv2dShape& s) {
  const std::int64_t PQ = s.P() * s.Q(), CRS = s.CRS(), CHW = s.C * s.H * s.W;
  const std::int64_t G = detail::images_per_gemm(s);
  const std::int64_t groups = (s.N + G - 1) / G;
  const int chunks = parallel_chunks(groups);
  // Thread 0 accumulates into dw / db directly, thread t > 0 into its own partial sums.
  std::vector<std::vector<float>> dw_part(static_cast<std::size_t>(std::max(chunks, 1)));
  std::vector<std::vector<double>> db_part(dw_part.size());

  parallel_for(groups, [&](std::int64_t g_begin, std::int64_t g_end, int t) {
    float* dwt = dw;
    if (t > 0) {
      dw_part[static_cast<std::size_t>(t)].assign(static_cast<std::size_t>(s.K * CRS), 0.0f);
      dwt = dw_part[static_cast<std::size_t>(t)].data();
    }
    std::vector<double>& dbt = db_part[static_cast<std::size_t>(t)];
    dbt.assign(static_cast<std::size_t>(s.K), 0.0);
    auto dcol = detail::scratch(dx != nullptr ? CRS * G * PQ : 0);
    auto dyg = detail::scratch(G > 1 ? s.K * G * PQ : 0);

    for (std::int64_t grp = g_begin; grp < g_end; ++grp) {
      const std::int64_t n0 = grp * G, g = std::min(G, s.N - n0), ld = g * PQ;
      // 1. dY[K, g*PQ]: the g images' output gradients side by side
      const float* dY = dy + n0 * s.K * PQ;
      if (g > 1) {
        for (std::int64_t j = 0; j < g; ++j)
          for (std::int64_t k = 0; k < s.K; ++k)
            std::memcpy(dyg.get() + k * ld + j * PQ, dy + ((n0 + j) * s.K + k) * PQ,
                        static_cast<std::size_t>(PQ) * sizeof(float));
        dY = dyg.get();
      }
      // 2. dW += dY · colᵀ, with col produced again from x (cheaper than keeping it from the
      //    forward)
      const float* xg = x + n0 * CHW;
      if (g == 1 && s.is_pointwise()) {
        sgemm(false, true, s.K, CRS, ld, 1.0f, dY, ld, xg, ld, 1.0f, dwt, CRS);
      } else {
        sgemm_implicit_b(
            false, s.K, CRS, ld, 1.0f, dY, ld,
            [&](std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t n, float* dst,
                std::int64_t width) { fill_col_cols(xg, s, p0, kc, j0, n, dst, width); },
            1.0f, dwt, CRS);
      }
      // 3. db += row sums of dY
      if (db != nullptr)
        for (std::int64_t k = 0; k < s.K; ++k) {
          double acc = 0.0;
          for (std::int64_t i = 0; i < ld; ++i) acc += dY[k * ld + i];
          dbt[static_cast<std::size_t>(k)] += acc;
        }
      // 4. dx = col2im(Wᵀ · dY)
      if (dx != nullptr) {
        if (g == 1 && s.is_pointwise()) {
          sgemm(true, false, CRS, ld, s.K, 1.0f, w, CRS, dY, ld, 0.0f, dx + n0 * CHW, ld);
        } else {
          sgemm(true, false, CRS, ld, s.K, 1.0f, w, CRS, dY, ld, 0.0f, dcol.get(), ld);
          for (std::int64_t j = 0; j < g; ++j) {
            float* dxn = dx + (n0 + j) * CHW;
            std::fill(dxn, dxn + CHW, 0.0f);
            col2im(dcol.get() + j * PQ, ld, dxn, s);
          }
        }
      }
    }
  });

  // Reduce the per-thread partial sums, in thread order.
  for (int t = 1; t < chunks; ++t) {
    const auto& part = dw_part[static_cast<std::size_t>(t)];
    for (std::int64_t i = 0; i < s.K * CRS; ++i) dw[i] += part[static_cast<std::size_t>(i)];
  }
  if (db != nullptr) {
    for (std::int64_t k = 0; k < s.K; ++k) {
      double acc = 0.0;
      for (int t = 0; t < chunks; ++t)
        acc += db_part[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)];
      db[k] += static_cast<float>(acc);
    }
  }
}

}  // namespace sgckpt::engine::ops
