// sgckpt/engine/ops/gemm.hpp: the one matrix multiply of the CPU backend.
//
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
//
// on row-major float32 matrices with leading dimensions, as cblas_sgemm(CblasRowMajor, ...)
// (the CUDA backend calls cuBLAS with the same arguments). op(X) is X or X^T. Implemented with
// Eigen's GEMM, single-threaded: the callers parallelize over the batch. This is the only
// engine header that includes Eigen.
#pragma once

#include <Eigen/Core>

#include <cstdint>

namespace sgckpt::engine::ops {

inline void sgemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                  const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                  std::int64_t ldc) {
  using Stride = Eigen::OuterStride<>;
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Idx = Eigen::Index;
  if (M == 0 || N == 0) return;

  Eigen::Map<RowMat, 0, Stride> c(C, static_cast<Idx>(M), static_cast<Idx>(N), Stride(ldc));
  if (K == 0 || alpha == 0.0f) {
    if (beta == 0.0f)
      c.setZero();
    else if (beta != 1.0f)
      c *= beta;
    return;
  }
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

}  // namespace sgckpt::engine::ops
