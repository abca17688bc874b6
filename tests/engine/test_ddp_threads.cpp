// Data-parallel training through the Trainer with ranks as threads (dist::ThreadGroup): the
// same code path mpirun takes (tests/python/test_ddp.py), here in one process so that the
// sanitizer stage runs it too.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/core/identical.hpp"
#include "sgckpt/engine/dist/threads.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/train/trainer.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
using namespace std::chrono_literals;

namespace {

data::Dataset two_class_images(std::int64_t n) {
  data::Dataset d;
  d.images = engine::Tensor::empty({n, 3, 32, 32});
  Generator gen(7);
  float* p = d.images.data<float>();
  for (std::size_t i = 0; i < d.images.numel(); ++i) p[i] = static_cast<float>(gen.normal());
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 2);
  d.labels = engine::Tensor::from_vector<std::int64_t>({n}, labels);
  d.num_classes = 2;
  d.black = {0.0f, 0.0f, 0.0f};
  return d;
}

}  // namespace

TEST_SUITE("engine/ddp") {
  TEST_CASE("two ranks on threads: the same weights on both, one run directory written by rank 0") {
    test::TempDir tmp;
    const data::Dataset images = two_class_images(16);
    auto ranks = dist::ThreadGroup::create(2, 60s);
    std::vector<train::TrainResult> results(2);
    std::vector<Value> nets(2), emas(2);
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        try {
          train::TrainConfig cfg;
          cfg.max_epochs = 2;
          cfg.batch_size = 4;  // per rank: 2 steps per epoch
          cfg.valid_batch_size = 8;
          cfg.ema = true;
          cfg.prefetch_batches = 0;
          CheckpointConfig ckpt;
          ckpt.ckpt_root_dir = tmp.path();
          ckpt.experiment_name = "ddp";
          ckpt.async_save = false;
          ckpt.durable = false;
          train::Trainer t(nn::ResNet18Config::cifar(2, 1.0 / 16), cfg, ckpt);
          t.distribute(*ranks[static_cast<std::size_t>(r)]);
          results[r] = t.fit(images, images, resolve_resume(tmp.path(), "ddp", {}));
          nets[r] = clone_state(t.model().state_dict());
          emas[r] = clone_state(*t.ema_state());
        } catch (const std::exception& e) {
          errors[r] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    CHECK(errors == std::vector<std::string>(2));
    const auto net_diff = first_difference(nets[0], nets[1]);
    CHECK_MESSAGE(!net_diff, (net_diff ? net_diff->path + ": " + net_diff->what : ""));
    CHECK(!first_difference(emas[0], emas[1]));  // rank 0's buffers on every rank: one EMA
    REQUIRE(results[0].epochs.size() == 2);
    REQUIRE(results[1].epochs.size() == 2);
    for (std::size_t e = 0; e < 2; ++e) {  // metrics summed over ranks: the same on both
      CHECK(results[0].epochs[e].metrics.train == results[1].epochs[e].metrics.train);
      CHECK(results[0].epochs[e].metrics.valid == results[1].epochs[e].metrics.valid);
    }
    CHECK(results[1].run_dir.empty());
    REQUIRE(!results[0].run_dir.empty());
    std::size_t runs = 0;
    for (const auto& d : std::filesystem::directory_iterator(tmp.path() / "ddp")) runs += d.is_directory();
    CHECK(runs == 1);
    const Value latest = load(results[0].run_dir / "ckpt_latest.pth");
    CHECK(latest.at("epoch").as_number() == 2);
    CHECK(!first_difference(latest.at("net"), nets[0]));
  }
}
