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
// On a device: upload() the images once, then batch_on(plan(b, gen), images) makes each batch
// there with the same draws (ops/gather.hpp: one per-pixel function for both).
//
// Everything random (the order and every crop and flip) is drawn from the one Generator the
// caller passes, in a fixed sequence, so the generator's state at an epoch boundary ({seed,
// offset}, saved in the checkpoint) is all a resumed run needs to see the same batches. The
// order is a Fisher-Yates shuffle with unbiased draws; batch b must be requested after batch
// b - 1 (the draws of augmentation come in that order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/engine/data/dataset.hpp"
#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/ops/gather.hpp"
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

// The samples of one batch: dataset indices and, when augmenting, one 64-bit draw each.
struct BatchPlan {
  std::vector<std::int64_t> index;
  std::vector<std::uint64_t> draws;
  std::int64_t size() const { return static_cast<std::int64_t>(index.size()); }
};

// A dataset's images on a device (DataLoader::upload), and the value of a padding pixel.
struct DeviceImages {
  Tensor images;  // [N, C, H, W]
  Tensor pad;     // [C]
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

  // What batch b is made of: its samples' indices and, when augmenting, one draw per sample
  // from gen (batch b is planned after batch b - 1: the draws come in that order).
  BatchPlan plan(std::int64_t b, Generator& gen) const {
    if (b < 0 || b >= num_batches())
      throw Error("DataLoader: batch " + std::to_string(b) + " of " + std::to_string(num_batches()));
    const std::int64_t begin = b * opt_.batch_size;
    const std::int64_t end =
        std::min<std::int64_t>(begin + opt_.batch_size, static_cast<std::int64_t>(order_.size()));
    BatchPlan p;
    p.index.assign(order_.begin() + begin, order_.begin() + end);
    if (opt_.augment.enabled())
      for (std::int64_t i = begin; i < end; ++i) p.draws.push_back(gen.next_u64());
    return p;
  }

  // Batch b of the current epoch in host memory; one draw per sample from gen when augmenting.
  Batch batch(std::int64_t b, Generator& gen) const {
    const BatchPlan p = plan(b, gen);
    Batch out{Tensor::empty({p.size(), ds_->channels(), ds_->height(), ds_->width()}), labels_of(p)};
    ops::gather_batch(gather_args(p, out.x.data<float>(), ds_->images.data<float>(), p.index.data(),
                                  p.draws.empty() ? nullptr : p.draws.data(), pad_value_.data()));
    return out;
  }

  // The same batch made on the device that holds `images` (the dataset uploaded once): only
  // the plan (indices and draws) goes to the device; the labels stay in host memory, where the
  // loss checks them.
  Batch batch_on(const BatchPlan& p, const DeviceImages& images) const {
    if (images.images.shape() != ds_->images.shape())
      throw Error("DataLoader: the device images are not this loader's dataset");
    const Device d = images.images.device();
    Backend& be = backend(d);
    // One upload: the indices, then the draws.
    std::vector<std::uint64_t> words(p.index.size() + p.draws.size());
    std::memcpy(words.data(), p.index.data(), p.index.size() * sizeof(std::int64_t));
    if (!p.draws.empty()) std::memcpy(words.data() + p.index.size(), p.draws.data(), p.draws.size() * 8);
    Tensor plan_dev = Tensor::empty({static_cast<std::int64_t>(words.size())}, DType::Int64, d);
    be.copy_from_host(plan_dev.data_ptr<std::int64_t>(), words.data(), words.size() * 8);
    const auto* index = plan_dev.data_ptr<std::int64_t>();
    const auto* draws =
        p.draws.empty() ? nullptr : reinterpret_cast<const std::uint64_t*>(index + p.index.size());
    Batch out{Tensor::empty({p.size(), ds_->channels(), ds_->height(), ds_->width()}, DType::Float32, d),
              labels_of(p)};
    be.gather_batch(gather_args(p, out.x.data_ptr<float>(), images.images.data_ptr<float>(), index, draws,
                                images.pad.data_ptr<float>()));
    return out;
  }

  // The dataset's images (and the padding value) copied to device `d`, for batch_on().
  DeviceImages upload(Device d) const {
    return {ds_->images.to(d),
            Tensor::from_vector<float>({static_cast<std::int64_t>(pad_value_.size())}, pad_value_).to(d)};
  }

 private:
  Tensor labels_of(const BatchPlan& p) const {
    Tensor y = Tensor::empty({p.size()}, DType::Int64);
    const std::int64_t* labels = ds_->labels.data<std::int64_t>();
    for (std::size_t i = 0; i < p.index.size(); ++i) y.data<std::int64_t>()[i] = labels[p.index[i]];
    return y;
  }
  ops::GatherBatch gather_args(const BatchPlan& p, float* x, const float* images, const std::int64_t* index,
                               const std::uint64_t* draws, const float* pad) const {
    ops::GatherBatch g;
    g.x = x;
    g.images = images;
    g.index = index;
    g.draws = draws;
    g.pad = pad;
    g.B = p.size();
    g.C = ds_->channels();
    g.H = ds_->height();
    g.W = ds_->width();
    g.crop_padding = opt_.augment.crop_padding;
    g.horizontal_flip = opt_.augment.horizontal_flip;
    return g;
  }

  const Dataset* ds_;
  LoaderOptions opt_;
  std::vector<std::int64_t> order_;
  std::vector<float> pad_value_;
};

}  // namespace sgckpt::engine::data
