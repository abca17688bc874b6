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
// Threads: groups of images are split over parallel_for; each thread has its own column
// buffers and its own partial dW / db, summed in thread order at the end (deterministic for a
// given thread count).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "sgckpt/engine/ops/gemm.hpp"
#include "sgckpt/engine/parallel.hpp"

namespace sgckpt::engine::ops {

struct Conv2dShape {
  std::int64_t N = 1, C = 1, H = 1, W = 1;  // input [N, C, H, W]
  std::int64_t K = 1;                       // output channels
  std::int64_t R = 1, S = 1;                // kernel height and width
  std::int64_t stride = 1, pad = 0;
  std::int64_t images_per_gemm = 0;  // G; 0: chosen automatically

  std::int64_t P() const { return (H + 2 * pad - R) / stride + 1; }  // output height
  std::int64_t Q() const { return (W + 2 * pad - S) / stride + 1; }  // output width
  std::int64_t CRS() const { return C * R * S; }
  // 1x1, stride 1, no padding: the column matrix of one image is the image itself.
  bool is_pointwise() const { return R == 1 && S == 1 && stride == 1 && pad == 0; }
};

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

// col[(c*R + r)*S + t][p*Q + q] = x[c][p*stride - pad + r][q*stride - pad + t] (0 outside),
// for one image x[C,H,W]; rows of col are ld floats apart.
inline void im2col(const float* x, float* col, std::int64_t ld, const Conv2dShape& s) {
  const std::int64_t P = s.P(), Q = s.Q();
  for (std::int64_t c = 0; c < s.C; ++c)
    for (std::int64_t r = 0; r < s.R; ++r) {
      std::int64_t p_lo, p_hi;
      detail::valid_range(P, s.H, s.stride, s.pad, r, p_lo, p_hi);
      for (std::int64_t t = 0; t < s.S; ++t) {
        std::int64_t q_lo, q_hi;
        detail::valid_range(Q, s.W, s.stride, s.pad, t, q_lo, q_hi);
        float* row = col + ((c * s.R + r) * s.S + t) * ld;
        std::fill(row, row + p_lo * Q, 0.0f);
        for (std::int64_t p = p_lo; p < p_hi; ++p) {
          const float* src = x + (c * s.H + p * s.stride - s.pad + r) * s.W;  // input row
          float* dst = row + p * Q;
          std::fill(dst, dst + q_lo, 0.0f);
          if (s.stride == 1) {  // a contiguous run: lets the compiler vectorize
            const std::int64_t off = t - s.pad;
            for (std::int64_t q = q_lo; q < q_hi; ++q) dst[q] = src[q + off];
          } else {
            for (std::int64_t q = q_lo; q < q_hi; ++q) dst[q] = src[q * s.stride - s.pad + t];
          }
          std::fill(dst + q_hi, dst + Q, 0.0f);
        }
        std::fill(row + p_hi * Q, row + P * Q, 0.0f);
      }
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
    auto col = detail::scratch(CRS * G * PQ);
    auto tmp = detail::scratch(G > 1 ? s.K * G * PQ : 0);
    for (std::int64_t grp = g_begin; grp < g_end; ++grp) {
      const std::int64_t n0 = grp * G, g = std::min(G, s.N - n0), ld = g * PQ;
      // 1. the column matrix of the g images, side by side
      const float* cols = col.get();
      if (g == 1 && s.is_pointwise()) {
        cols = x + n0 * CHW;
      } else {
        for (std::int64_t j = 0; j < g; ++j) im2col(x + (n0 + j) * CHW, col.get() + j * PQ, ld, s);
      }
      // 2. Y[K, g*PQ] = W · col, straight into y when g == 1
      float* Y = g == 1 ? y + n0 * s.K * PQ : tmp.get();
      sgemm(false, false, s.K, ld, CRS, 1.0f, w, CRS, cols, ld, 0.0f, Y, ld);
      // 3. scatter Y's image blocks to y[n] and add the bias
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
    auto col = detail::scratch(CRS * G * PQ);
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
      // 2. the column matrix again (recomputing is cheaper than keeping it from forward)
      const float* cols = col.get();
      if (g == 1 && s.is_pointwise()) {
        cols = x + n0 * CHW;
      } else {
        for (std::int64_t j = 0; j < g; ++j) im2col(x + (n0 + j) * CHW, col.get() + j * PQ, ld, s);
      }
      // 3. dW += dY · colᵀ
      sgemm(false, true, s.K, CRS, ld, 1.0f, dY, ld, cols, ld, 1.0f, dwt, CRS);
      // 4. db += row sums of dY
      if (db != nullptr)
        for (std::int64_t k = 0; k < s.K; ++k) {
          double acc = 0.0;
          for (std::int64_t i = 0; i < ld; ++i) acc += dY[k * ld + i];
          dbt[static_cast<std::size_t>(k)] += acc;
        }
      // 5. dx = col2im(Wᵀ · dY)
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
