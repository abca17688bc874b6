// kernels/linear_cublaslt.hpp: the cuBLASLt description of one float32 column-major matmul
// (operation and the three matrix layouts). Building it needs no device, so tests check it on
// any machine.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <string>

#include "check.hpp"

namespace sgckpt::cuda::detail {

struct LtGemm {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;

  // C (m x n) = op(A) * op(B): A stored (ta ? k x m : m x k) with leading dimension lda, B
  // stored (tb ? n x k : k x n) with ldb, C stored m x n with ld m.
  LtGemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t lda,
         std::int64_t ldb) {
    if (m < 1 || n < 1 || k < 1) throw Error("cuBLASLt: empty matmul");
    try {
      SGCKPT_CUDA_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
      SGCKPT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
      SGCKPT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
      SGCKPT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, u64(ta ? k : m), u64(ta ? m : k), lda));
      SGCKPT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, u64(tb ? n : k), u64(tb ? k : n), ldb));
      SGCKPT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, u64(m), u64(n), m));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~LtGemm() { destroy(); }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // The rows and columns a layout describes (what tests read back).
  static std::uint64_t rows(cublasLtMatrixLayout_t l) { return attribute(l, CUBLASLT_MATRIX_LAYOUT_ROWS); }
  static std::uint64_t cols(cublasLtMatrixLayout_t l) { return attribute(l, CUBLASLT_MATRIX_LAYOUT_COLS); }

 private:
  static std::uint64_t u64(std::int64_t v) { return static_cast<std::uint64_t>(v); }
  static std::uint64_t attribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t which) {
    std::uint64_t v = 0;
    std::size_t written = 0;
    SGCKPT_CUDA_CHECK(cublasLtMatrixLayoutGetAttribute(l, which, &v, sizeof(v), &written));
    return v;
  }
  void destroy() noexcept {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
    op = nullptr, a = nullptr, b = nullptr, c = nullptr;
  }
};

}  // namespace sgckpt::cuda::detail
