// Tests of sgckpt/ckpt/ema.hpp: SG's decay schedules, and the fused EMA update against a naive
// reference, against torch 1.13 bit for bit, and its refusals.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/io/pth.hpp"

using namespace sgckpt;

namespace {

Tensor f32_tensor(Shape shape, std::mt19937& rng, float scale = 1.0f) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  std::normal_distribution<float> nd(0.0f, scale);
  float* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = nd(rng);
  return t;
}

template <class E>
Tensor tensor_of(DType d, Shape shape, std::vector<E> v) {
  return Tensor::from_values<E>(d, std::move(shape), std::span<const E>(v));
}

Tensor scalar_i64(std::int64_t v) {
  return tensor_of<std::int64_t>(DType::Int64, {}, {v});
}

// A small state dict with every dtype class an EMA meets, and sizes that exercise the
// vector loop's tail (1, 7, 10, 33, 4099 elements).
Value make_state(std::mt19937& rng, std::int64_t batches) {
  Value s = Value::make_ordered_dict();
  s["conv.weight"] = f32_tensor({4099}, rng);
  s["bn.weight"] = f32_tensor({33}, rng);
  s["bn.running_var"] = f32_tensor({7}, rng);
  s["bn.num_batches_tracked"] = scalar_i64(batches);
  s["fc.bias"] = f32_tensor({10}, rng);
  s["one"] = f32_tensor({1}, rng);
  {
    Tensor t = Tensor::empty(DType::Float64, {3, 5});
    std::normal_distribution<double> nd;
    for (std::size_t i = 0; i < 15; ++i) t.mutable_data<double>()[i] = nd(rng);
    s["f64"] = t;
  }
  {
    Tensor h = Tensor::empty(DType::Float16, {9});
    Tensor b = Tensor::empty(DType::BFloat16, {9});
    std::normal_distribution<float> nd;
    for (std::size_t i = 0; i < 9; ++i) {
      h.mutable_data<std::uint16_t>()[i] = float_to_half(nd(rng));
      b.mutable_data<std::uint16_t>()[i] = float_to_bfloat16(nd(rng));
    }
    s["half"] = h;
    s["bf16"] = b;
  }
  s["mask"] = tensor_of<std::uint8_t>(DType::Bool, {3}, {1, 0, static_cast<std::uint8_t>(batches & 1)});
  return s;
}

// The naive reference: one element at a time, libm's fma (correctly rounded).
Value naive_ema(const Value& ema, const Value& model, double decay) {
  Value out = clone_state(ema);
  const float d = static_cast<float>(decay), a = static_cast<float>(1.0 - decay);
  for (auto& [k, v] : out.dict()) {
    Tensor& e = v.tensor();
    const Tensor& w = model.at(k).tensor();
    for (std::size_t i = 0; i < e.numel(); ++i) {
      switch (e.dtype()) {
        case DType::Float32: {
          float& x = e.mutable_data<float>()[i];
          x = std::fma(w.data<float>()[i], a, x * d);
          break;
        }
        case DType::Float64: {
          double& x = e.mutable_data<double>()[i];
          x = std::fma(w.data<double>()[i], 1.0 - decay, x * decay);
          break;
        }
        case DType::Float16: {
          std::uint16_t& x = e.mutable_data<std::uint16_t>()[i];
          x = float_to_half(std::fma(half_to_float(w.data<std::uint16_t>()[i]), a, half_to_float(x) * d));
          break;
        }
        case DType::BFloat16: {
          std::uint16_t& x = e.mutable_data<std::uint16_t>()[i];
          x = float_to_bfloat16(
              std::fma(bfloat16_to_float(w.data<std::uint16_t>()[i]), a, bfloat16_to_float(x) * d));
          break;
        }
        default:
          std::memcpy(e.mutable_raw_data(), w.raw_data(), e.nbytes());
          i = e.numel();
          break;
      }
    }
  }
  return out;
}

void check_states_equal(const Value& a, const Value& b) {
  REQUIRE(a.dict().size() == b.dict().size());
  for (const auto& [k, v] : a.dict()) {
    const std::string key_name = k.to_string();
    INFO("key " << key_name);
    REQUIRE(b.contains(k));
    CHECK(v.tensor().equal(b.at(k).tensor()));
  }
}

template <class U, class F>
std::vector<F> from_bits(std::span<const U> bits) {
  std::vector<F> out;
  for (U b : bits) out.push_back(std::bit_cast<F>(b));
  return out;
}

// torch 1.13.1 (Debian, CPU capability AVX2): e.clone().mul_(d).add_(w, alpha=1-d), generated
// by tests' author with torch.Generator().manual_seed(1234); 37 elements so that torch's
// vector loop (32) and its scalar tail (5) both appear.
const std::uint32_t kE32[] = {
    0xbeab9987, 0xbfbeb0cb, 0x3efa7b30, 0xc02948b8, 0x3e2594d6, 0x400053e8, 0xbe3744a7, 0xbfb384eb,
    0xbf255073, 0x4029b87b, 0xc0119db5, 0xbf8da531, 0xbf837aa9, 0xc08696dc, 0x3f7641f6, 0xc0443257,
    0x40196038, 0xbe8dc0ef, 0xc0075836, 0xc099d3a7, 0x3f5e06d2, 0xbf54e92e, 0xc0d19b2f, 0x3f8cdc80,
    0x401334d3, 0x3d69e833, 0x3d8726f8, 0x405d6a15, 0xbf824dbd, 0xc04358d4, 0x406a181c, 0x3ef5f468,
    0xc003a7a5, 0xbe187c29, 0xc06fb65f, 0xc0235d67, 0xc013a57c};
const std::uint32_t kW32[] = {
    0x3f468635, 0xc017a958, 0x3fb08e78, 0xbf1110f3, 0xbf90e22c, 0x3f3696b3, 0xbf682f9d, 0xbf182224,
    0xc054632f, 0xc0704c53, 0x3fbcbc27, 0x3f4833c0, 0x3f840aaa, 0xc0008b32, 0x3ffc6833, 0x401111ce,
    0xc004b92a, 0x3ed7153e, 0x3f9d4b1e, 0xbde21356, 0xbf9ccfbd, 0x3e15b712, 0xc031ab67, 0xbf091c2e,
    0xbe806047, 0xc0407c51, 0xbf2847e7, 0x3fbd2183, 0x404b9015, 0xc01c6fc8, 0xbf0c9d2e, 0xbf30a2ed,
    0xbfb758e9, 0x3f93feec, 0x3f42d429, 0xbfad8f52, 0xbe811675};
const std::uint32_t kR32_9999[] = {
    0xbeab8af8, 0xbfbeb3ad, 0x3efa86da, 0xc0294550, 0x3e2572ed, 0x400051ca, 0xbe3757bd, 0xbfb38245,
    0xbf2561f7, 0x4029adfc, 0xc0119791, 0xbf8d9f01, 0xbf8373ea, 0xc086950f, 0x3f764894, 0xc044299a,
    0x401958e5, 0xbe8db7cc, 0xc00752bc, 0xc099cfce, 0x3f5df91c, 0xbf54e2c5, 0xc0d19817, 0x3f8cd724,
    0x401330a5, 0x3d68a6d8, 0x3d87010b, 0x405d66d6, 0xbf823ffb, 0xc04357d5, 0x406a1138, 0x3ef5e511,
    0xc003a69f, 0xbe1859f3, 0xc06faefd, 0xc0235b71, 0xc013a21e};
const std::uint32_t kR32_7[] = {
    0xbb00abd8, 0xbfe07af6, 0x3f419a33, 0xc00160f9, 0xbe67d03b, 0x3fcf0c13, 0xbecb7499, 0xbf947bc3,
    0xbfb94ade, 0x3f3adc26, 0xbf933df1, 0xbf0a3e24, 0xbed1b10d, 0xc062fcf6, 0x3fa1e98c, 0xbfbba231,
    0x3f87179b, 0xbd8acf86, 0xbf8e4b5c, 0xc0597a18, 0x3e7553b6, 0xbf09cf18, 0xc0ad5ff1, 0x3f1c12a5,
    0x3fc475ef, 0xbf5cbfd3, 0xbe1aa23f, 0x40375c16, 0x3e7766ad, 0xc037ac84, 0x401951e3, 0x3e045f73,
    0xbfef522d, 0x3e78734e, 0xc0192fc0, 0xc00c63ae, 0xbfd862f6};
const std::uint32_t kR32_2_11[] = {
    0x3f12d436, 0xc00d6c15, 0x3f9bd741, 0xbf71ce64, 0xbf658e3e, 0x3f72b853, 0xbf464cfc, 0xbf3dc0a2,
    0xc035492c, 0xc025bfd0, 0x3f4aefbc, 0x3ee096b9, 0x3f2841f0, 0xc01a1d1c, 0x3fe4e6e3, 0x3fa60ad4,
    0xbfa16919, 0x3e96341e, 0x3f1ef4f2, 0xbf76de91, 0xbf583b6c, 0xbd01667c, 0xc05d9620, 0xbe73d5ae,
    0x3e5a2aae, 0xc01cd2df, 0xbf069cda, 0x3feb41fe, 0x401ab4a3, 0xc02382e2, 0x3e5ccf61, 0xbef45288,
    0xbfc5e2cc, 0x3f6b3e69, 0xbd6ee52a, 0xbfc968ae, 0xbf203016};
const std::uint64_t kE64[] = {0x3fe75be124c76601, 0xbfeefcadeb662ff6, 0x4008fa3f1e4e92b4, 0x3fe18c509cf9a919,
                              0x3fd26562f25af73d, 0xbff5f6d042220089, 0x3fe3a8e6ff10b972, 0xbfcdb0332b89b9d5,
                              0x3fd0912d1acb3c23, 0xbfde65f50384a1c4, 0xbfc104c1700d8cf4};
const std::uint64_t kW64[] = {0xc00760950b5a4da0, 0xbff5d675e9227087, 0x4002eb1fd3f346f3, 0x3ff27f9305d84178,
                              0x3ff8115f0aad4ce5, 0xbff2af75b3dd291c, 0x3fadcb82e4de3efc, 0x3fe47c6e20efe921,
                              0xc00085ab269c4972, 0xbfeb4ef2872a55c1, 0x3fe4fc27d3e776ae};
const std::uint64_t kR64_7[] = {0xbfd7672a815b2b81, 0xbff1659371ee18f2, 0x400728e8ee666261,
                                0x3fe761f70afd50da, 0x3fe4e11ba807d179, 0xbff4fb01e4408cb5,
                                0x3fdca4184dac8c62, 0x3f9e6969152f13d2, 0xbfdc0e6196b59fc8,
                                0xbfe2d4f81cfb1f25, 0x3fba89b72c7ef11b};

}  // namespace

TEST_CASE("EMA decay schedules follow SG's formulas") {
  const EmaSchedule constant{EmaDecayType::Constant, 0.9999, 15};
  const EmaSchedule threshold{EmaDecayType::Threshold, 0.9999, 15};
  const EmaSchedule exp15{EmaDecayType::Exp, 0.9999, 15};
  const EmaSchedule exp4{EmaDecayType::Exp, 0.999, 4};
  for (std::int64_t total : {1, 7, 391, 97750}) {
    for (std::int64_t step = 0; step <= total; step += std::max<std::int64_t>(1, total / 257)) {
      CHECK(constant.at(step, total) == 0.9999);
      const double s = static_cast<double>(step);
      CHECK(threshold.at(step, total) == std::min(0.9999, (1.0 + s) / (10.0 + s)));
      const double x = s / static_cast<double>(total);
      CHECK(exp15.at(step, total) == 0.9999 * (1.0 - std::exp(-x * 15.0)));
      CHECK(exp4.at(step, total) == 0.999 * (1.0 - std::exp(-x * 4.0)));
    }
  }
  // Spot values (docs/supergradients.md §5): threshold at step 1 is 2/11; exp starts at 0 and reaches ~95% of
  // D after 3/beta of the training.
  CHECK(threshold.at(1, 100) == doctest::Approx(2.0 / 11.0).epsilon(1e-15));
  CHECK(threshold.at(1000000, 100) == 0.9999);
  CHECK(exp15.at(0, 100) == 0.0);
  CHECK(exp15.at(20, 100) == doctest::Approx(0.9999 * (1 - std::exp(-3.0))).epsilon(1e-15));
  CHECK(exp15.at(100, 100) == doctest::Approx(0.9999 * (1 - std::exp(-15.0))).epsilon(1e-15));
  // Defaults: SG's from_params fallbacks.
  const EmaSchedule def;
  CHECK(def.type == EmaDecayType::Exp);
  CHECK(def.decay == 0.9999);
  CHECK(def.beta == 15.0);
  CHECK(sgckpt::test::contains(sgckpt::test::error_message([&] { (void)exp15.at(5, 0); }), "total_steps"));
}

TEST_CASE("EMA decay type names") {
  CHECK(parse_ema_decay_type("exp") == EmaDecayType::Exp);
  CHECK(parse_ema_decay_type("EXP") == EmaDecayType::Exp);
  CHECK(parse_ema_decay_type("constant") == EmaDecayType::Constant);
  CHECK(parse_ema_decay_type("threshold") == EmaDecayType::Threshold);
  CHECK(to_string(EmaDecayType::Threshold) == "threshold");
  CHECK(sgckpt::test::contains(sgckpt::test::error_message([] { parse_ema_decay_type("linear"); }),
                               "unknown EMA decay type 'linear'"));
}

TEST_CASE("EMA update equals the naive reference for every dtype, copies integers") {
  std::mt19937 rng(7);
  const Value model = make_state(rng, 12);
  for (double decay : {0.9999, 0.9, 2.0 / 11.0, 0.5, 0.0, 1.0}) {
    for (unsigned threads : {1u, 2u, 3u, 0u}) {
      INFO("decay " << decay << " threads " << threads);
      std::mt19937 rng2(11);
      Value ema = make_state(rng2, 3);
      const Value expected = naive_ema(ema, model, decay);
      ema_update(ema, model, decay, threads);
      check_states_equal(ema, expected);
      CHECK(ema.at("bn.num_batches_tracked").tensor().item<std::int64_t>() == 12);
    }
  }
}

TEST_CASE("EMA update: the vector and portable loops agree bit for bit") {
  std::mt19937 rng(3);
  const Value model = make_state(rng, 1);
  std::mt19937 rng2(4);
  const Value start = make_state(rng2, 2);
  Value a = clone_state(start), b = clone_state(start);
  ema_update(a, model, 0.7311, 1);
  detail::ema_kernel_override() = detail::EmaKernel::Portable;
  ema_update(b, model, 0.7311, 1);
  detail::ema_kernel_override() = detail::EmaKernel::Auto;
  check_states_equal(a, b);
}

TEST_CASE("EMA update matches torch 1.13's mul_ + add_(alpha) bit for bit") {
  auto run32 = [&](double decay, std::span<const std::uint32_t> expected) {
    Value ema = Value::make_ordered_dict(), model = Value::make_ordered_dict();
    ema["w"] = tensor_of<float>(DType::Float32, {37}, from_bits<std::uint32_t, float>(kE32));
    model["w"] = tensor_of<float>(DType::Float32, {37}, from_bits<std::uint32_t, float>(kW32));
    ema_update(ema, model, decay);
    const float* r = ema.at("w").tensor().data<float>();
    for (std::size_t i = 0; i < 37; ++i) {
      INFO("decay " << decay << " element " << i);
      CHECK(std::bit_cast<std::uint32_t>(r[i]) == expected[i]);
    }
  };
  run32(0.9999, kR32_9999);
  run32(0.7, kR32_7);
  run32(2.0 / 11.0, kR32_2_11);
  for (auto kernel : {detail::EmaKernel::Auto, detail::EmaKernel::Portable}) {
    detail::ema_kernel_override() = kernel;
    Value ema = Value::make_ordered_dict(), model = Value::make_ordered_dict();
    ema["w"] = tensor_of<double>(DType::Float64, {11}, from_bits<std::uint64_t, double>(kE64));
    model["w"] = tensor_of<double>(DType::Float64, {11}, from_bits<std::uint64_t, double>(kW64));
    ema_update(ema, model, 0.7);
    const double* r = ema.at("w").tensor().data<double>();
    for (std::size_t i = 0; i < 11; ++i) CHECK(std::bit_cast<std::uint64_t>(r[i]) == kR64_7[i]);
  }
  detail::ema_kernel_override() = detail::EmaKernel::Auto;
}

TEST_CASE("EMA update is split over threads inside large tensors") {
  // 3 threads over one tensor of 1,000,003 floats: cuts fall inside the tensor.
  std::mt19937 rng(5);
  Value model = Value::make_ordered_dict(), ema = Value::make_ordered_dict();
  model["big"] = f32_tensor({1000003}, rng);
  ema["big"] = f32_tensor({1000003}, rng);
  const Value expected = naive_ema(ema, model, 0.99);
  ema_update(ema, model, 0.99, 3);
  check_states_equal(ema, expected);

  const auto parts = detail::split_by_bytes({1000003, 10, 5}, {4, 4, 8}, 3);
  REQUIRE(parts.size() == 3);
  std::size_t covered = 0;
  for (const auto& p : parts) {
    CHECK_FALSE(p.empty());
    for (const auto& piece : p) {
      covered += piece.end - piece.begin;
      if (piece.item == 0 && piece.begin != 0) CHECK(piece.begin % 16 == 0);
    }
  }
  CHECK(covered == 1000003 + 10 + 5);
}

TEST_CASE("EMA update refuses mismatched states and changes nothing") {
  std::mt19937 rng(9);
  const Value model = make_state(rng, 4);
  std::mt19937 rng2(10);
  const Value start = make_state(rng2, 1);
  auto refused = [&](const Value& m, const char* phrase) {
    Value ema = clone_state(start);
    const std::string msg = sgckpt::test::error_message([&] { ema_update(ema, m, 0.9); });
    INFO(msg);
    CHECK(sgckpt::test::contains(msg, phrase));
    check_states_equal(ema, start);
  };
  {
    Value m = clone_state(model);
    m.dict().erase("fc.bias");
    m["fc.bias_renamed"] = f32_tensor({10}, rng);
    refused(m, "only in the EMA: ['fc.bias']");
    refused(m, "only in the model: ['fc.bias_renamed']");
  }
  {
    Value m = clone_state(model);
    m["bn.weight"] = f32_tensor({32}, rng);
    refused(m, "entry 'bn.weight' has shape [33] in the EMA state but [32] in the model state");
  }
  {
    Value m = clone_state(model);
    m["bn.num_batches_tracked"] = tensor_of<std::int32_t>(DType::Int32, {}, {4});
    refused(m, "entry 'bn.num_batches_tracked' is int64 in the EMA state but int32 in the model state");
  }
  {
    Value m = clone_state(model);
    m["one"] = 3;
    refused(m, "entry 'one' is a tensor in the EMA state but a int in the model state");
  }
  // Order does not matter: matched by key, not by position (SG zips by position).
  {
    Value reordered = Value::make_ordered_dict();
    const auto& items = model.dict().items();
    for (std::size_t i = items.size(); i-- > 0;) reordered.dict().set(items[i].first, items[i].second);
    Value ema = clone_state(start);
    ema_update(ema, reordered, 0.9);
    check_states_equal(ema, naive_ema(start, model, 0.9));
  }
  // Bad decay.
  {
    Value ema = clone_state(start);
    CHECK(
        sgckpt::test::contains(sgckpt::test::error_message([&] { ema_update(ema, model, 1.5); }), "[0, 1]"));
    CHECK(sgckpt::test::contains(sgckpt::test::error_message([&] { ema_update(ema, model, std::nan("")); }),
                                 "[0, 1]"));
  }
}

TEST_CASE("EMA update refuses an EMA state that shares memory with the model") {
  std::mt19937 rng(12);
  const Value model = make_state(rng, 4);
  Value ema = model;  // a Value copy shares the tensors' storage
  const std::string msg = sgckpt::test::error_message([&] { ema_update(ema, model, 0.9); });
  CHECK(sgckpt::test::contains(msg, "shares memory with the model state"));
  Value ok = clone_state(model);
  ema_update(ok, model, 0.9);  // a deep copy is fine
}

TEST_CASE("EMA update: tied entries are updated once; partial overlaps are refused") {
  std::mt19937 rng(13);
  Tensor shared_model = f32_tensor({64}, rng);
  Tensor shared_ema = f32_tensor({64}, rng);
  Value model = Value::make_ordered_dict(), ema = Value::make_ordered_dict();
  model["a"] = shared_model;
  model["b"] = shared_model;
  ema["a"] = shared_ema;
  ema["b"] = shared_ema;
  Value single_e = Value::make_ordered_dict(), single_m = Value::make_ordered_dict();
  single_e["a"] = shared_ema.clone();
  single_m["a"] = shared_model;
  ema_update(single_e, single_m, 0.8);
  ema_update(ema, model, 0.8);
  CHECK(ema.at("a").tensor().equal(single_e.at("a").tensor()));
  CHECK(ema.at("a").tensor().storage() == ema.at("b").tensor().storage());

  Value overlap = Value::make_ordered_dict();
  overlap["a"] = Tensor::view_of(shared_ema.storage(), DType::Float32, 0, {64}, {1});
  overlap["b"] = Tensor::view_of(shared_ema.storage(), DType::Float32, 8, {32}, {1});
  Value m2 = Value::make_ordered_dict();
  m2["a"] = f32_tensor({64}, rng);
  m2["b"] = f32_tensor({32}, rng);
  CHECK(sgckpt::test::contains(sgckpt::test::error_message([&] { ema_update(overlap, m2, 0.5); }),
                               "overlap in memory"));
}

TEST_CASE("EMA update clones read-only (memory-mapped) and strided EMA tensors") {
  sgckpt::test::TempDir dir;
  std::mt19937 rng(14);
  const Value model = make_state(rng, 6);
  std::mt19937 rng2(15);
  const Value start = make_state(rng2, 2);
  save(start, dir / "ema.pth");
  LoadOptions mm;
  mm.mmap = true;
  Value ema = load(dir / "ema.pth", mm);
  bool any_read_only = false;
  for (const auto& [k, v] : ema.dict()) any_read_only |= v.tensor().storage()->read_only();
  CHECK(any_read_only);  // the test means something only if the loader mapped some
  ema_update(ema, model, 0.95);
  for (const auto& [k, v] : ema.dict()) CHECK_FALSE(v.tensor().storage()->read_only());
  check_states_equal(ema, naive_ema(start, model, 0.95));
  check_states_equal(load(dir / "ema.pth"), start);  // the file is untouched

  // A transposed (non-contiguous) EMA view and model view.
  Tensor e = f32_tensor({3, 4}, rng), w = f32_tensor({3, 4}, rng);
  Value et = Value::make_ordered_dict(), wt = Value::make_ordered_dict();
  et["t"] = Tensor::view_of(e.storage(), DType::Float32, 0, {4, 3}, {1, 4});
  wt["t"] = Tensor::view_of(w.storage(), DType::Float32, 0, {4, 3}, {1, 4});
  ema_update(et, wt, 0.25);
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 3; ++j) {
      const float ev = e.at<float>({j, i}), wv = w.at<float>({j, i});
      CHECK(et.at("t").tensor().at<float>({i, j}) == std::fma(wv, 0.75f, ev * 0.25f));
    }
}

TEST_CASE(
    "the EMA and averaging loops honour the one thread setting (SGCKPT_NUM_THREADS / set_num_threads)") {
  const int saved = num_threads();
  set_num_threads(1);
  CHECK(detail::choose_threads(0, std::size_t{1} << 30) == 1);  // 1 GiB, still one thread
  set_num_threads(3);
  CHECK(detail::choose_threads(0, std::size_t{1} << 30) == 3);
  CHECK(detail::choose_threads(0, std::size_t{1} << 20) == 1);  // 1 MiB: not worth a thread
  CHECK(detail::choose_threads(5, 1) == 5);                     // an explicit request wins
  set_num_threads(saved);
}
