// kernels/linear_cublaslt.cu: the fully connected layer through cuBLASLt, float32 compute
// (CUBLAS_COMPUTE_32F: no TF32), no split-K reduction scheme (deterministic). A row-major
// engine matrix M[r, c] is the column-major matrix M^T to cuBLAS, so with y[N,O] = x[N,I] W[O,I]^T:
//   forward:          y^T (O x N)  = op(W^T stored I x O, transposed) * x^T (I x N)
//   input gradient:   dx^T (I x N) = W^T (I x O) * dy^T (O x N)
//   weight gradient:  dW^T (I x O) += x^T (I x N) * op(dy^T stored O x N, transposed)
// The bias and its gradient are elementwise.cu's kernels (the CPU's order).
#include <cstdint>

#include "context.hpp"
#include "linear_cublaslt.hpp"

namespace sgckpt::cuda::detail {

namespace {

constexpr std::size_t kWorkspace = std::size_t{4} << 20;

// The largest power of two (at most 256) that divides the address.
std::uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t al = 256;
  while (al > 4 && a % al != 0) al /= 2;
  return al;
}

// C (m x n, ld m) = alpha * op(A) * op(B) + beta * C, column-major float32.
void gemm(Context& c, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* A,
          std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C) {
  const LtGemm g(ta, tb, m, n, k, lda, ldb);
  cublasLtMatmulPreference_t pref = nullptr;
  SGCKPT_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  try {
    const std::uint64_t ws = kWorkspace;
    SGCKPT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &ws, sizeof(ws)));
    const std::uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    // The heuristic assumes 256-byte-aligned matrices unless told: say what these are.
    const cublasLtMatmulPreferenceAttributes_t align_attr[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const std::uint32_t aligns[] = {alignment(A), alignment(B), alignment(C), alignment(C)};
    for (int i = 0; i < 4; ++i)
      SGCKPT_CUDA_CHECK(
          cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &aligns[i], sizeof(std::uint32_t)));
    SGCKPT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                           &none, sizeof(none)));
    SGCKPT_CUDA_CHECK(
        cublasLtMatmulAlgoGetHeuristic(c.lt, g.op, g.a, g.b, g.c, g.c, pref, 1, &result, &found));
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(pref);
    throw;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (found < 1)
    throw Error("cuBLASLt: no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                std::to_string(k) + " float32 matmul");
  const float alpha = 1.0f;
  void* ws = c.scratch(kWorkspace);
  SGCKPT_CUDA_CHECK(cublasLtMatmul(c.lt, g.op, &alpha, A, g.a, B, g.b, &beta, C, g.c, C, g.c, &result.algo,
                                   ws, kWorkspace, c.stream));
  c.release(ws);
}

}  // namespace

void linear_forward(Context& c, float* y, const float* x, const float* w, const float* b, std::int64_t N,
                    std::int64_t in, std::int64_t out) {
  if (N <= 0 || out <= 0) return;
  if (in <= 0) {  // y = b (or 0): no product to compute
    fill_bytes(c, y, 0, static_cast<std::size_t>(N * out) * sizeof(float));
  } else {
    gemm(c, true, false, out, N, in, w, in, x, in, 0.0f, y);
  }
  if (b != nullptr) add_bias(c, y, b, N, out, 1);
  SGCKPT_CUDA_LAUNCHED("linear_forward", c.stream);
}

void linear_backward(Context& c, float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, std::int64_t N, std::int64_t in, std::int64_t out) {
  if (N <= 0 || out <= 0 || in <= 0) {
    if (N > 0 && out > 0 && db != nullptr) bias_grad(c, db, dy, N, out, 1);
    return;
  }
  if (dx != nullptr) gemm(c, false, false, in, N, out, w, in, dy, out, 0.0f, dx);
  gemm(c, false, true, in, out, N, x, in, dy, out, 1.0f, dw);
  if (db != nullptr) bias_grad(c, db, dy, N, out, 1);
  SGCKPT_CUDA_LAUNCHED("linear_backward", c.stream);
}

}  // namespace sgckpt::cuda::detail
