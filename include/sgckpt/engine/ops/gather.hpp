// sgckpt/engine/ops/gather.hpp: a training batch gathered from a dataset's images: sample i of
// the batch is image index[i], cropped and flipped by its draw (CIFAR's augmentation: a random
// crop of the image padded by `crop_padding` pixels, a horizontal flip with probability 1/2).
// One SGCKPT_HD function says where each output pixel comes from, so the CPU loop here (what
// data::DataLoader::batch runs) and the CUDA kernel (kernels/elementwise.cu) give the same
// batch from the same draws.
#pragma once

#include <cstdint>
#include <cstring>

#include "sgckpt/detail/host_device.hpp"
#include "sgckpt/engine/ops/kernel_args.hpp"

namespace sgckpt::engine::ops {

// The augmentation of one sample from its 64-bit draw: the crop offsets from the low bits,
// the flip from the top bit.
struct CropFlip {
  std::int64_t dy = 0, dx = 0;
  bool flip = false;
};
SGCKPT_HD inline CropFlip crop_flip(std::uint64_t r, std::int64_t padding, bool horizontal_flip) {
  CropFlip a;
  if (padding > 0) {
    const auto span = static_cast<std::uint64_t>(2 * padding + 1);
    a.dy = static_cast<std::int64_t>(r % span) - padding;
    a.dx = static_cast<std::int64_t>((r / span) % span) - padding;
  }
  a.flip = horizontal_flip && (r >> 63) != 0;
  return a;
}

// Output pixel (c, yy, xx) of a sample whose image is `src` ([C, H, W]).
SGCKPT_HD inline float gather_pixel(const float* src, const float* pad, const CropFlip& a, std::int64_t c,
                                    std::int64_t yy, std::int64_t xx, std::int64_t H, std::int64_t W) {
  const std::int64_t sy = yy + a.dy, sx = (a.flip ? W - 1 - xx : xx) + a.dx;
  const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
  return inside ? src[(c * H + sy) * W + sx] : pad[c];
}

// The CPU's gather (one sample after another; plain copies without augmentation).
inline void gather_batch(const GatherBatch& g) {
  const std::int64_t sample = g.C * g.H * g.W;
  for (std::int64_t i = 0; i < g.B; ++i) {
    const float* s = g.images + g.index[i] * sample;
    float* d = g.x + i * sample;
    if (g.draws == nullptr) {
      std::memcpy(d, s, static_cast<std::size_t>(sample) * sizeof(float));
      continue;
    }
    const CropFlip a = crop_flip(g.draws[i], g.crop_padding, g.horizontal_flip);
    for (std::int64_t c = 0; c < g.C; ++c)
      for (std::int64_t yy = 0; yy < g.H; ++yy)
        for (std::int64_t xx = 0; xx < g.W; ++xx)
          d[(c * g.H + yy) * g.W + xx] = gather_pixel(s, g.pad, a, c, yy, xx, g.H, g.W);
  }
}

}  // namespace sgckpt::engine::ops
