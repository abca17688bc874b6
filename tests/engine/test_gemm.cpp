// The engine's GEMM (include/sgckpt/engine/ops/gemm.hpp): every implementation this CPU can run
// (Eigen, and the packed AVX2 / AVX-512 kernels) against a double-precision reference over
// awkward shapes (edge tiles, K across several KC blocks), both transposes, alpha and beta; the
// two packed kernels agree bit for bit (the reason a checkpoint resumes identically on AVX2 and
// AVX-512 machines); beta == 0 never reads C.
#include <doctest/doctest.h>

#include <sgckpt/engine/ops/gemm.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace sgckpt::engine::ops;

namespace {

struct Case {
  bool ta, tb;
  std::int64_t M, N, K;
  float alpha, beta;
};

using Impl = void (*)(const Case&, const float*, std::int64_t, const float*, std::int64_t, float*,
                      std::int64_t);

void run_eigen(const Case& c, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
               std::int64_t ldc) {
  gemm_detail::sgemm_eigen(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
}

#if SGCKPT_GEMM_X86
template <int MR, int NR>
void run_packed(const Case& c, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                std::int64_t ldc,
                void (*kernel)(std::int64_t, const float*, const float*, float*, std::int64_t, float,
                               float)) {
  auto pack = [&](std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t n, float* dst,
                  std::int64_t width) { gemm_detail::pack_b(c.tb, B, ldb, p0, kc, j0, n, dst, width); };
  gemm_detail::sgemm_packed<MR, NR>(kernel, c.ta, c.M, c.N, c.K, c.alpha, A, lda, pack, c.beta, C, ldc);
}
void run_avx2(const Case& c, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
              std::int64_t ldc) {
  run_packed<6, 16>(c, A, lda, B, ldb, C, ldc, gemm_detail::kernel_avx2_6x16);
}
void run_avx512(const Case& c, const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C,
                std::int64_t ldc) {
  run_packed<8, 32>(c, A, lda, B, ldb, C, ldc, gemm_detail::kernel_avx512_8x32);
}
bool has_avx2() {
  return sgckpt::detail::cpu_features().avx2_fma;
}
bool has_avx512() {
  return sgckpt::detail::cpu_features().avx512f;
}
#endif

struct Named {
  const char* name;
  Impl impl;
};

std::vector<Named> implementations() {
  std::vector<Named> out{{"eigen", run_eigen}};
#if SGCKPT_GEMM_X86
  if (has_avx2()) out.push_back({"avx2", run_avx2});
  if (has_avx512()) out.push_back({"avx512", run_avx512});
#endif
  return out;
}

// Runs one case with padded leading dimensions; returns C.
std::vector<float> run_case(Impl impl, const Case& c, const std::vector<float>& A,
                            const std::vector<float>& B, const std::vector<float>& C0) {
  std::vector<float> C = C0;
  const std::int64_t lda = (c.ta ? c.M : c.K) + 3, ldb = (c.tb ? c.K : c.N) + 5, ldc = c.N + 2;
  impl(c, A.data(), lda, B.data(), ldb, C.data(), ldc);
  return C;
}

}  // namespace

TEST_SUITE("engine/gemm") {
  TEST_CASE("every implementation matches a double reference; the packed kernels agree bit for bit") {
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const std::int64_t sizes[][3] = {{1, 1, 1},   {5, 7, 3},      {6, 16, 8},   {8, 32, 256}, {13, 35, 257},
                                     {49, 17, 9}, {200, 70, 600}, {7, 1100, 5}, {33, 65, 513}};
    const auto impls = implementations();
    std::string names;
    for (const auto& i : impls) names += std::string(names.empty() ? "" : ", ") + i.name;
    MESSAGE("implementations on this CPU: " << names);
    for (const auto& s : sizes)
      for (int t = 0; t < 4; ++t)
        for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}}) {
          const Case c{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], alpha, beta};
          CAPTURE(c.M);
          CAPTURE(c.N);
          CAPTURE(c.K);
          CAPTURE(c.ta);
          CAPTURE(c.tb);
          CAPTURE(c.alpha);  // c's copies: clang 14 cannot capture structured bindings
          CAPTURE(c.beta);
          const std::int64_t lda = (c.ta ? c.M : c.K) + 3, ldb = (c.tb ? c.K : c.N) + 5, ldc = c.N + 2;
          std::vector<float> A(static_cast<std::size_t>((c.ta ? c.K : c.M) * lda));
          std::vector<float> B(static_cast<std::size_t>((c.tb ? c.N : c.K) * ldb));
          std::vector<float> C0(static_cast<std::size_t>(c.M * ldc));
          for (auto& v : A) v = u(rng);
          for (auto& v : B) v = u(rng);
          // beta == 0 must not read C: NaN there would poison the result.
          for (auto& v : C0) v = beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : u(rng);
          auto a = [&](std::int64_t i, std::int64_t p) { return c.ta ? A[p * lda + i] : A[i * lda + p]; };
          auto b = [&](std::int64_t p, std::int64_t j) { return c.tb ? B[j * ldb + p] : B[p * ldb + j]; };
          std::vector<float> packed_result;
          for (const auto& [name, impl] : impls) {
            const std::string& implementation = name;  // CAPTURE's lambda cannot capture a binding (clang 14)
            CAPTURE(implementation);
            const auto C = run_case(impl, c, A, B, C0);
            double worst = 0;
            for (std::int64_t i = 0; i < c.M; ++i)
              for (std::int64_t j = 0; j < c.N; ++j) {
                double ref = 0;
                for (std::int64_t p = 0; p < c.K; ++p) ref += static_cast<double>(a(i, p)) * b(p, j);
                ref = alpha * ref + (beta == 0.0f ? 0.0 : beta * static_cast<double>(C0[i * ldc + j]));
                worst = std::max(worst, std::abs(C[i * ldc + j] - ref));
              }
            // |error| <= K * eps * sum|a||b| with |a|, |b| <= 1: a loose but meaningful bound.
            CHECK(worst <= 4e-7 * static_cast<double>(c.K + 4) * std::abs(alpha) + 1e-6);
            // Padding columns of C are untouched.
            for (std::int64_t i = 0; i < c.M; ++i)
              for (std::int64_t j = c.N; j < ldc; ++j) {
                const float before = C0[i * ldc + j], after = C[i * ldc + j];
                CHECK(((std::isnan(before) && std::isnan(after)) || before == after));
              }
            if (std::string(name) == "eigen") continue;
            if (packed_result.empty())
              packed_result = C;
            else  // avx2 and avx512: the same float operations per element (bits, NaN padding included)
              CHECK(std::memcmp(packed_result.data(), C.data(), C.size() * sizeof(float)) == 0);
          }
        }
  }
}
