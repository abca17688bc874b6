// The engine's data layer: IDX files (include/sgckpt/engine/data/idx.hpp) are read or refused
// with the file and offset, and the loader's order and augmentation are a pure function of the
// generator state (what makes a resumed run see the same batches).
#include <doctest/doctest.h>
#include <zlib.h>

#include <sgckpt/engine/data/dataset.hpp>
#include <sgckpt/engine/data/idx.hpp>
#include <sgckpt/engine/data/loader.hpp>
#include <sgckpt/engine/data/prefetcher.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

using namespace sgckpt;
using namespace sgckpt::engine;
namespace fs = std::filesystem;

namespace {

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("sgckpt_test_data_" + std::to_string(::getpid()) + "_" + name);
}

void write_gz(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<std::uint8_t> idx_header(std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> h{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<std::uint8_t>(d >> s));
  return h;
}

std::string error_of(const fs::path& p) {
  try {
    data::read_idx(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

data::Dataset tiny_dataset(std::int64_t n) {
  data::Dataset d;
  d.images = engine::Tensor::empty({n, 2, 4, 4});
  float* x = d.images.data<float>();
  for (std::size_t i = 0; i < d.images.numel(); ++i) x[i] = static_cast<float>(i);
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < n; ++i) labels.push_back(i);  // label = sample index
  d.labels = engine::Tensor::from_vector<std::int64_t>({n}, labels);
  d.num_classes = n;
  d.black = {-1.0f, -2.0f};
  return d;
}

}  // namespace

TEST_SUITE("engine/data") {
  TEST_CASE("an IDX file is read, gzip'ed or not, optionally only its first items") {
    const fs::path p = temp_file("ok.gz");
    auto bytes = idx_header({3, 2, 2});
    for (int i = 0; i < 12; ++i) bytes.push_back(static_cast<std::uint8_t>(i));
    write_gz(p, bytes);
    const auto a = data::read_idx(p);
    CHECK(a.dims == std::vector<std::int64_t>{3, 2, 2});
    CHECK(a.data.size() == 12);
    CHECK(a.data[11] == 11);
    const auto b = data::read_idx(p, std::uint64_t{1} << 30, 2);
    CHECK(b.dims == std::vector<std::int64_t>{2, 2, 2});
    CHECK(b.data.size() == 8);
    fs::remove(p);
  }

  TEST_CASE("a lying IDX file is refused with the file and the offset") {
    const fs::path p = temp_file("bad.gz");
    SUBCASE("truncated data") {
      auto bytes = idx_header({10, 28, 28});
      bytes.resize(bytes.size() + 100);
      write_gz(p, bytes);
      const std::string e = error_of(p);
      CHECK(e.find("truncated data") != std::string::npos);
      CHECK(e.find(p.string()) != std::string::npos);
      CHECK(e.find("offset 116") != std::string::npos);
    }
    SUBCASE("dimensions beyond the byte limit are refused before allocating") {
      write_gz(p, idx_header({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}));
      CHECK(error_of(p).find("limit") != std::string::npos);
    }
    SUBCASE("wrong magic, element type, zero dimension, trailing bytes") {
      write_gz(p, {1, 0, 8, 1, 0, 0, 0, 1, 7});
      CHECK(error_of(p).find("not an IDX file") != std::string::npos);
      write_gz(p, {0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0});
      CHECK(error_of(p).find("not supported") != std::string::npos);
      write_gz(p, idx_header({0}));
      CHECK(error_of(p).find("is zero") != std::string::npos);
      auto bytes = idx_header({2});
      bytes.insert(bytes.end(), {1, 2, 3});
      write_gz(p, bytes);
      CHECK(error_of(p).find("trailing") != std::string::npos);
    }
    SUBCASE("missing file") {
      CHECK(error_of(p.string() + ".missing").find("cannot open") != std::string::npos);
    }
    fs::remove(p);
  }

  TEST_CASE("CIFAR-10 binary batches: records parsed and normalized; a torn file is refused") {
    const fs::path dir = temp_file("cifar");
    fs::create_directories(dir);
    std::vector<std::uint8_t> bytes;
    for (int r = 0; r < 3; ++r) {
      bytes.push_back(static_cast<std::uint8_t>(r + 7));  // label
      for (int i = 0; i < 3 * 32 * 32; ++i) bytes.push_back(static_cast<std::uint8_t>((i / 1024) * 100 + r));
    }
    auto write = [&](const std::vector<std::uint8_t>& b) {
      std::FILE* f = std::fopen((dir / "test_batch.bin").string().c_str(), "wb");
      REQUIRE(f != nullptr);
      REQUIRE(std::fwrite(b.data(), 1, b.size(), f) == b.size());
      std::fclose(f);
    };
    write(bytes);
    const auto ds = data::cifar10(dir, data::Split::Test);
    CHECK(ds.size() == 3);
    CHECK(ds.labels.data<std::int64_t>()[2] == 9);
    // Record 1, channel 2 holds byte 201: (201 / 255 - 0.4465) / 0.2010.
    const float v = ds.images.data<float>()[(1 * 3 + 2) * 1024 + 5];
    CHECK(v == doctest::Approx((201.0f / 255.0f - 0.4465f) / 0.2010f).epsilon(1e-6));
    CHECK(data::cifar10(dir, data::Split::Test, 2).size() == 2);
    bytes.pop_back();
    write(bytes);
    try {
      data::cifar10(dir, data::Split::Test);
      FAIL("a torn file was accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("not a whole number of 3073-byte records") != std::string::npos);
    }
    bytes[3073] = 12;  // a label outside 0..9 (record 1), file made whole again
    bytes.push_back(0);
    write(bytes);
    try {
      data::cifar10(dir, data::Split::Test);
      FAIL("label 12 was accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("label 12") != std::string::npos);
    }
    CHECK_THROWS_AS(data::cifar10(dir, data::Split::Train), Error);  // no data_batch_1.bin
    fs::remove_all(dir);
  }

  TEST_CASE("the shuffled order is a permutation drawn from the generator, reproducible from its state") {
    const auto ds = tiny_dataset(10);
    data::DataLoader loader(ds, {3, true, false, {}});
    CHECK(loader.num_batches() == 4);
    Generator g(7);
    loader.start_epoch(g);
    const auto first = loader.order();
    const auto saved = g.state();
    loader.start_epoch(g);
    const auto second = loader.order();
    CHECK(first != second);
    auto sorted = second;
    std::sort(sorted.begin(), sorted.end());
    for (std::int64_t i = 0; i < 10; ++i) CHECK(sorted[static_cast<std::size_t>(i)] == i);
    Generator h(0);
    h.set_state(saved);  // what a resume does
    loader.start_epoch(h);
    CHECK(loader.order() == second);
    // The batches follow the order; the last one is short (drop_last off).
    const auto last = loader.batch(3, h);
    CHECK(last.y.shape() == Shape{1});
    CHECK(last.y.data<std::int64_t>()[0] == second[9]);
  }

  TEST_CASE("augmentation: crops pad with the dataset's black value, flips mirror, draws are reproducible") {
    const auto ds = tiny_dataset(4);
    data::DataLoader loader(ds, {4, false, false, {1, true}});
    Generator g(3);
    loader.start_epoch(g);
    const auto s = g.state();
    const auto a = loader.batch(0, g);
    Generator h(0);
    h.set_state(s);
    const auto b = loader.batch(0, h);
    CHECK(std::equal(a.x.data<float>(), a.x.data<float>() + a.x.numel(), b.x.data<float>()));
    // Every output pixel is a pixel of its own image/channel or that channel's black value.
    const float* x = a.x.data<float>();
    const float* src = ds.images.data<float>();
    for (std::int64_t i = 0; i < 4; ++i)
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t p = 0; p < 16; ++p) {
          const float v = x[(i * 2 + c) * 16 + p];
          const float* img = src + (i * 2 + c) * 16;
          const bool own = std::find(img, img + 16, v) != img + 16;
          CHECK((own || v == ds.black[static_cast<std::size_t>(c)]));
        }
  }

  TEST_CASE(
      "the prefetcher yields the loader's batches in order and leaves the generator where it would be") {
    const auto ds = tiny_dataset(10);
    const data::LoaderOptions opt{3, true, false, {1, true}};  // shuffled, augmented, last batch short
    for (std::size_t depth : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{8}}) {
      data::DataLoader plain(ds, opt), ahead(ds, opt);
      Generator g1(11), g2(11);
      for (int epoch = 0; epoch < 2; ++epoch) {
        plain.start_epoch(g1);
        ahead.start_epoch(g2);
        data::Prefetcher batches(ahead, g2, depth);
        for (std::int64_t b = 0; b < plain.num_batches(); ++b) {
          const auto want = plain.batch(b, g1);
          const auto got = batches.next();
          REQUIRE(got.x.numel() == want.x.numel());
          CHECK(std::equal(want.x.data<float>(), want.x.data<float>() + want.x.numel(), got.x.data<float>()));
          CHECK(std::equal(want.y.data<std::int64_t>(), want.y.data<std::int64_t>() + want.y.numel(),
                           got.y.data<std::int64_t>()));
        }
        CHECK_THROWS_AS(batches.next(), Error);
      }
      CHECK(g1.state() == g2.state());
    }
  }

  TEST_CASE("a prefetcher left mid-epoch (a diverged loss) stops its thread") {
    const auto ds = tiny_dataset(64);
    data::DataLoader loader(ds, {1, true, false, {1, true}});
    Generator g(5);
    loader.start_epoch(g);
    {
      data::Prefetcher batches(loader, g, 2);
      batches.next();
    }  // joins without waiting for the other 63 batches to be taken
    CHECK(true);
  }
}
