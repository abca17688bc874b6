// The multi-tensor kernels' host half (ops/multi_tensor.hpp): the chunk table, and the kernel
// bodies run by the CPU emulation, which must give the CPU reference's bits: ops::sgd_step,
// the Adam optimizer, GradScaler, ckpt's EMA and averaging. The CUDA kernels run the same
// bodies (kernels/multi_tensor.cu), so these tests pin down what the device computes; the GPU
// tests (tests/cuda/) then compare the device with this emulation.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/engine/ops/multi_tensor.hpp"
#include "sgckpt/engine/ops/sgd.hpp"
#include "sgckpt/engine/optim/adam.hpp"
#include "sgckpt/engine/optim/grad_scaler.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
namespace mt = sgckpt::engine::ops::mt;

namespace {

std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_bits(const void* a, const void* b, std::size_t bytes) {
  return bytes == 0 || std::memcmp(a, b, bytes) == 0;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size() * sizeof(float));
}

// Lengths that cross chunk boundaries in every way: empty, tiny, odd, exact multiples, one over.
const std::vector<std::size_t> kLengths = {0, 1, 3, 64, 1000, 4096, 4097, 12289, 70001};
constexpr mt::TableOptions kSmallChunks{4096, 4};

}  // namespace

TEST_CASE("a chunk table covers every element of every tensor once, in aligned chunks") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const std::int64_t align = std::int64_t{1} << std::uniform_int_distribution<int>(0, 4)(rng);
    const std::int64_t chunk = align * std::uniform_int_distribution<std::int64_t>(1, 300)(rng);
    std::vector<mt::Slot> slots(std::uniform_int_distribution<int>(0, 12)(rng));
    std::vector<std::vector<float>> storage;
    for (auto& s : slots) {
      s.numel = std::uniform_int_distribution<std::int64_t>(0, 3000)(rng);
      storage.emplace_back(static_cast<std::size_t>(s.numel) + 1);
      s.ptr[0] = storage.back().data();
    }
    const mt::Table t = mt::make_table(slots, {chunk, align});
    std::vector<std::vector<int>> seen(slots.size());
    for (std::size_t s = 0; s < slots.size(); ++s)
      seen[s].assign(static_cast<std::size_t>(slots[s].numel), 0);
    std::int64_t total = 0;
    for (const mt::Chunk& c : t.chunks) {
      REQUIRE(c.slot >= 0);
      REQUIRE(static_cast<std::size_t>(c.slot) < slots.size());
      CHECK(c.begin % align == 0);
      CHECK(c.end > c.begin);
      CHECK(c.end - c.begin <= chunk);
      CHECK(c.end <= slots[c.slot].numel);
      for (std::int64_t i = c.begin; i < c.end; ++i) ++seen[c.slot][static_cast<std::size_t>(i)];
      total += c.end - c.begin;
    }
    std::size_t not_once = 0;
    for (const auto& v : seen)
      for (int x : v) not_once += x != 1;
    CHECK(not_once == 0);
    CHECK(total == t.elements);
  }
}

TEST_CASE("a chunk table refuses what a kernel could not run") {
  float x[4];
  mt::Slot ok;
  ok.ptr[0] = x;
  ok.numel = 4;
  mt::Slot negative = ok;
  negative.numel = -1;
  mt::Slot no_data;
  no_data.numel = 4;
  CHECK_THROWS_WITH(mt::make_table(std::vector<mt::Slot>{ok}, {6, 4}),
                    doctest::Contains("multiple of align"));
  CHECK_THROWS_WITH(mt::make_table(std::vector<mt::Slot>{ok, negative}),
                    doctest::Contains("negative length"));
  CHECK_THROWS_WITH(mt::make_table(std::vector<mt::Slot>{no_data}), doctest::Contains("no data pointer"));
}

TEST_CASE("the emulated fused SGD step gives ops::sgd_step's bits") {
  struct Case {
    float momentum, dampening, wd;
    bool nesterov, maximize;
  };
  for (const Case c : {Case{0, 0, 0, false, false}, Case{0.9f, 0, 5e-4f, false, false},
                       Case{0.9f, 0.1f, 1e-4f, true, false}, Case{0.8f, 0, 1e-3f, false, true}}) {
    CAPTURE(c.momentum);
    CAPTURE(c.nesterov);
    std::mt19937 rng(11);
    std::vector<std::vector<float>> p_ref, g, buf_ref;
    for (std::size_t n : kLengths) {
      p_ref.push_back(random_floats(n, rng));
      g.push_back(random_floats(n, rng, 0.1f));
      buf_ref.push_back(std::vector<float>(n));
    }
    auto p_mt = p_ref;
    auto buf_mt = buf_ref;
    std::vector<mt::Slot> slots;
    for (std::size_t k = 0; k < kLengths.size(); ++k) {
      mt::Slot s;
      s.ptr[0] = p_mt[k].data();
      s.ptr[1] = g[k].data();
      s.ptr[2] = c.momentum != 0 ? buf_mt[k].data() : nullptr;
      s.numel = static_cast<std::int64_t>(kLengths[k]);
      slots.push_back(s);
    }
    const mt::Table table = mt::make_table(slots, kSmallChunks);
    for (int step = 0; step < 3; ++step) {
      mt::SgdOp op;
      op.first = step == 0;
      op.nesterov = c.nesterov;
      op.maximize = c.maximize;
      op.wd = c.wd;
      op.momentum = c.momentum;
      op.one_minus_dampening = 1.0f - c.dampening;
      op.neg_lr = -0.05f;
      mt::emulate(table, op);
      for (std::size_t k = 0; k < kLengths.size(); ++k) {
        ops::SgdStep a;
        a.data = p_ref[k].data();
        a.grad = g[k].data();
        a.buf = c.momentum != 0 ? buf_ref[k].data() : nullptr;
        a.first = op.first;
        a.nesterov = op.nesterov;
        a.maximize = op.maximize;
        a.wd = op.wd;
        a.momentum = op.momentum;
        a.one_minus_dampening = op.one_minus_dampening;
        a.neg_lr = op.neg_lr;
        ops::sgd_step(a, kLengths[k]);
      }
    }
    for (std::size_t k = 0; k < kLengths.size(); ++k) {
      CHECK(same_bits(p_mt[k], p_ref[k]));
      CHECK(same_bits(buf_mt[k], buf_ref[k]));
    }
  }
}

TEST_CASE("the emulated fused Adam/AdamW step gives the Adam optimizer's bits, skipped steps included") {
  for (const bool adamw : {false, true}) {
    for (const bool amsgrad : {false, true}) {
      CAPTURE(adamw);
      CAPTURE(amsgrad);
      std::mt19937 rng(5);
      std::vector<std::vector<float>> p_ref, g;
      for (std::size_t n : kLengths) {
        p_ref.push_back(random_floats(n, rng));
        g.push_back(random_floats(n, rng, 0.1f));
      }
      auto p_mt = p_ref;
      std::vector<ParamRef> refs;
      for (std::size_t k = 0; k < kLengths.size(); ++k)
        refs.push_back({"p" + std::to_string(k),
                        p_ref[k].data(),
                        g[k].data(),
                        kLengths[k],
                        {static_cast<std::int64_t>(kLengths[k])},
                        Device::CPU});
      Value options = Value::make_dict();
      options["lr"] = 0.01;
      options["weight_decay"] = 0.02;
      options["amsgrad"] = amsgrad;
      std::unique_ptr<Optimizer> ref;
      if (adamw)
        ref = std::make_unique<AdamW>(refs, options);
      else
        ref = std::make_unique<Adam>(refs, options);

      std::vector<std::vector<float>> m, v, vmax;
      std::vector<mt::Slot> slots;
      for (std::size_t k = 0; k < kLengths.size(); ++k) {
        m.emplace_back(kLengths[k]);
        v.emplace_back(kLengths[k]);
        vmax.emplace_back(kLengths[k]);
      }
      for (std::size_t k = 0; k < kLengths.size(); ++k) {
        mt::Slot s;
        s.ptr[0] = p_mt[k].data();
        s.ptr[1] = g[k].data();
        s.ptr[2] = m[k].data();
        s.ptr[3] = v[k].data();
        s.ptr[4] = vmax[k].data();
        s.numel = static_cast<std::int64_t>(kLengths[k]);
        slots.push_back(s);
      }
      const mt::Table table = mt::make_table(slots, kSmallChunks);
      float step = 0;  // the device's count
      // The host knows the count only up to skipped steps; it passes a window from a stale base.
      const float stale_base = 1;
      const std::int32_t skip_flags[] = {0, 1, 0, 0};  // the second step overflowed
      for (std::int32_t skip : skip_flags) {
        mt::AdamOp op;
        op.skip = &skip;
        op.step = &step;
        op.decoupled = adamw;
        op.amsgrad = amsgrad;
        op.wd = 0.02f;
        op.one_minus_lr_wd = static_cast<float>(1.0 - 0.01 * 0.02);
        op.beta1 = 0.9f;
        op.one_minus_beta1 = static_cast<float>(1.0 - 0.9);
        op.beta2 = 0.999f;
        op.one_minus_beta2 = static_cast<float>(1.0 - 0.999);
        mt::fill_adam_table(op, 0.01, 0.9, 0.999, step == 0 ? 1 : stale_base);
        mt::run_emulated(table, op);
        if (skip == 0) ref->step();
      }
      CHECK(step == 3);
      for (std::size_t k = 0; k < kLengths.size(); ++k) CHECK(same_bits(p_mt[k], p_ref[k]));
      // The optimizer state the device holds is the state_dict's.
      const Value sd = ref->state_dict();
      const sgckpt::Tensor& exp_avg = sd.at("state").at(Key(std::int64_t{6})).at("exp_avg").tensor();
      CHECK(same_bits(exp_avg.raw_data(), m[6].data(), m[6].size() * sizeof(float)));
    }
  }
}

TEST_CASE("emulated unscaling and the scale update are GradScaler's") {
  std::mt19937 rng(3);
  std::vector<std::vector<float>> g_ref;
  for (std::size_t n : kLengths) g_ref.push_back(random_floats(n, rng, 1000.0f));
  for (const bool overflow : {false, true}) {
    CAPTURE(overflow);
    auto g_ref_case = g_ref;
    if (overflow) g_ref_case[7][4100] = std::numeric_limits<float>::infinity();
    auto g_mt = g_ref_case;
    GradScaler scaler({.init_scale = 1024.0, .growth_interval = 2});
    std::vector<GradBuffer> bufs;
    std::vector<mt::Slot> slots;
    for (std::size_t k = 0; k < kLengths.size(); ++k) {
      bufs.push_back({g_ref_case[k].data(), kLengths[k]});
      mt::Slot s;
      s.ptr[0] = g_mt[k].data();
      s.numel = static_cast<std::int64_t>(kLengths[k]);
      slots.push_back(s);
    }
    float scale = scaler.get_scale();
    std::int64_t tracker = 1;  // one clean step done: a clean one now grows the scale
    std::int32_t found_inf = 0;
    mt::emulate(mt::make_table(slots, kSmallChunks), mt::UnscaleOp{&scale, &found_inf});
    scaler.unscale(bufs);
    CHECK((found_inf != 0) == scaler.found_inf());
    CHECK((found_inf != 0) == overflow);
    for (std::size_t k = 0; k < kLengths.size(); ++k) CHECK(same_bits(g_mt[k], g_ref_case[k]));
    optim_math::scaler_update(scale, tracker, found_inf != 0, 2.0f, 0.5f, 2);
    CHECK(scale == (overflow ? 512.0f : 2048.0f));
    CHECK(tracker == 0);
  }
}

TEST_CASE("emulated EMA and averaging give ckpt's bits") {
  std::mt19937 rng(9);
  Value ema = Value::make_dict(), model = Value::make_dict();
  std::vector<mt::Slot> slots;
  std::vector<std::vector<float>> e_mt, snapshots[3];
  for (std::size_t k = 0; k < kLengths.size(); ++k) {
    const std::vector<float> e0 = random_floats(kLengths[k], rng), w = random_floats(kLengths[k], rng);
    const Shape shape{static_cast<std::int64_t>(kLengths[k])};
    sgckpt::Tensor et = sgckpt::Tensor::empty(DType::Float32, shape),
                   wt = sgckpt::Tensor::empty(DType::Float32, shape);
    if (!e0.empty()) {
      std::memcpy(et.mutable_raw_data(), e0.data(), e0.size() * 4);
      std::memcpy(wt.mutable_raw_data(), w.data(), w.size() * 4);
    }
    ema["t" + std::to_string(k)] = et;
    model["t" + std::to_string(k)] = wt;
    e_mt.push_back(e0);
    snapshots[0].push_back(w);
  }
  for (std::size_t k = 0; k < kLengths.size(); ++k) {
    mt::Slot s;
    s.ptr[0] = e_mt[k].data();
    s.ptr[1] = snapshots[0][k].data();
    s.numel = static_cast<std::int64_t>(kLengths[k]);
    slots.push_back(s);
  }
  const double decay = 0.9997;
  const auto c = sgckpt::detail::ew::ema_coefficients(decay);
  mt::emulate(mt::make_table(slots, kSmallChunks), mt::EmaOp{c.d32, c.a32});
  ema_update(ema, model, decay);
  for (std::size_t k = 0; k < kLengths.size(); ++k) {
    const sgckpt::Tensor& t = ema.at("t" + std::to_string(k)).tensor();
    CHECK(same_bits(t.raw_data(), e_mt[k].data(), kLengths[k] * 4));
  }

  // Averaging three snapshots through double sums.
  std::vector<Value> states;
  for (int j = 1; j < 3; ++j)
    for (std::size_t n : kLengths) snapshots[j].push_back(random_floats(n, rng));
  std::vector<std::vector<double>> sums;
  std::vector<std::vector<float>> avg;
  for (std::size_t n : kLengths) {
    sums.emplace_back(n);
    avg.emplace_back(n);
  }
  for (int j = 0; j < 3; ++j) {
    Value st = Value::make_dict();
    std::vector<mt::Slot> add;
    for (std::size_t k = 0; k < kLengths.size(); ++k) {
      sgckpt::Tensor t = sgckpt::Tensor::empty(DType::Float32, Shape{static_cast<std::int64_t>(kLengths[k])});
      if (kLengths[k] > 0) std::memcpy(t.mutable_raw_data(), snapshots[j][k].data(), kLengths[k] * 4);
      st["t" + std::to_string(k)] = t;
      mt::Slot s;
      s.ptr[0] = sums[k].data();
      s.ptr[1] = snapshots[j][k].data();
      s.numel = static_cast<std::int64_t>(kLengths[k]);
      add.push_back(s);
    }
    states.push_back(std::move(st));
    mt::emulate(mt::make_table(add, kSmallChunks), mt::AverageAddOp{j == 0});
  }
  std::vector<mt::Slot> fin;
  for (std::size_t k = 0; k < kLengths.size(); ++k) {
    mt::Slot s;
    s.ptr[0] = avg[k].data();
    s.ptr[1] = sums[k].data();
    s.numel = static_cast<std::int64_t>(kLengths[k]);
    fin.push_back(s);
  }
  mt::emulate(mt::make_table(fin, kSmallChunks), mt::AverageFinishOp{3.0});
  const Value mean = average_states(states);
  for (std::size_t k = 0; k < kLengths.size(); ++k) {
    const sgckpt::Tensor& t = mean.at("t" + std::to_string(k)).tensor();
    CHECK(same_bits(t.raw_data(), avg[k].data(), kLengths[k] * 4));
  }
}

TEST_CASE("a fused Adam step whose count the host's window misses changes nothing and says so") {
  std::vector<float> p = {1.0f, 2.0f}, g = {0.5f, -0.5f}, m(2), v(2), vmax(2);
  mt::Slot s;
  s.ptr[0] = p.data(), s.ptr[1] = g.data(), s.ptr[2] = m.data(), s.ptr[3] = v.data(), s.ptr[4] = vmax.data();
  s.numel = 2;
  float step = 10;  // the device is at step 10; the host's window covers counts 1 .. 4
  std::int32_t out_of_window = 0;
  mt::AdamOp op;
  op.step = &step;
  op.out_of_window = &out_of_window;
  mt::fill_adam_table(op, 0.01, 0.9, 0.999, 1);
  mt::run_emulated(mt::make_table(std::vector<mt::Slot>{s}), op);
  CHECK(out_of_window == 1);
  CHECK(p == std::vector<float>{1.0f, 2.0f});
  CHECK(step == 10);  // nor did the count move
}
