// Data-parallel training through the Trainer with ranks as threads (dist::ThreadGroup): the
// same code path mpirun takes (tests/python/test_ddp.py), here in one process so that the
// sanitizer stage runs it too.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// The samples of `d` at `order`, in that order.
data::Dataset reordered(const data::Dataset& d, const std::vector<std::int64_t>& order) {
  data::Dataset out = d;
  const auto n = static_cast<std::int64_t>(order.size());
  out.images = engine::Tensor::empty({n, 3, 32, 32});
  std::vector<std::int64_t> labels;
  const std::size_t per = 3 * 32 * 32;
  for (std::size_t i = 0; i < order.size(); ++i) {
    std::memcpy(out.images.data<float>() + i * per,
                d.images.data<float>() + order[i] * static_cast<std::int64_t>(per), per * sizeof(float));
    labels.push_back(d.labels.data<std::int64_t>()[order[i]]);
  }
  out.labels = engine::Tensor::from_vector<std::int64_t>({n}, labels);
  return out;
}

train::TrainConfig sgd_config(double lr, double weight_decay) {
  train::TrainConfig cfg;
  cfg.max_epochs = 2;
  cfg.batch_size = 4;
  cfg.valid_batch_size = 8;
  cfg.shuffle = false;
  cfg.prefetch_batches = 0;
  cfg.lr.initial_lr = lr;
  cfg.optimizer_params["momentum"] = 0.9;
  cfg.optimizer_params["weight_decay"] = weight_decay;
  return cfg;
}

CheckpointConfig scratch_ckpt(const std::filesystem::path& root, const std::string& name) {
  CheckpointConfig ckpt;
  ckpt.ckpt_root_dir = root;
  ckpt.experiment_name = name;
  ckpt.async_save = false;
  ckpt.durable = false;
  return ckpt;
}

// The parameters of a state dict (BatchNorm's running statistics are per replica under DDP).
Value parameters_of(const Value& sd) {
  Value out = Value::make_ordered_dict();
  for (const auto& [k, v] : sd.dict())
    if (k.str().find("running_") == std::string::npos &&
        k.str().find("num_batches_tracked") == std::string::npos)
      out.dict().set(k, v);
  return out;
}

// The largest relative difference between the float tensors of two dicts of equal keys:
// max |a - b| / max |a| per tensor.
double max_relative_difference(const Value& a, const Value& b) {
  double worst = 0;
  for (const auto& [k, v] : a.dict()) {
    const sgckpt::Tensor& x = v.tensor();
    const sgckpt::Tensor& y = b.at(k).tensor();
    if (x.dtype() != DType::Float32) continue;
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < x.numel(); ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(x.data<float>()[i] - y.data<float>()[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(x.data<float>()[i])));
    }
    if (scale > 0) worst = std::max(worst, diff / scale);
  }
  return worst;
}

}  // namespace

TEST_SUITE("engine/ddp") {
  // SG's batch_accumulate sums the micro-batches' gradients (the loss is not divided), DDP
  // averages over ranks: with half the lr and twice the weight decay, SGD with momentum takes
  // the same steps (every factor is a power of two, so scaling adds no rounding). The process
  // sees rank 0's and rank 1's batches in turn, so every BatchNorm normalizes the same 4 samples.
  // Not bit for bit: the second micro-batch's weight gradient is accumulated inside the GEMM
  // (C += A B), where DDP adds two finished gradients; 4 steps differ by ~3e-6 relative.
  TEST_CASE("two ranks equal one process with batch_accumulate 2 over the same global batches (1e-5)") {
    test::TempDir tmp;
    const data::Dataset images = two_class_images(16);
    auto ranks = dist::ThreadGroup::create(2, 60s);
    std::vector<Value> nets(2);
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)
      threads.emplace_back([&, r] {
        try {
          train::Trainer t(nn::ResNet18Config::cifar(2, 1.0 / 16), sgd_config(0.1, 1e-3),
                           scratch_ckpt(tmp.path(), "ddp"));
          t.distribute(*ranks[static_cast<std::size_t>(r)]);
          t.fit(images, images, resolve_resume(tmp.path(), "ddp", {}));
          nets[r] = clone_state(t.model().state_dict());
        } catch (const std::exception& e) {
          errors[r] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    REQUIRE(errors == std::vector<std::string>(2));

    // DistributedSampler without shuffling: rank r takes r, r + 2, ...; batches of 4 each.
    const data::Dataset interleaved =
        reordered(images, {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15});
    train::TrainConfig one = sgd_config(0.05, 2e-3);
    one.batch_accumulate = 2;
    train::Trainer t(nn::ResNet18Config::cifar(2, 1.0 / 16), one, scratch_ckpt(tmp.path(), "one"));
    t.fit(interleaved, images, resolve_resume(tmp.path(), "one", {}));
    const Value single = clone_state(t.model().state_dict());
    const double rel = max_relative_difference(parameters_of(nets[0]), parameters_of(single));
    MESSAGE("largest relative difference: " << rel);
    CHECK(rel < 1e-5);
    // Not an empty claim: the weights moved, and without accumulation they differ.
    train::Trainer still(nn::ResNet18Config::cifar(2, 1.0 / 16), one, scratch_ckpt(tmp.path(), "none"));
    CHECK(first_difference(parameters_of(still.model().state_dict()), parameters_of(single)));
  }

  // With lr 0 every batch's gradient is taken at the same weights. One window of 4 batches
  // steps once: SGD's momentum buffer starts as that step's gradient, the window's sum. Without
  // accumulation, momentum 1 and no dampening make the buffer the same running sum, step by step
  // (up to rounding: the window sums inside the GEMM, the buffer outside).
  TEST_CASE("batch_accumulate steps once per window with the sum of the window's gradients") {
    test::TempDir tmp;
    const data::Dataset images = two_class_images(16);
    auto buffers = [&](int accumulate, double momentum) {
      train::TrainConfig cfg = sgd_config(0.0, 0.0);
      cfg.max_epochs = 1;
      cfg.batch_accumulate = accumulate;
      cfg.optimizer_params["momentum"] = momentum;
      const std::string name = "acc" + std::to_string(accumulate);
      train::Trainer t(nn::ResNet18Config::cifar(2, 1.0 / 16), cfg, scratch_ckpt(tmp.path(), name));
      t.fit(images, images, resolve_resume(tmp.path(), name, {}));
      return clone_state(t.optimizer().state_dict().at("state"));
    };
    const Value window = buffers(4, 0.9), running = buffers(1, 1.0);
    REQUIRE(window.dict().size() > 0);
    double rel = 0;
    for (const auto& [k, v] : window.dict()) {
      Value a = Value::make_dict(), b = Value::make_dict();
      a["m"] = v.at("momentum_buffer");
      b["m"] = running.at(k).at("momentum_buffer");
      rel = std::max(rel, max_relative_difference(a, b));
    }
    MESSAGE("largest relative difference: " << rel);
    CHECK(rel < 1e-5);
    CHECK(first_difference(buffers(2, 0.9), running));  // two steps of two batches each: not the sum
    train::TrainConfig bad;
    bad.batch_accumulate = 0;
    CHECK_THROWS_AS(train::Trainer(nn::ResNet18Config::cifar(2, 1.0 / 16), bad, CheckpointConfig{}), Error);
  }

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
