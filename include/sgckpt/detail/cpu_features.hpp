// sgckpt/detail/cpu_features.hpp: the one place that asks the CPU what it can do.
//
// Every vectorized loop (CRC-32, EMA/averaging, the GEMM, the optimizer step) picks its code
// path here, once per process. libgcc / compiler-rt's __builtin_cpu_supports also checks that
// the OS saves the wider registers (XCR0), so a feature reported here is usable.
#pragma once

namespace sgckpt::detail {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 and FMA3 (the engine's GEMM, EMA, optimizer loops)
  bool avx512f = false;   // AVX-512 Foundation (the GEMM's widest kernel)
  bool pclmul = false;    // PCLMULQDQ and SSE4.1 (folded CRC-32)
};

inline CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__CUDACC__)
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f");
  f.pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
  return f;
}

// This process's CPU (detected on first use).
inline const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect_cpu_features();
  return f;
}

}  // namespace sgckpt::detail
