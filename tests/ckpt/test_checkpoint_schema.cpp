// The parts CheckpointManager orchestrates, alone: the checkpoint schema (pure functions, no
// files) and the best-metric rule with its rollback.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/best_metric.hpp"
#include "sgckpt/ckpt/checkpoint_schema.hpp"

using namespace sgckpt;

namespace {

std::vector<std::string> keys_of(const Value& d) {
  std::vector<std::string> out;
  for (const auto& [k, v] : d.dict()) out.push_back(k.str());
  return out;
}

TrainingState small_state() {
  TrainingState s;
  s.net = Value::make_dict();
  s.net["w"] = Value(Tensor::zeros(DType::Float32, {2}));
  s.optimizer = Value::make_dict();
  s.ema = s.net;
  s.extra.emplace_back("rng_state", Value(Int(7)));
  return s;
}

}  // namespace

TEST_SUITE("ckpt/checkpoint_schema") {
  TEST_CASE("an epoch's checkpoint has SG's keys in SG's order, then sgckpt's, then the loop's") {
    const Value metrics = epoch_metrics("Accuracy", {{{"Accuracy", 0.5}}, {}});
    const Value ck = make_checkpoint(small_state(),
                                     {.epoch = 3,
                                      .acc = 0.5,
                                      .metrics = metrics,
                                      .best_metrics = metrics,
                                      .best_metric_name = "Accuracy",
                                      .best_metric_value = 0.5},
                                     {.architecture = "resnet18_cifar", .num_classes = 10, .in_channels = 3});
    CHECK(keys_of(ck) == std::vector<std::string>{"net", "acc", "epoch", "metrics", "_best_ckpt_metrics",
                                                  "optimizer_state_dict", "scaler_state_dict", "ema_net",
                                                  "best_metric_name", "best_metric_value", "architecture",
                                                  "num_classes", "in_channels", "sgckpt_schema_version",
                                                  "rng_state"});
    CHECK(keys_of(ck.at("metrics")) == std::vector<std::string>{"tracked_metric_name", "valid"});
    CHECK(is_reserved_checkpoint_key("ema_net"));
    CHECK(!is_reserved_checkpoint_key("rng_state"));

    Value avg = ck;
    make_average_checkpoint(avg, Value::make_dict());
    CHECK(!avg.contains("optimizer_state_dict"));
    CHECK(!avg.contains("ema_net"));
    CHECK(avg.at("net").size() == 0);
  }

  TEST_CASE("resuming takes the training state out; a missing required entry names the key and the file") {
    Value ck = make_checkpoint(small_state(), {.epoch = 4, .best_metric_name = "Accuracy"}, {});
    ResumeState rs;
    std::vector<std::string> warnings;
    take_training_state(ck.dict(), "a.pth", {.ema = true}, rs, [&](std::string w) { warnings.push_back(w); });
    CHECK(rs.start_epoch == 4);
    CHECK(rs.ema.has_value());
    CHECK(warnings.empty());
    CHECK(extra_entries(ck.dict()).size() == 1);

    Value no_net = Value::make_dict();
    const Error e =
        test::error_of([&] { take_training_state(no_net.dict(), "b.pth", {}, rs, [](std::string) {}); });
    CHECK(e.kind() == ErrorKind::Schema);
    CHECK(e.context().file == "b.pth");
    CHECK(e.context().key_path == "net");

    Value other = Value::make_dict();
    other["num_classes"] = Value(Int(100));
    CHECK(test::error_of([&] { check_identity(other.dict(), "c.pth", {.num_classes = 10}); }).kind() ==
          ErrorKind::Mismatch);
  }

  TEST_CASE("the best metric: strict improvement, NaN never, an improvement taken back") {
    BestMetric best("accuracy", true);  // matched ignoring case: watches "Accuracy"
    std::vector<std::string> log;
    CHECK(best.resolve({{"Loss", 1.0}, {"Accuracy", 0.5}}, [&](const std::string& l) { log.push_back(l); }) ==
          "Accuracy");
    CHECK(log.size() == 1);
    CHECK(best.improves(0.5));
    const BestMetric::Saved before = best.set_best(0.5, Value());
    CHECK(std::isinf(before.value));
    CHECK(!best.improves(0.5));  // a tie is not an improvement
    CHECK(!best.improves(std::numeric_limits<double>::quiet_NaN()));
    const BestMetric::Saved half = best.set_best(0.75, Value());
    best.rollback(half);  // ckpt_best.pth could not be written: 0.75 is forgotten
    CHECK(best.value() == 0.5);
    CHECK(best.improves(0.75));
  }
}
