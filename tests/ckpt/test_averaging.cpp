// Tests of sgckpt/ckpt/averaging.hpp: SG's top-N slot rule over scripted metric sequences,
// the average (plain mean of the snapshots, integers from the best), persistence in
// averaging_snapshots.pkl and resuming from it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/io/pth.hpp"

using namespace sgckpt;
using sgckpt::test::contains;
using sgckpt::test::error_message;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

// A small state dict; "id" marks which update it came from, num_batches_tracked = 100 * id.
Value make_state(int id) {
  std::mt19937 rng(static_cast<unsigned>(1000 + id));
  std::normal_distribution<float> nd;
  Value s = Value::make_ordered_dict();
  Tensor w = Tensor::empty(DType::Float32, {5, 3});
  for (std::size_t i = 0; i < w.numel(); ++i) w.mutable_data<float>()[i] = nd(rng);
  s["conv.weight"] = w;
  Tensor m = Tensor::empty(DType::Float32, {1029});
  for (std::size_t i = 0; i < m.numel(); ++i) m.mutable_data<float>()[i] = nd(rng) * 1000.0f;
  s["bn.running_mean"] = m;
  const std::int64_t nbt = 100 * id;
  s["bn.num_batches_tracked"] =
      Tensor::from_values<std::int64_t>(DType::Int64, {}, std::span<const std::int64_t>(&nbt, 1));
  Tensor h = Tensor::empty(DType::Float16, {4});
  for (std::size_t i = 0; i < 4; ++i) h.mutable_data<std::uint16_t>()[i] = float_to_half(nd(rng));
  s["half"] = h;
  const double idv = id;
  s["id"] = Tensor::from_values<double>(DType::Float64, {1}, std::span<const double>(&idv, 1));
  s.dict().set_attribute("_metadata", Value::make_ordered_dict());
  return s;
}

int id_of(const Value& s) {
  return static_cast<int>(s.at("id").tensor().data<double>()[0]);
}

std::vector<int> slot_ids(const ModelAveraging& avg) {
  std::vector<int> ids;
  for (std::size_t i = 0; i < avg.capacity(); ++i)
    ids.push_back(avg.snapshot(i) ? id_of(*avg.snapshot(i)) : -1);
  return ids;
}

struct Step {
  double metric;
  bool accepted;
  std::vector<double> metrics;  // after the step
  std::vector<int> ids;         // snapshot ids after the step (-1 empty)
};

void run_script(const std::filesystem::path& dir, bool greater, const std::vector<Step>& steps) {
  ModelAveraging avg(dir, greater, 3);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    INFO("step " << i << " metric " << steps[i].metric);
    CHECK(avg.update(make_state(static_cast<int>(i)), steps[i].metric) == steps[i].accepted);
    CHECK(avg.metrics() == steps[i].metrics);
    CHECK(slot_ids(avg) == steps[i].ids);
  }
}

// The expected mean of the given states, elementwise in double (float32 rounded once).
void check_average(const Value& avg, const std::vector<Value>& states, int integer_from) {
  for (const auto& [k, v] : avg.dict()) {
    const std::string key_name = k.to_string();
    INFO("key " << key_name);
    const Tensor& t = v.tensor();
    if (t.dtype() == DType::Int64) {
      CHECK(t.item<std::int64_t>() == 100 * integer_from);
      continue;
    }
    for (std::size_t i = 0; i < t.numel(); ++i) {
      double sum = 0;
      for (const auto& s : states) sum += s.at(k).tensor().element_as_double(i);
      const double mean = sum / static_cast<double>(states.size());
      if (t.dtype() == DType::Float32) CHECK(t.data<float>()[i] == static_cast<float>(mean));
      if (t.dtype() == DType::Float64) CHECK(t.data<double>()[i] == mean);
      if (t.dtype() == DType::Float16)
        CHECK(t.data<std::uint16_t>()[i] == float_to_half(static_cast<float>(mean)));
    }
  }
}

}  // namespace

TEST_CASE("averaging: slots fill and are replaced by SG's rule (greater is better)") {
  sgckpt::test::TempDir dir;
  const double m = -kInf;
  run_script(dir.path(), true,
             {
                 {0.5, true, {0.5, m, m}, {0, -1, -1}},  // empty slots fill in order
                 {0.7, true, {0.5, 0.7, m}, {0, 1, -1}},
                 {0.6, true, {0.5, 0.7, 0.6}, {0, 1, 2}},
                 {kNaN, false, {0.5, 0.7, 0.6}, {0, 1, 2}},  // non-finite never enters
                 {0.4, false, {0.5, 0.7, 0.6}, {0, 1, 2}},   // worse than the worst
                 {0.5, false, {0.5, 0.7, 0.6}, {0, 1, 2}},   // a tie is not an improvement
                 {0.9, true, {0.9, 0.7, 0.6}, {6, 1, 2}},    // replaces the worst (slot 0)
                 {kInf, false, {0.9, 0.7, 0.6}, {6, 1, 2}},
                 {0.65, true, {0.9, 0.7, 0.65}, {6, 1, 8}},
                 {-kInf, false, {0.9, 0.7, 0.65}, {6, 1, 8}},
                 {0.7, true, {0.9, 0.7, 0.7}, {6, 1, 10}},
                 {0.8, true, {0.9, 0.8, 0.7}, {6, 11, 10}},  // tie 0.7/0.7: the first index
             });
}

TEST_CASE("averaging: slots fill and are replaced by SG's rule (lower is better)") {
  sgckpt::test::TempDir dir;
  const double p = kInf;
  run_script(dir.path(), false,
             {
                 {0.5, true, {0.5, p, p}, {0, -1, -1}},
                 {0.3, true, {0.5, 0.3, p}, {0, 1, -1}},
                 {kInf, false, {0.5, 0.3, p}, {0, 1, -1}},
                 {0.4, true, {0.5, 0.3, 0.4}, {0, 1, 3}},
                 {0.6, false, {0.5, 0.3, 0.4}, {0, 1, 3}},  // worse than the worst (0.5)
                 {0.5, false, {0.5, 0.3, 0.4}, {0, 1, 3}},
                 {0.2, true, {0.2, 0.3, 0.4}, {6, 1, 3}},  // replaces the worst (0.5, slot 0)
                 {kNaN, false, {0.2, 0.3, 0.4}, {6, 1, 3}},
                 {0.35, true, {0.2, 0.3, 0.35}, {6, 1, 8}},
                 {-kInf, false, {0.2, 0.3, 0.35}, {6, 1, 8}},
             });
}

TEST_CASE("averaging: the first index wins ties for the worst slot") {
  sgckpt::test::TempDir dir;
  ModelAveraging avg(dir.path(), true, 4);
  CHECK(avg.update(make_state(0), 0.6));
  CHECK(avg.update(make_state(1), 0.9));
  CHECK(avg.update(make_state(2), 0.6));
  CHECK(avg.update(make_state(3), 0.6));
  CHECK(avg.update(make_state(4), 0.7));  // worst 0.6 at slots 0, 2, 3: slot 0
  CHECK(slot_ids(avg) == std::vector<int>{4, 1, 2, 3});
  CHECK(avg.update(make_state(5), 0.7));  // now slot 2
  CHECK(slot_ids(avg) == std::vector<int>{4, 1, 5, 3});
  CHECK(avg.best_slot() == 1u);
}

TEST_CASE("averaging: the average is the mean of the N best states, integers from the best") {
  sgckpt::test::TempDir dir;
  ModelAveraging avg(dir.path(), true, 3);
  CHECK_FALSE(avg.average().has_value());
  CHECK(avg.update(make_state(0), 0.1));
  {
    auto a = avg.average();
    REQUIRE(a.has_value());
    check_average(*a, {make_state(0)}, 0);  // one snapshot: itself
    for (const auto& [k, v] : a->dict()) CHECK(v.tensor().equal(make_state(0).at(k).tensor()));
  }
  const std::vector<double> metrics = {0.3, 0.2, 0.05, 0.4, 0.25};  // ids 1..5
  for (std::size_t i = 0; i < metrics.size(); ++i)
    avg.update(make_state(static_cast<int>(i) + 1), metrics[i]);
  // Best three: id 4 (0.4), id 1 (0.3), id 5 (0.25).
  CHECK(avg.size() == 3);
  auto a = avg.average();
  REQUIRE(a.has_value());
  check_average(*a, {make_state(4), make_state(1), make_state(5)}, 4);
  CHECK(a->at("bn.num_batches_tracked").tensor().dtype() == DType::Int64);  // stays integral
  // Key order and OrderedDict-ness of the snapshots; the _metadata attribute is kept.
  CHECK(a->dict().kind() == DictKind::OrderedDict);
  CHECK(a->dict().items().front().first.str() == "conv.weight");
  CHECK(a->dict().attribute("_metadata") != nullptr);

  // average_states directly: threads do not change the result; integers from the first.
  const std::vector<Value> states = {make_state(7), make_state(8), make_state(9)};
  const Value one = average_states(std::span<const Value>(states), 1);
  const Value three = average_states(std::span<const Value>(states), 3);
  for (const auto& [k, v] : one.dict()) CHECK(v.tensor().equal(three.at(k).tensor()));
  check_average(one, states, 7);
}

TEST_CASE("average_states refuses states that do not match") {
  std::vector<Value> states = {make_state(1), make_state(2)};
  states[1].dict().erase("half");
  CHECK(contains(error_message([&] { average_states(std::span<const Value>(states)); }), "missing ['half']"));
  states[1] = make_state(2);
  states[1]["conv.weight"] = Tensor::zeros(DType::Float32, {3, 5});
  CHECK(contains(error_message([&] { average_states(std::span<const Value>(states)); }),
                 "entry 'conv.weight' has shape [3, 5], expected [5, 3]"));
  states[1] = make_state(2);
  states[1]["conv.weight"] = Tensor::zeros(DType::Float64, {5, 3});
  CHECK(contains(error_message([&] { average_states(std::span<const Value>(states)); }),
                 "entry 'conv.weight' is float64, expected float32"));
  CHECK(contains(error_message([&] { average_states(std::span<const Value>()); }), "at least one"));
}

TEST_CASE("average_states reads strided inputs") {
  std::vector<Value> states;
  std::vector<Tensor> bases;
  for (int s = 0; s < 2; ++s) {
    Tensor base = Tensor::empty(DType::Float32, {2, 3});
    for (int i = 0; i < 6; ++i) base.mutable_data<float>()[i] = static_cast<float>(i + 10 * s);
    Value v = Value::make_ordered_dict();
    v["t"] = Tensor::view_of(base.storage(), DType::Float32, 0, {3, 2}, {1, 3});  // transposed
    states.push_back(v);
    bases.push_back(base);
  }
  const Value a = average_states(std::span<const Value>(states));
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t j = 0; j < 2; ++j)
      CHECK(a.at("t").tensor().at<float>({i, j}) == static_cast<float>(j * 3 + i) + 5.0f);
}

TEST_CASE("averaging: persistence, torch-style file layout, and resuming continues the same state") {
  sgckpt::test::TempDir dir;
  const auto file = dir.path() / "averaging_snapshots.pkl";
  {
    ModelAveraging avg(dir.path(), true, 3);
    CHECK(avg.snapshot_path() == file);
    CHECK_FALSE(std::filesystem::exists(file));  // nothing written before the first update
    CHECK_FALSE(avg.update(make_state(0), kNaN));
    CHECK(std::filesystem::exists(file));  // the first update writes, even when rejected
    const Value f = load(file);
    for (int i = 0; i < 3; ++i) CHECK(f.at("snapshot" + std::to_string(i)).is_none());
    const Tensor& m = f.at("snapshots_metric").tensor();
    CHECK(m.dtype() == DType::Float64);
    CHECK(m.shape() == Shape{3});
    CHECK(m.data<double>()[0] == -kInf);
  }
  std::vector<double> metrics = {0.3, 0.2, 0.5, 0.1, 0.4};
  ModelAveraging a(dir.path(), true, 3);
  for (std::size_t i = 0; i < 3; ++i) a.update(make_state(static_cast<int>(i) + 1), metrics[i]);
  {
    const Value f = load(file);
    CHECK(f.dict().items().size() == 4);
    CHECK(f.dict().items()[0].first.str() == "snapshot0");
    CHECK(f.dict().items()[3].first.str() == "snapshots_metric");
    CHECK(id_of(f.at("snapshot2")) == 3);
    CHECK(f.at("snapshots_metric").tensor().data<double>()[1] == 0.2);
  }
  // Resume: a new object on the same run dir holds the same state, and both continue alike.
  ModelAveraging b(dir.path(), true, 3);
  CHECK(b.metrics() == a.metrics());
  CHECK(slot_ids(b) == slot_ids(a));
  for (std::size_t i = 3; i < metrics.size(); ++i) {
    CHECK(a.update(make_state(static_cast<int>(i) + 1), metrics[i]) ==
          b.update(make_state(static_cast<int>(i) + 1), metrics[i]));
    CHECK(b.metrics() == a.metrics());
    CHECK(slot_ids(b) == slot_ids(a));
  }
  const Value avg_a = *a.average();
  const Value avg_b = *b.average();
  for (const auto& [k, v] : avg_a.dict()) CHECK(v.tensor().equal(avg_b.at(k).tensor()));
  // The reloaded snapshots carry what was saved, integers included.
  CHECK(b.snapshot(0)->at("bn.num_batches_tracked").tensor().item<std::int64_t>() ==
        100 * id_of(*b.snapshot(0)));

  // A rejected update leaves the file as it was.
  const auto before = std::filesystem::last_write_time(file);
  const auto bytes_before = sgckpt::test::read_file(file);
  CHECK_FALSE(b.update(make_state(99), 0.0));
  CHECK(sgckpt::test::read_file(file) == bytes_before);
  CHECK(std::filesystem::last_write_time(file) == before);

  // End of training.
  b.remove_snapshot_file();
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK(b.average().has_value());
  b.remove_snapshot_file();  // already gone: fine
  ModelAveraging fresh(dir.path(), true, 3);
  CHECK(fresh.size() == 0);
}

TEST_CASE("averaging: resuming refuses a file of another size or metric direction") {
  sgckpt::test::TempDir dir;
  {
    ModelAveraging avg(dir.path(), false, 4);
    avg.update(make_state(1), 0.5);
  }
  CHECK(contains(error_message([&] { ModelAveraging(dir.path(), false, 3); }),
                 "the file holds 4 snapshot slots, this averaging keeps 3"));
  CHECK(contains(error_message([&] { ModelAveraging(dir.path(), true, 4); }), "greater_is_better=false"));
  ModelAveraging ok(dir.path(), false, 4);
  CHECK(ok.size() == 1);
  CHECK(contains(error_message([&] { ModelAveraging(dir.path(), false, 0); }), "n_models >= 1"));
}

TEST_CASE("averaging: an update with another structure is refused and changes nothing") {
  sgckpt::test::TempDir dir;
  ModelAveraging avg(dir.path(), true, 3);
  avg.update(make_state(1), 0.5);
  const auto bytes = sgckpt::test::read_file(avg.snapshot_path());
  Value other = make_state(2);
  other["extra"] = Tensor::zeros(DType::Float32, {2});
  CHECK(contains(error_message([&] { avg.update(other, 0.9); }), "extra ['extra']"));
  CHECK(avg.size() == 1);
  CHECK(sgckpt::test::read_file(avg.snapshot_path()) == bytes);
  CHECK(contains(error_message([&] { avg.update(Value(3), 0.9); }), "not a state dict"));
}

TEST_CASE("averaging: snapshots are deep copies") {
  sgckpt::test::TempDir dir;
  ModelAveraging avg(dir.path(), true, 2);
  Value live = make_state(1);
  avg.update(live, 0.5);
  live.at("conv.weight").tensor().mutable_data<float>()[0] = 12345.0f;  // training goes on
  CHECK(avg.snapshot(0)->at("conv.weight").tensor().data<float>()[0] != 12345.0f);
}

TEST_CASE("average_states: the vector and portable loops agree bit for bit") {
  std::vector<Value> states;
  for (int s = 0; s < 5; ++s) {
    Value v = make_state(s);
    v["conv.weight"].tensor().mutable_data<float>()[3] = -0.0f;  // all -0: the mean is -0
    states.push_back(v);
  }
  const Value vec = average_states(std::span<const Value>(states), 2);
  detail::ema_kernel_override() = detail::EmaKernel::Portable;
  const Value portable = average_states(std::span<const Value>(states), 2);
  detail::ema_kernel_override() = detail::EmaKernel::Auto;
  for (const auto& [k, v] : vec.dict()) CHECK(v.tensor().equal(portable.at(k).tensor()));
  CHECK(std::signbit(vec.at("conv.weight").tensor().data<float>()[3]));
  check_average(vec, states, 0);
}
