// sgckpt/engine/data/dataset.hpp: image classification datasets held in memory as engine
// tensors, normalized as SuperGradients' recipes do.
//
//   Dataset train = fashion_mnist("/usr/share/datasets/fashion-mnist", Split::Train, 2000);
//   train.images  [N, 3, 32, 32] float32 (28x28 padded by 2 with black, replicated to 3 channels)
//   train.labels  [N] int64
//
// Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (IDX files, gzip'ed); CIFAR-10 from
// its "binary version" (data_batch_{1..5}.bin, test_batch.bin: per image one label byte and
// 3 x 32 x 32 pixel bytes, channel-major). Pixels become (x / 255 - mean) / std per channel,
// torchvision's ToTensor + Normalize. Padding happens before normalization, as torchvision's
// Pad on the PIL image does, so padded pixels hold (0 - mean) / std.
#pragma once

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/engine/data/idx.hpp"
#include "sgckpt/engine/tensor.hpp"
#include "sgckpt/io/file.hpp"

namespace sgckpt::engine::data {

enum class Split { Train, Test };

struct Dataset {
  Tensor images;  // [N, C, H, W] float32, normalized
  Tensor labels;  // [N] int64
  std::int64_t num_classes = 0;
  std::string name;
  std::vector<float> black;  // per channel: the normalized value of a black pixel (crop padding)

  std::int64_t size() const { return images.defined() ? images.shape()[0] : 0; }
  std::int64_t channels() const { return images.shape()[1]; }
  std::int64_t height() const { return images.shape()[2]; }
  std::int64_t width() const { return images.shape()[3]; }
};

namespace detail {

// Builds a normalized [N, C, 32, 32] tensor from N images of `src_c` channels of h x w bytes
// (channel-major), centred with `pad` black pixels on each side, replicated to `out_c` channels
// when the source has one.
inline Tensor normalize_images(const std::uint8_t* pixels, std::int64_t n, std::int64_t src_c, std::int64_t h,
                               std::int64_t w, std::int64_t pad, std::int64_t out_c, const float* mean,
                               const float* stdev) {
  const std::int64_t H = h + 2 * pad, W = w + 2 * pad;
  Tensor t = Tensor::empty({n, out_c, H, W});
  float* out = t.data<float>();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < out_c; ++c) {
      const std::uint8_t* src = pixels + (i * src_c + (src_c == 1 ? 0 : c)) * h * w;
      float* dst = out + (i * out_c + c) * H * W;
      const float m = mean[c], s = stdev[c];
      const float black = (0.0f - m) / s;
      for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
          const std::int64_t sy = y - pad, sx = x - pad;
          const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
          dst[y * W + x] = inside ? (static_cast<float>(src[sy * w + sx]) / 255.0f - m) / s : black;
        }
    }
  return t;
}

inline Tensor labels_tensor(const std::vector<std::int64_t>& labels) {
  return Tensor::from_vector<std::int64_t>({static_cast<std::int64_t>(labels.size())}, labels);
}

}  // namespace detail

// Fashion-MNIST as 3 x 32 x 32 images (the CIFAR ResNet's input). `limit` >= 0 keeps only the
// first `limit` images of the split (the files' order).
inline Dataset fashion_mnist(const std::filesystem::path& dir, Split split, std::int64_t limit = -1,
                             std::int64_t channels = 3) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const auto images = read_idx(dir / (prefix + "-images-idx3-ubyte.gz"), std::uint64_t{1} << 30, limit);
  const auto labels = read_idx(dir / (prefix + "-labels-idx1-ubyte.gz"), std::uint64_t{1} << 30, limit);
  const std::string where = "Fashion-MNIST in \"" + dir.string() + "\"";
  if (images.dims.size() != 3 || images.dims[1] != 28 || images.dims[2] != 28)
    throw Error(ErrorKind::Corrupt, where + ": the image file is not N x 28 x 28");
  if (labels.dims.size() != 1 || labels.dims[0] != images.dims[0])
    throw Error(ErrorKind::Mismatch, where + ": " + std::to_string(labels.dims.empty() ? 0 : labels.dims[0]) +
                                         " labels for " + std::to_string(images.dims[0]) + " images");
  std::vector<std::int64_t> y(labels.data.begin(), labels.data.end());
  for (std::size_t i = 0; i < y.size(); ++i)
    if (y[i] > 9)
      throw Error(ErrorKind::Corrupt, where + ": label " + std::to_string(y[i]) + " of image " +
                                          std::to_string(i) + " is not 0..9");
  // torchvision's FashionMNIST statistics (mean 0.2860, std 0.3530), the same for every channel.
  const std::array<float, 3> mean{0.2860f, 0.2860f, 0.2860f}, stdev{0.3530f, 0.3530f, 0.3530f};
  if (channels != 1 && channels != 3) throw Error("fashion_mnist: channels must be 1 or 3");
  Dataset d;
  d.images = detail::normalize_images(images.data.data(), images.dims[0], 1, 28, 28, 2, channels, mean.data(),
                                      stdev.data());
  d.labels = detail::labels_tensor(y);
  d.num_classes = 10;
  d.name = "fashion_mnist";
  for (std::int64_t c = 0; c < channels; ++c) d.black.push_back((0.0f - mean[c]) / stdev[c]);
  return d;
}

namespace detail {

// Reads exactly n bytes; false at a read error or the end of the file.
inline bool read_exact(int fd, std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t got = ::read(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace detail

// CIFAR-10's binary version: the five training batches or the test batch from `dir`.
inline Dataset cifar10(const std::filesystem::path& dir, Split split, std::int64_t limit = -1) {
  std::vector<std::string> files;
  if (split == Split::Train)
    for (int i = 1; i <= 5; ++i) files.push_back("data_batch_" + std::to_string(i) + ".bin");
  else
    files.push_back("test_batch.bin");
  constexpr std::int64_t kRecord = 1 + 3 * 32 * 32;
  std::vector<std::uint8_t> pixels;
  std::vector<std::int64_t> labels;
  std::vector<std::uint8_t> record(kRecord);
  for (const auto& name : files) {
    if (limit >= 0 && static_cast<std::int64_t>(labels.size()) >= limit) break;
    const auto path = dir / name;
    // A regular file only: opening a FIFO under the batch's name would block forever.
    struct stat st;
    const sgckpt::FdCloser fd{sgckpt::open_regular_file(path, st)};
    const auto size = static_cast<std::int64_t>(st.st_size);
    if (size <= 0 || size % kRecord != 0)
      throw Error(ErrorKind::Corrupt,
                  "CIFAR-10: \"" + path.string() + "\" is " + std::to_string(size) +
                      " bytes, not a whole number of " + std::to_string(kRecord) + "-byte records",
                  {path.string(), {}, {}, {}});
    for (std::int64_t r = 0; r < size / kRecord; ++r) {
      if (limit >= 0 && static_cast<std::int64_t>(labels.size()) >= limit) break;
      if (!detail::read_exact(fd.fd, record.data(), record.size()))
        throw Error(ErrorKind::Io, "CIFAR-10: read error",
                    {path.string(), {}, static_cast<std::uint64_t>(r * kRecord), {}});
      if (record[0] > 9)
        throw Error(ErrorKind::Corrupt, "CIFAR-10: label " + std::to_string(record[0]) + " is not 0..9",
                    {path.string(), {}, static_cast<std::uint64_t>(r * kRecord), {}});
      labels.push_back(record[0]);
      pixels.insert(pixels.end(), record.begin() + 1, record.end());
    }
  }
  // SuperGradients' CIFAR-10 recipe statistics.
  const std::array<float, 3> mean{0.4914f, 0.4822f, 0.4465f}, stdev{0.2023f, 0.1994f, 0.2010f};
  Dataset d;
  d.images = detail::normalize_images(pixels.data(), static_cast<std::int64_t>(labels.size()), 3, 32, 32, 0,
                                      3, mean.data(), stdev.data());
  d.labels = detail::labels_tensor(labels);
  d.num_classes = 10;
  d.name = "cifar10";
  for (std::size_t c = 0; c < 3; ++c) d.black.push_back((0.0f - mean[c]) / stdev[c]);
  return d;
}

}  // namespace sgckpt::engine::data
