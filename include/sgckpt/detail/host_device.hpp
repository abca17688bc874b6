// sgckpt/detail/host_device.hpp: SGCKPT_HD, the one marker of functions shared by host loops
// and CUDA kernels: __host__ __device__ under nvcc, nothing elsewhere. The per-element math
// written with it (detail/elementwise.hpp, engine/math.hpp, the optimizers' math) is compiled
// once for each side from the same expression, which is what keeps the CPU and GPU results
// bit-identical (docs/engine.md, "Bit parity").
#pragma once

#ifndef SGCKPT_HD
#if defined(__CUDACC__)
#define SGCKPT_HD __host__ __device__
#else
#define SGCKPT_HD
#endif
#endif
