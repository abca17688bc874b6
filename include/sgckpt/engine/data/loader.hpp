// sgckpt/engine/data/loader.hpp: batches in a seeded, resumable order.
//
//   Generator gen(seed);
//   DataLoader loader(train, {.batch_size = 64, .shuffle = true, .augment = {4, true}});
//   for (epoch ...) {
//     loader.start_epoch(gen);                  // draws this epoch's order from gen
//     for (std::int64_t b = 0; b < loader.num_batches(); ++b) {
//       Batch batch = loader.batch(b, gen);     // x [B, C, H, W], y [B]; draws augmentation
//       ...
//
// Everything random (the order and every crop and flip) is drawn from the one Generator the
// caller passes, in a fixed sequence, so the generator's state at an epoch boundary ({seed,
// offset}, saved in the checkpoint) is all a resumed run needs to see the same batches. The
// order is a Fisher-Yates shuffle with unbiased draws; batch b must be requested after batch
// b - 1 (the draws of augmentation come in that order).
#pragma once

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/engine/data/dataset.hpp"
#include "sgckpt/engine/random.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::data {

// CIFAR's standard augmentation: a random crop of the image padded by `crop_padding` pixels
// (padding takes the value of a black pixel, like the dataset's own padding) and a horizontal
// flip with probability 1/2. Off by default.
struct Augment {
  std::int64_t crop_padding = 0;
  bool horizontal_flip = false;
  bool enabled() const { return crop_padding > 0 || horizontal_flip; }
};

struct LoaderOptions {
  std::int64_t batch_size = 64;
  bool shuffle = false;
  bool drop_last = false;
  Augment augment;
};

struct Batch {
  Tensor x;  // [B, C, H, W] float32
  Tensor y;  // [B] int64
};

class DataLoader {
 public:
  DataLoader(const Dataset& dataset, LoaderOptions options) : ds_(&dataset), opt_(options) {
    if (opt_.batch_size <= 0) throw Error("DataLoader: batch_size must be positive");
    if (ds_->size() == 0) throw Error("DataLoader: the dataset " + ds_->name + " is empty");
    order_.resize(static_cast<std::size_t>(ds_->size()));
    std::iota(order_.begin(), order_.end(), std::int64_t{0});
    // Crop padding is black, like the dataset's own padding (0 when the dataset does not say).
    pad_value_ = ds_->black;
    pad_value_.resize(static_cast<std::size_t>(ds_->channels()), 0.0f);
  }

  std::int64_t num_batches() const {
    const auto n = static_cast<std::int64_t>(order_.size());
    const std::int64_t b = opt_.batch_size;
    return opt_.drop_last ? n / b : (n + b - 1) / b;
  }
  const LoaderOptions& options() const noexcept { return opt_; }
  const std::vector<std::int64_t>& order() const noexcept { return order_; }

  // The sample order of the next epoch: the identity, or a shuffle drawn from gen.
  void start_epoch(Generator& gen) {
    order_.resize(static_cast<std::size_t>(ds_->size()));
    std::iota(order_.begin(), order_.end(), std::int64_t{0});
    if (!opt_.shuffle) return;
    for (std::size_t i = order_.size(); i > 1; --i) {
      const auto j = static_cast<std::size_t>(gen.below(i));
      std::swap(order_[i - 1], order_[j]);
    }
  }

  // An order given by the caller instead (a rank's share: dist::DistributedSampler); indices may
  // repeat (torch's padding) but must lie in the dataset.
  void set_order(std::vector<std::int64_t> order) {
    for (const auto i : order)
      if (i < 0 || i >= ds_->size())
        throw Error("DataLoader: index " + std::to_string(i) + " outside the dataset of " +
                    std::to_string(ds_->size()));
    if (order.empty()) throw Error("DataLoader: an empty order");
    order_ = std::move(order);
  }

  // Batch b of the current epoch; one draw per sample from gen when augmenting.
  Batch batch(std::int64_t b, Generator& gen) const {
    if (b < 0 || b >= num_batches())
      throw Error("DataLoader: batch " + std::to_string(b) + " of " + std::to_string(num_batches()));
    const std::int64_t begin = b * opt_.batch_size;
    const std::int64_t end =
        std::min<std::int64_t>(begin + opt_.batch_size, static_cast<std::int64_t>(order_.size()));
    const std::int64_t B = end - begin, C = ds_->channels(), H = ds_->height(), W = ds_->width();
    Batch out{Tensor::empty({B, C, H, W}), Tensor::empty({B}, DType::Int64)};
    const float* src = ds_->images.data<float>();
    const std::int64_t* labels = ds_->labels.data<std::int64_t>();
    float* dst = out.x.data<float>();
    std::int64_t* y = out.y.data<std::int64_t>();
    const std::int64_t sample = C * H * W;
    for (std::int64_t i = 0; i < B; ++i) {
      const std::int64_t idx = order_[static_cast<std::size_t>(begin + i)];
      y[i] = labels[idx];
      const float* s = src + idx * sample;
      float* d = dst + i * sample;
      if (!opt_.augment.enabled()) {
        std::memcpy(d, s, static_cast<std::size_t>(sample) * sizeof(float));
        continue;
      }
      // One 64-bit draw per sample: crop offsets from the low bits, the flip from the top bit.
      const std::uint64_t r = gen.next_u64();
      const std::int64_t p = opt_.augment.crop_padding, span = 2 * p + 1;
      const std::int64_t dy = p > 0 ? static_cast<std::int64_t>(r % static_cast<std::uint64_t>(span)) - p : 0;
      const std::int64_t dx = p > 0 ? static_cast<std::int64_t>((r / static_cast<std::uint64_t>(span)) %
                                                                static_cast<std::uint64_t>(span)) -
                                          p
                                    : 0;
      const bool flip = opt_.augment.horizontal_flip && (r >> 63) != 0;
      for (std::int64_t c = 0; c < C; ++c) {
        const float pad = pad_value_[static_cast<std::size_t>(c)];
        for (std::int64_t yy = 0; yy < H; ++yy)
          for (std::int64_t xx = 0; xx < W; ++xx) {
            const std::int64_t sy = yy + dy, sx0 = flip ? W - 1 - xx : xx, sx = sx0 + dx;
            const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
            d[(c * H + yy) * W + xx] = inside ? s[(c * H + sy) * W + sx] : pad;
          }
      }
    }
    return out;
  }

 private:
  const Dataset* ds_;
  LoaderOptions opt_;
  std::vector<std::int64_t> order_;
  std::vector<float> pad_value_;
};

}  // namespace sgckpt::engine::data
