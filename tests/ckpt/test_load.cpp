// Tests of sgckpt/ckpt/load.hpp: the StrictLoad modes, complete error reports, the target
// left untouched on failure, the module. prefix, the backbone prefix, and EMA preference.
#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/io/pth.hpp"

using namespace sgckpt;
using sgckpt::test::contains;
using sgckpt::test::error_message;

namespace {

// A float32 tensor whose elements are base, base+1, ...
Tensor ramp(Shape shape, float base, DType dtype = DType::Float32) {
  Tensor f = Tensor::empty(DType::Float32, shape);
  for (std::size_t i = 0; i < f.numel(); ++i) f.mutable_data<float>()[i] = base + static_cast<float>(i);
  if (dtype == DType::Float32) return f;
  Tensor t = Tensor::empty(dtype, shape);
  for (std::size_t i = 0; i < f.numel(); ++i) {
    const float x = f.data<float>()[i];
    switch (dtype) {
      case DType::Float64:
        t.mutable_data<double>()[i] = x;
        break;
      case DType::Float16:
        t.mutable_data<std::uint16_t>()[i] = float_to_half(x);
        break;
      case DType::Int64:
        t.mutable_data<std::int64_t>()[i] = static_cast<std::int64_t>(x);
        break;
      default:
        FAIL("ramp: unsupported dtype");
    }
  }
  return t;
}

Tensor i64(std::int64_t v) {
  return Tensor::from_values<std::int64_t>(DType::Int64, {}, std::span<const std::int64_t>(&v, 1));
}

// The model: an OrderedDict state dict with _metadata, values all zero.
Value model_state(const std::string& prefix = "") {
  Value m = Value::make_ordered_dict();
  m[prefix + "conv.weight"] = Tensor::zeros(DType::Float32, {2, 3});
  m[prefix + "bn.weight"] = Tensor::zeros(DType::Float32, {2});
  m[prefix + "bn.num_batches_tracked"] = Tensor::zeros(DType::Int64, {});
  m[prefix + "fc.weight"] = Tensor::zeros(DType::Float32, {4, 2});
  m[prefix + "fc.bias"] = Tensor::zeros(DType::Float32, {4});
  Value meta = Value::make_ordered_dict();
  meta[""] = Value::make_dict();
  m.dict().set_attribute("_metadata", meta);
  return m;
}

// A matching checkpoint state dict, values from 1, 10, 100, ...
Value ckpt_state(const std::string& prefix = "") {
  Value c = Value::make_ordered_dict();
  c[prefix + "conv.weight"] = ramp({2, 3}, 1);
  c[prefix + "bn.weight"] = ramp({2}, 10);
  c[prefix + "bn.num_batches_tracked"] = i64(7);
  c[prefix + "fc.weight"] = ramp({4, 2}, 100);
  c[prefix + "fc.bias"] = ramp({4}, 1000);
  return c;
}

Value wrap(const Value& net, const Value* ema = nullptr) {
  Value ck = Value::make_dict();
  ck["net"] = net;
  ck["epoch"] = 3;
  ck["acc"] = 0.5;
  if (ema) ck["ema_net"] = *ema;
  return ck;
}

std::vector<std::vector<std::byte>> snapshot(const Value& m) {
  std::vector<std::vector<std::byte>> out;
  for (const auto& [k, v] : m.dict()) out.push_back(v.tensor().contiguous_bytes());
  return out;
}

float f(const Value& m, const char* key, std::size_t i = 0) {
  return m.at(key).tensor().data<float>()[i];
}

}  // namespace

TEST_CASE("strict load mode names") {
  CHECK(parse_strict_load("on") == StrictLoad::On);
  CHECK(parse_strict_load("ON") == StrictLoad::On);
  CHECK(parse_strict_load("true") == StrictLoad::On);
  CHECK(parse_strict_load("True") == StrictLoad::On);
  CHECK(parse_strict_load("off") == StrictLoad::Off);
  CHECK(parse_strict_load("false") == StrictLoad::Off);
  CHECK(parse_strict_load("no_key_matching") == StrictLoad::NoKeyMatching);
  CHECK(parse_strict_load("NO_KEY_MATCHING") == StrictLoad::NoKeyMatching);
  CHECK(parse_strict_load("key_matching") == StrictLoad::KeyMatching);
  CHECK(strict_load_from_bool(true) == StrictLoad::On);
  CHECK(strict_load_from_bool(false) == StrictLoad::Off);
  CHECK(to_string(StrictLoad::NoKeyMatching) == "no_key_matching");
  CHECK(contains(error_message([] { parse_strict_load("strict"); }), "unknown strict load mode 'strict'"));
}

TEST_CASE("load: exact match in every mode copies values, converts dtypes, keeps _metadata") {
  for (auto mode : {StrictLoad::On, StrictLoad::Off, StrictLoad::NoKeyMatching, StrictLoad::KeyMatching}) {
    INFO("mode " << to_string(mode));
    Value m = model_state();
    Value c = ckpt_state();
    c["bn.weight"] = ramp({2}, 10, DType::Float64);  // float64 -> float32
    c["fc.bias"] = ramp({4}, 1000, DType::Float16);  // float16 -> float32
    const LoadReport r = load_checkpoint_to_model(m, wrap(c), {.strict = mode});
    CHECK(r.ok);
    CHECK_FALSE(r.by_position);
    CHECK(r.loaded.size() == 5);
    CHECK(r.loaded[0] == std::pair<std::string, std::string>{"conv.weight", "conv.weight"});
    CHECK(r.missing.empty());
    CHECK(r.unexpected.empty());
    CHECK(r.mismatched.empty());
    CHECK(f(m, "conv.weight", 5) == 6.0f);
    CHECK(f(m, "bn.weight", 1) == 11.0f);
    CHECK(m.at("bn.weight").tensor().dtype() == DType::Float32);  // the model keeps its dtype
    CHECK(f(m, "fc.bias", 3) == 1003.0f);
    CHECK(m.at("bn.num_batches_tracked").tensor().item<std::int64_t>() == 7);
    CHECK(m.dict().attribute("_metadata") != nullptr);
    CHECK(contains(r.message(), "5 tensors loaded by key"));
  }
}

TEST_CASE(
    "load: strict=on reports every missing, unexpected and mismatched key in one error, changes nothing") {
  Value m = model_state();
  m["bn.weight"].tensor().mutable_data<float>()[0] = 42.0f;
  const auto before = snapshot(m);
  Value c = ckpt_state();
  c.dict().erase("fc.bias");
  c.dict().erase("bn.weight");
  c["head.extra"] = ramp({3}, 0);
  c["fc.weight"] = ramp({5, 2}, 0);
  const LoadReport plan = plan_checkpoint_load(m, wrap(c), {.strict = StrictLoad::On});
  CHECK_FALSE(plan.ok);
  CHECK(plan.missing == std::vector<std::string>{"bn.weight", "fc.bias"});
  CHECK(plan.unexpected == std::vector<std::string>{"head.extra"});
  REQUIRE(plan.mismatched.size() == 1);
  CHECK(plan.mismatched[0].model == "fc.weight");
  CHECK(plan.mismatched[0].model_shape == Shape{4, 2});
  CHECK(plan.mismatched[0].ckpt_shape == Shape{5, 2});

  const std::string msg =
      error_message([&] { load_checkpoint_to_model(m, wrap(c), {.strict = StrictLoad::On}); });
  CHECK(contains(msg, "strict=on"));
  CHECK(contains(msg, "2 missing, 1 unexpected, 1 shape-mismatched"));
  CHECK(contains(msg, "missing from the checkpoint: 'bn.weight', 'fc.bias'"));
  CHECK(contains(msg, "unexpected in the checkpoint: 'head.extra'"));
  CHECK(contains(msg, "model 'fc.weight' [4, 2] vs checkpoint 'fc.weight' [5, 2]"));
  CHECK(snapshot(m) == before);  // conv.weight matched, but nothing was written
}

TEST_CASE("load: strict=off skips missing and unexpected keys, refuses shape mismatches") {
  Value m = model_state();
  Value c = ckpt_state();
  c.dict().erase("fc.bias");
  c["head.extra"] = ramp({3}, 0);
  const LoadReport r = load_checkpoint_to_model(m, wrap(c), {.strict = StrictLoad::Off});
  CHECK(r.ok);
  CHECK(r.loaded.size() == 4);
  CHECK(r.missing == std::vector<std::string>{"fc.bias"});
  CHECK(r.unexpected == std::vector<std::string>{"head.extra"});
  CHECK(f(m, "fc.weight", 7) == 107.0f);
  CHECK(f(m, "fc.bias") == 0.0f);
  CHECK(contains(r.message(), "skipped: 1 missing, 1 unexpected"));

  Value m2 = model_state();
  const auto before = snapshot(m2);
  c["conv.weight"] = ramp({3, 2}, 0);
  const std::string msg =
      error_message([&] { load_checkpoint_to_model(m2, wrap(c), {.strict = StrictLoad::Off}); });
  CHECK(contains(msg, "strict=off"));
  CHECK(contains(msg, "model 'conv.weight' [2, 3] vs checkpoint 'conv.weight' [3, 2]"));
  CHECK(contains(msg, "missing from the checkpoint: 'fc.bias'"));  // listed together
  CHECK(snapshot(m2) == before);
}

TEST_CASE("load: no_key_matching falls back to matching by position") {
  // Same shapes in the same order under other names (an older naming scheme).
  Value c = Value::make_ordered_dict();
  const Value original = ckpt_state();
  const auto& src = original.dict().items();
  for (std::size_t i = 0; i < src.size(); ++i) c.dict().set("layer" + std::to_string(i), src[i].second);
  {
    Value m = model_state();
    const LoadReport r = load_checkpoint_to_model(m, c, {.strict = StrictLoad::NoKeyMatching});
    CHECK(r.ok);
    CHECK(r.by_position);
    CHECK(r.loaded[3] == std::pair<std::string, std::string>{"fc.weight", "layer3"});
    CHECK(f(m, "fc.bias", 2) == 1002.0f);
    CHECK(contains(r.message(), "5 tensors loaded by position"));
  }
  // strict=on refuses it, with a hint; nothing changes.
  {
    Value m = model_state();
    const auto before = snapshot(m);
    const std::string msg =
        error_message([&] { load_checkpoint_to_model(m, c, {.strict = StrictLoad::On}); });
    CHECK(contains(msg, "5 missing, 5 unexpected"));
    CHECK(contains(msg, "would load by position"));
    CHECK(snapshot(m) == before);
  }
  // More checkpoint tensors than model tensors: the extra ones are dropped (as SG), reported.
  {
    Value longer = c;
    longer.dict().set("layer5", ramp({9}, 0));
    Value m = model_state();
    const LoadReport r = load_checkpoint_to_model(m, longer, {.strict = StrictLoad::NoKeyMatching});
    CHECK(r.ok);
    CHECK(r.unexpected == std::vector<std::string>{"layer5"});
  }
  // Fewer: an error naming the model keys left unloaded.
  {
    Value shorter = c;
    shorter.dict().erase("layer4");
    Value m = model_state();
    const auto before = snapshot(m);
    const std::string msg =
        error_message([&] { load_checkpoint_to_model(m, shorter, {.strict = StrictLoad::NoKeyMatching}); });
    CHECK(contains(msg, "strict=no_key_matching"));
    CHECK(contains(msg, "the checkpoint has 4 tensors, the model 5 (first left unloaded: 'fc.bias')"));
    CHECK(snapshot(m) == before);
  }
  // A shape that does not fit at some position: one error with the key-based view and the
  // positional failure.
  {
    Value bad = c;
    bad["layer1"] = ramp({3}, 0);
    Value m = model_state();
    const auto before = snapshot(m);
    const std::string msg =
        error_message([&] { load_checkpoint_to_model(m, bad, {.strict = StrictLoad::NoKeyMatching}); });
    CHECK(contains(msg, "missing from the checkpoint: 'conv.weight', 'bn.weight'"));
    CHECK(contains(msg, "unexpected in the checkpoint: 'layer0'"));
    CHECK(contains(
        msg,
        "matching by position failed too: checkpoint 'layer1' [3] does not fit model 'bn.weight' [2] "
        "at position 1"));
    CHECK(snapshot(m) == before);
  }
}

TEST_CASE("load: key_matching loads what fits, skipping and reporting the rest") {
  Value m = model_state();
  Value c = ckpt_state();
  c["fc.weight"] = ramp({10, 2}, 0);  // a new head size
  c.dict().erase("fc.bias");
  c["aux.weight"] = ramp({2}, 0);
  const LoadReport r = load_checkpoint_to_model(m, wrap(c), {.strict = StrictLoad::KeyMatching});
  CHECK(r.ok);
  CHECK(r.loaded.size() == 3);
  REQUIRE(r.mismatched.size() == 1);
  CHECK(r.mismatched[0].model == "fc.weight");
  CHECK(r.missing == std::vector<std::string>{"fc.bias"});
  CHECK(r.unexpected == std::vector<std::string>{"aux.weight"});
  CHECK(f(m, "conv.weight") == 1.0f);
  CHECK(f(m, "fc.weight") == 0.0f);  // skipped
}

TEST_CASE("load: module. is stripped only when every key has it") {
  {
    Value m = model_state();
    const LoadReport r = load_checkpoint_to_model(m, wrap(ckpt_state("module.")), {.strict = StrictLoad::On});
    CHECK(r.ok);
    CHECK(r.loaded[0] == std::pair<std::string, std::string>{"conv.weight", "module.conv.weight"});
    CHECK(f(m, "bn.weight") == 10.0f);
  }
  {
    Value c = ckpt_state("module.");
    c["conv.weight"] = ramp({2, 3}, 0);  // one key without the prefix: nothing is stripped
    Value m = model_state();
    const LoadReport r = plan_checkpoint_load(m, wrap(c), {.strict = StrictLoad::On});
    CHECK_FALSE(r.ok);
    CHECK(r.missing.size() == 4);
    CHECK(r.unexpected.size() == 5);
  }
}

TEST_CASE("load: a backbone prefix loads the model's sub-tree from a backbone-relative checkpoint") {
  Value m = model_state("backbone.");
  m["head.weight"] = Tensor::zeros(DType::Float32, {3});
  m["head.weight"].tensor().mutable_data<float>()[0] = -1.0f;
  const LoadReport r = load_checkpoint_to_model(m, wrap(ckpt_state()),
                                                {.strict = StrictLoad::On, .backbone_prefix = "backbone."});
  CHECK(r.ok);
  CHECK(r.loaded.size() == 5);
  CHECK(r.loaded[0] == std::pair<std::string, std::string>{"backbone.conv.weight", "conv.weight"});
  CHECK(f(m, "backbone.fc.bias", 1) == 1001.0f);
  CHECK(f(m, "head.weight") == -1.0f);  // outside the backbone: untouched

  Value c = ckpt_state();
  c.dict().erase("bn.weight");
  Value m2 = model_state("backbone.");
  const LoadReport p =
      plan_checkpoint_load(m2, wrap(c), {.strict = StrictLoad::On, .backbone_prefix = "backbone."});
  CHECK(p.missing == std::vector<std::string>{"backbone.bn.weight"});  // full model key

  CHECK(contains(error_message([&] {
                   plan_checkpoint_load(m2, wrap(c), {.strict = StrictLoad::On, .backbone_prefix = "neck."});
                 }),
                 "no key of the model state starts with the backbone prefix 'neck.'"));
}

TEST_CASE("load: ema_net when asked, net otherwise, the dict itself when it has no net") {
  Value net = ckpt_state();
  Value ema = ckpt_state();
  ema["conv.weight"] = ramp({2, 3}, 500);
  const Value ck = wrap(net, &ema);
  {
    Value m = model_state();
    load_checkpoint_to_model(m, ck, {.strict = StrictLoad::On, .weights = Weights::Ema});
    CHECK(f(m, "conv.weight") == 500.0f);
  }
  {
    Value m = model_state();
    load_checkpoint_to_model(m, ck, {.strict = StrictLoad::On});
    CHECK(f(m, "conv.weight") == 1.0f);
  }
  {
    Value m = model_state();
    load_checkpoint_to_model(m, ema, {.strict = StrictLoad::On});  // a bare state dict
    CHECK(f(m, "conv.weight") == 500.0f);
  }
  Value m = model_state();
  CHECK(contains(error_message([&] {
                   load_checkpoint_to_model(m, wrap(net),
                                            {.strict = StrictLoad::On, .weights = Weights::Ema});
                 }),
                 "no EMA network stored in checkpoint"));
  Value none_net = Value::make_dict();
  none_net["net"] = Value();
  CHECK(contains(error_message([&] { load_checkpoint_to_model(m, none_net, {.strict = StrictLoad::On}); }),
                 "'net' is None"));
  // A full checkpoint without net is not a state dict: refused clearly.
  Value no_net = Value::make_dict();
  no_net["epoch"] = 3;
  CHECK(contains(error_message([&] { load_checkpoint_to_model(m, no_net, {.strict = StrictLoad::Off}); }),
                 "entry 'epoch' is a int, not a tensor"));
}

TEST_CASE("load: from a path; read-only (mapped) and strided targets") {
  sgckpt::test::TempDir dir;
  save(wrap(ckpt_state()), dir / "ckpt.pth");
  {
    Value m = model_state();
    const LoadReport r = load_checkpoint_to_model(m, (dir / "ckpt.pth").string(), {.strict = StrictLoad::On});
    CHECK(r.ok);
    CHECK(f(m, "fc.weight", 1) == 101.0f);
  }
  {
    Value m = model_state();
    Value c = ckpt_state();
    c.dict().erase("fc.bias");
    save(wrap(c), dir / "short.pth");
    const Error e = sgckpt::test::error_of(
        [&] { load_checkpoint_to_model(m, dir / "short.pth", {.strict = StrictLoad::On}); });
    CHECK(contains(e.what(), "short.pth"));
    CHECK(contains(e.what(), "missing from the checkpoint: 'fc.bias'"));
  }
  // A model state loaded with mmap: its read-only tensors are replaced by owned ones.
  save(model_state(), dir / "model.pth");
  LoadOptions mm;
  mm.mmap = true;
  Value mapped = load(dir / "model.pth", mm);
  load_checkpoint_to_model(mapped, wrap(ckpt_state()), {.strict = StrictLoad::On});
  CHECK(mapped.at("fc.weight").tensor().data<float>()[7] == 107.0f);
  for (const auto& [k, v] : mapped.dict()) CHECK_FALSE(v.tensor().storage()->read_only());
  CHECK(load(dir / "model.pth").at("fc.weight").tensor().data<float>()[7] == 0.0f);  // file untouched

  // A transposed target view: values land where the indices say.
  Tensor base = Tensor::zeros(DType::Float32, {3, 2});
  Value t = Value::make_ordered_dict();
  t["w"] = Tensor::view_of(base.storage(), DType::Float32, 0, {2, 3}, {1, 2});
  Value src = Value::make_ordered_dict();
  src["w"] = ramp({2, 3}, 0);
  load_checkpoint_to_model(t, src, {.strict = StrictLoad::On});
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 3; ++j) CHECK(base.at<float>({j, i}) == static_cast<float>(i * 3 + j));
}

TEST_CASE("load: int64 into float and float into int convert like torch's copy_") {
  Value m = Value::make_ordered_dict();
  m["a"] = Tensor::zeros(DType::Float32, {3});
  m["b"] = Tensor::zeros(DType::Int64, {3});
  Value c = Value::make_ordered_dict();
  c["a"] = ramp({3}, 5, DType::Int64);
  Tensor fl = ramp({3}, -1.75f);  // -1.75, -0.75, 0.25 -> truncated
  c["b"] = fl;
  load_checkpoint_to_model(m, c, {.strict = StrictLoad::On});
  CHECK(f(m, "a", 2) == 7.0f);
  CHECK(m.at("b").tensor().data<std::int64_t>()[0] == -1);
  CHECK(m.at("b").tensor().data<std::int64_t>()[1] == 0);
  CHECK(m.at("b").tensor().data<std::int64_t>()[2] == 0);
}

TEST_CASE("load: a checkpoint that is the model itself") {
  Value m = model_state();
  m["conv.weight"] = ramp({2, 3}, 3);
  const Value same = m;  // shares every tensor
  const LoadReport r = load_checkpoint_to_model(m, same, {.strict = StrictLoad::On});
  CHECK(r.ok);
  CHECK(f(m, "conv.weight", 4) == 7.0f);
}

TEST_CASE("which weights: net, ema_net, or ema_net when present (one rule for every caller)") {
  Value net = ckpt_state();
  Value ema = ckpt_state();
  const Value with_ema = wrap(net, &ema);
  const Value without = wrap(net);
  CHECK(checkpoint_state_dict_key(with_ema) == "net");
  CHECK(checkpoint_state_dict_key(with_ema, Weights::Ema) == "ema_net");
  CHECK(checkpoint_state_dict_key(with_ema, Weights::PreferEma) == "ema_net");
  CHECK(checkpoint_state_dict_key(without, Weights::PreferEma) == "net");
  CHECK(checkpoint_state_dict_key(net, Weights::PreferEma).empty());  // a bare state dict is itself
  CHECK(&checkpoint_state_dict(with_ema, Weights::PreferEma) == with_ema.dict().find("ema_net"));
  CHECK(&checkpoint_state_dict(net) == &net);
  Value none_ema = wrap(net);
  none_ema["ema_net"] = Value();  // None: as if absent when EMA is only preferred
  CHECK(checkpoint_state_dict_key(none_ema, Weights::PreferEma) == "net");
  CHECK(contains(error_message([&] { checkpoint_state_dict(none_ema, Weights::Ema); }), "no EMA network"));
  Value list_net = Value::make_dict();
  list_net["net"] = Value::make_list();
  const Error e = sgckpt::test::error_of([&] { checkpoint_state_dict(list_net); });
  CHECK(contains(e.what(), "'net' is a list, not a state dict"));
  CHECK(e.context().key_path == "net");
}

TEST_CASE("load: the default options are strict=on and net; a path may be any string") {
  sgckpt::test::TempDir dir;
  save(wrap(ckpt_state()), dir / "ckpt.pth");
  Value m = model_state();
  const std::string path = (dir / "ckpt.pth").string();
  CHECK(load_checkpoint_to_model(m, path).ok);
  CHECK(load_checkpoint_to_model(m, path.c_str()).mode == StrictLoad::On);
  CHECK(f(m, "fc.weight", 1) == 101.0f);
}

TEST_CASE("load: sources that overlap the model's memory are staged, so a swap is a swap") {
  Tensor base = ramp({6}, 0);
  Value m = Value::make_ordered_dict();
  m["a"] = Tensor::view_of(base.storage(), DType::Float32, 0, {3}, {1});
  m["b"] = Tensor::view_of(base.storage(), DType::Float32, 3, {3}, {1});
  Value c = Value::make_ordered_dict();
  c["a"] = m.at("b");
  c["b"] = m.at("a");
  load_checkpoint_to_model(m, c);
  for (std::int64_t i = 0; i < 3; ++i) {
    CHECK(base.at<float>({i}) == static_cast<float>(i + 3));
    CHECK(base.at<float>({i + 3}) == static_cast<float>(i));
  }
}
