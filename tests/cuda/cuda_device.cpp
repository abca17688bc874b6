// The CUDA backend on a GPU: every op against the CPU backend on fresh random inputs (float32
// relative error under 1e-4, never NaN; device memory is poisoned with NaN so an element a
// kernel forgot shows), the bit-exact kernels bitwise (elementwise ops, SGD, the fused
// multi-tensor kernels against their CPU emulation), training steps against the CPU and
// against themselves (determinism). Without a device every case here says so and passes
// nothing: ctest reports the suite as skipped (tests/CMakeLists.txt), never silently absent.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "sgckpt/cuda/cuda.hpp"
#include "sgckpt/engine/data/loader.hpp"
#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/optim/sgd.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
namespace mt = sgckpt::engine::ops::mt;

namespace {

// The backend for a test, or null after saying why there is none.
std::shared_ptr<Backend> gpu() {
  static const cuda::DeviceStatus status = cuda::probe();
  if (!status.usable) {
    MESSAGE("[skip] no CUDA device: ", status.reason);
    return nullptr;
  }
  static std::shared_ptr<Backend> b = cuda::make_backend({.poison = true});
  return b;
}

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Device memory holding a copy of a host vector (or poison, for outputs).
template <class T>
struct Buf {
  Backend& b;
  std::size_t n;
  T* p;
  Buf(Backend& be, std::size_t count) : b(be), n(count), p(static_cast<T*>(be.allocate(count * sizeof(T)))) {}
  Buf(Backend& be, const std::vector<T>& host) : Buf(be, host.size()) {
    be.copy_from_host(p, host.data(), n * sizeof(T));
  }
  ~Buf() { b.deallocate(p, n * sizeof(T)); }
  std::vector<T> host() const {
    std::vector<T> v(n);
    b.copy_to_host(v.data(), p, n * sizeof(T));
    return v;
  }
};

// max |a - b| / max(1, |b|) over the elements; NaN anywhere is infinite.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    worst =
        std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) / std::max(1.0, std::fabs(double(b[i]))));
  }
  return worst;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

constexpr double kTol = 1e-4;

// The GPU's backend registered for Device::CUDA while the object lives (the engine's modules
// and loaders reach it through the registry).
struct RegisteredGpu {
  explicit RegisteredGpu(std::shared_ptr<Backend> g) : previous(register_backend(std::move(g))) {}
  ~RegisteredGpu() {
    if (previous)
      register_backend(previous);
    else
      unregister_backend(Device::CUDA);
  }
  std::shared_ptr<Backend> previous;
};

}  // namespace

TEST_SUITE("cuda/device") {
  TEST_CASE("convolution forward and backward match the CPU") {
    auto g = gpu();
    if (!g) return;
    Backend& cpu = backend(Device::CPU);
    ops::Conv2dShape s;
    s.N = 4, s.C = 16, s.H = 12, s.W = 12, s.K = 32, s.R = 3, s.S = 3, s.stride = 2, s.pad = 1;
    const std::size_t nx = s.N * s.C * s.H * s.W, nw = s.K * s.C * s.R * s.S, ny = s.N * s.K * s.P() * s.Q();
    const auto x = randn(nx, 1), w = randn(nw, 2, 0.1f), b = randn(s.K, 3), dy = randn(ny, 4);
    const auto dw0 = randn(nw, 5), db0 = randn(s.K, 6);  // gradients accumulate into these
    std::vector<float> y(ny), dx(nx), dw = dw0, db = db0;
    cpu.conv2d_forward(y.data(), x.data(), w.data(), b.data(), s);
    cpu.conv2d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s);
    Buf<float> gx(*g, x), gw(*g, w), gb(*g, b), gdy(*g, dy), gy(*g, ny), gdx(*g, nx), gdw(*g, dw0),
        gdb(*g, db0);
    g->conv2d_forward(gy.p, gx.p, gw.p, gb.p, s);
    g->conv2d_backward(gdx.p, gdw.p, gdb.p, gdy.p, gx.p, gw.p, s);
    CHECK(rel_err(gy.host(), y) < kTol);
    CHECK(rel_err(gdx.host(), dx) < kTol);
    CHECK(rel_err(gdw.host(), dw) < kTol);
    CHECK(rel_err(gdb.host(), db) < kTol);
  }

  TEST_CASE("BatchNorm with each fused activation matches the CPU, training and eval") {
    auto g = gpu();
    if (!g) return;
    Backend& cpu = backend(Device::CPU);
    const std::int64_t N = 8, C = 16, HW = 49;
    const std::size_t n = N * C * HW;
    for (const bool training : {true, false}) {
      for (const auto act : {ops::BnActivation::None, ops::BnActivation::Relu, ops::BnActivation::AddRelu}) {
        CAPTURE(training);
        CAPTURE(static_cast<int>(act));
        const auto x = randn(n, 10), res = randn(n, 11), dy = randn(n, 12), gamma = randn(C, 13),
                   beta = randn(C, 14), rm0 = randn(C, 15), dgamma0 = randn(C, 17), dbeta0 = randn(C, 18);
        std::vector<float> rv0 = randn(C, 16);
        for (auto& v : rv0) v = std::fabs(v) + 0.5f;
        std::vector<float> y(n), mean(C), invstd(C), rm = rm0, rv = rv0, dx(n), dact(n), dgamma = dgamma0,
                                                     dbeta = dbeta0;
        ops::BatchNormForward f{y.data(),     mean.data(), invstd.data(), rm.data(), rv.data(), x.data(),
                                gamma.data(), beta.data(), res.data(),    N,         C,         HW,
                                1e-5,         0.1,         training,      act};
        cpu.batchnorm_forward(f);
        ops::BatchNormBackward bw{dx.data(), dgamma.data(), dbeta.data(), dact.data(),   dy.data(), y.data(),
                                  x.data(),  gamma.data(),  mean.data(),  invstd.data(), N,         C,
                                  HW,        training,      act};
        cpu.batchnorm_backward(bw);

        Buf<float> gx(*g, x), gres(*g, res), gdy(*g, dy), ggamma(*g, gamma), gbeta(*g, beta), grm(*g, rm0),
            grv(*g, rv0), gy(*g, n), gmean(*g, C), ginvstd(*g, C), gdx(*g, n), gdact(*g, n),
            gdgamma(*g, dgamma0), gdbeta(*g, dbeta0);
        ops::BatchNormForward gf{gy.p,   gmean.p, ginvstd.p, grm.p, grv.p, gx.p, ggamma.p, gbeta.p,
                                 gres.p, N,       C,         HW,    1e-5,  0.1,  training, act};
        g->batchnorm_forward(gf);
        ops::BatchNormBackward gbw{gdx.p,   gdgamma.p, gdbeta.p, gdact.p, gdy.p, gy.p,     gx.p, ggamma.p,
                                   gmean.p, ginvstd.p, N,        C,       HW,    training, act};
        g->batchnorm_backward(gbw);
        CHECK(rel_err(gy.host(), y) < kTol);
        CHECK(rel_err(gmean.host(), mean) < kTol);
        CHECK(rel_err(ginvstd.host(), invstd) < kTol);
        CHECK(rel_err(grm.host(), rm) < kTol);
        CHECK(rel_err(grv.host(), rv) < kTol);
        CHECK(rel_err(gdx.host(), dx) < kTol);
        CHECK(rel_err(gdgamma.host(), dgamma) < kTol);
        CHECK(rel_err(gdbeta.host(), dbeta) < kTol);
      }
    }
  }

  TEST_CASE("the elementwise ops and pooling give the CPU's bits") {
    auto g = gpu();
    if (!g) return;
    Backend& cpu = backend(Device::CPU);
    const std::int64_t NC = 64 * 40, HW = 16, n = NC * HW;
    const auto a = randn(n, 20), b = randn(n, 21), dyp = randn(NC, 22);
    std::vector<float> relu(n), drelu(n), sum(n), pool(NC), dpool(n);
    cpu.relu_forward(relu.data(), a.data(), n);
    cpu.relu_backward(drelu.data(), b.data(), relu.data(), n);
    cpu.add(sum.data(), a.data(), b.data(), n);
    cpu.global_avgpool_forward(pool.data(), a.data(), NC, HW);
    cpu.global_avgpool_backward(dpool.data(), dyp.data(), NC, HW);
    Buf<float> ga(*g, a), gb(*g, b), gdyp(*g, dyp), grelu(*g, n), gdrelu(*g, n), gsum(*g, n), gpool(*g, NC),
        gdpool(*g, n);
    g->relu_forward(grelu.p, ga.p, n);
    g->relu_backward(gdrelu.p, gb.p, grelu.p, n);
    g->add(gsum.p, ga.p, gb.p, n);
    g->global_avgpool_forward(gpool.p, ga.p, NC, HW);
    g->global_avgpool_backward(gdpool.p, gdyp.p, NC, HW);
    CHECK(same_bits(grelu.host(), relu));
    CHECK(same_bits(gdrelu.host(), drelu));
    CHECK(same_bits(gsum.host(), sum));
    CHECK(same_bits(gpool.host(), pool));
    CHECK(same_bits(gdpool.host(), dpool));
  }

  TEST_CASE("linear forward and backward match the CPU; the loss, its gradient and top-k too") {
    auto g = gpu();
    if (!g) return;
    Backend& cpu = backend(Device::CPU);
    const std::int64_t N = 96, I = 512, O = 10;
    const auto x = randn(N * I, 30), w = randn(O * I, 31, 0.05f), b = randn(O, 32), dy = randn(N * O, 33),
               dw0 = randn(O * I, 34), db0 = randn(O, 35);
    std::vector<float> y(N * O), dx(N * I), dw = dw0, db = db0;
    cpu.linear_forward(y.data(), x.data(), w.data(), b.data(), N, I, O);
    cpu.linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), N, I, O);
    Buf<float> gx(*g, x), gw(*g, w), gb(*g, b), gdy(*g, dy), gy(*g, N * O), gdx(*g, N * I), gdw(*g, dw0),
        gdb(*g, db0);
    g->linear_forward(gy.p, gx.p, gw.p, gb.p, N, I, O);
    g->linear_backward(gdx.p, gdw.p, gdb.p, gdy.p, gx.p, gw.p, N, I, O);
    CHECK(rel_err(gy.host(), y) < kTol);
    CHECK(rel_err(gdx.host(), dx) < kTol);
    CHECK(rel_err(gdw.host(), dw) < kTol);
    CHECK(rel_err(gdb.host(), db) < kTol);

    std::vector<std::int64_t> labels(N);
    for (std::int64_t i = 0; i < N; ++i) labels[i] = (i * 7) % O;
    std::vector<float> probs(N * O), dlogits(N * O);
    const float loss = cpu.cross_entropy_forward(probs.data(), y.data(), labels.data(), N, O, 0.1f);
    cpu.cross_entropy_backward(dlogits.data(), probs.data(), labels.data(), N, O, 0.1f, 1.0f);
    Buf<float> glogits(*g, y), gprobs(*g, N * O), gdlogits(*g, N * O);
    Buf<std::int64_t> glabels(*g, labels);
    const float gloss = g->cross_entropy_forward(gprobs.p, glogits.p, glabels.p, N, O, 0.1f);
    g->cross_entropy_backward(gdlogits.p, gprobs.p, glabels.p, N, O, 0.1f, 1.0f);
    CHECK(std::fabs(gloss - loss) <= kTol * std::max(1.0f, std::fabs(loss)));
    CHECK(rel_err(gprobs.host(), probs) < kTol);
    CHECK(rel_err(gdlogits.host(), dlogits) < kTol);
    for (std::int64_t k : {1, 5})
      CHECK(g->topk_correct(glogits.p, glabels.p, N, O, k) ==
            cpu.topk_correct(y.data(), labels.data(), N, O, k));
  }

  TEST_CASE("the SGD step and the fused multi-tensor kernels give the CPU emulation's bits") {
    auto g = gpu();
    if (!g) return;
    const std::vector<std::size_t> lengths = {1, 3, 4096, 70001, 300000};
    std::vector<std::vector<float>> p, gr, buf, e;
    std::vector<std::unique_ptr<Buf<float>>> dp, dg, dbuf, de;
    std::vector<mt::Slot> host_slots, dev_slots;
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      p.push_back(randn(lengths[k], 40 + k));
      gr.push_back(randn(lengths[k], 50 + k, 0.1f));
      buf.push_back(std::vector<float>(lengths[k]));
      e.push_back(randn(lengths[k], 60 + k));
      dp.push_back(std::make_unique<Buf<float>>(*g, p.back()));
      dg.push_back(std::make_unique<Buf<float>>(*g, gr.back()));
      dbuf.push_back(std::make_unique<Buf<float>>(*g, buf.back()));
      de.push_back(std::make_unique<Buf<float>>(*g, e.back()));
      mt::Slot hs, ds;
      hs.ptr[0] = p[k].data(), hs.ptr[1] = gr[k].data(), hs.ptr[2] = buf[k].data();
      ds.ptr[0] = dp[k]->p, ds.ptr[1] = dg[k]->p, ds.ptr[2] = dbuf[k]->p;
      hs.numel = ds.numel = static_cast<std::int64_t>(lengths[k]);
      host_slots.push_back(hs);
      dev_slots.push_back(ds);
    }
    const mt::Table ht = mt::make_table(host_slots), dt = mt::make_table(dev_slots);
    const auto table = g->make_fused_table(dt);
    for (int step = 0; step < 3; ++step) {
      mt::SgdOp op;
      op.first = step == 0;
      op.nesterov = step == 2;
      op.wd = 5e-4f, op.momentum = 0.9f, op.one_minus_dampening = 1.0f, op.neg_lr = -0.1f;
      mt::emulate(ht, op);
      table->run(op);
    }
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      CHECK(same_bits(dp[k]->host(), p[k]));
      CHECK(same_bits(dbuf[k]->host(), buf[k]));
    }
    // EMA over the same tensors: list 0 the EMA, list 1 the (updated) parameters.
    std::vector<mt::Slot> he, ge;
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      mt::Slot hs, ds;
      hs.ptr[0] = e[k].data(), hs.ptr[1] = p[k].data();
      ds.ptr[0] = de[k]->p, ds.ptr[1] = dp[k]->p;
      hs.numel = ds.numel = static_cast<std::int64_t>(lengths[k]);
      he.push_back(hs);
      ge.push_back(ds);
    }
    const auto c = sgckpt::detail::ew::ema_coefficients(0.9998);
    mt::emulate(mt::make_table(he), mt::EmaOp{c.d32, c.a32});
    g->make_fused_table(mt::make_table(ge))->run(mt::EmaOp{c.d32, c.a32});
    for (std::size_t k = 0; k < lengths.size(); ++k) CHECK(same_bits(de[k]->host(), e[k]));

    // The single-tensor SGD of the seam.
    std::vector<float> hp = p[3], hb = buf[3];
    Buf<float> sp(*g, hp), sb(*g, hb), sg(*g, gr[3]);
    ops::SgdStep a{hp.data(), gr[3].data(), hb.data(), false, true, false, 1e-4f, 0.9f, 0.9f, -0.05f};
    backend(Device::CPU).sgd_step(a, hp.size());
    ops::SgdStep ga = a;
    ga.data = sp.p, ga.grad = sg.p, ga.buf = sb.p;
    g->sgd_step(ga, hp.size());
    CHECK(same_bits(sp.host(), hp));
    CHECK(same_bits(sb.host(), hb));
  }

  TEST_CASE("unscaling and the scale update run on the device as GradScaler's") {
    auto g = gpu();
    if (!g) return;
    std::vector<float> grads = randn(100000, 70, 1000.0f);
    grads[77777] = INFINITY;
    Buf<float> dg(*g, grads);
    Buf<float> scale(*g, std::vector<float>{1024.0f});
    Buf<std::int64_t> tracker(*g, std::vector<std::int64_t>{0});
    Buf<std::int32_t> found(*g, std::vector<std::int32_t>{0});
    mt::Slot hs, ds;
    hs.ptr[0] = grads.data(), ds.ptr[0] = dg.p;
    hs.numel = ds.numel = static_cast<std::int64_t>(grads.size());
    float hscale = 1024.0f;
    std::int32_t hfound = 0;
    mt::emulate(mt::make_table(std::vector<mt::Slot>{hs}), mt::UnscaleOp{&hscale, &hfound});
    g->make_fused_table(mt::make_table(std::vector<mt::Slot>{ds}))->run(mt::UnscaleOp{scale.p, found.p});
    CHECK(found.host()[0] == 1);
    CHECK(hfound == 1);
    CHECK(same_bits(dg.host(), grads));
    cuda::scaler_update(*g, scale.p, tracker.p, found.p, 2.0f, 0.5f, 2000);
    CHECK(scale.host()[0] == 512.0f);
    CHECK(found.host()[0] == 0);
  }

  TEST_CASE("a batch gathered on the GPU is the host loader's batch, bit for bit") {
    auto g = gpu();
    if (!g) return;
    RegisteredGpu registered(g);
    data::Dataset ds;
    ds.images = engine::Tensor::from_vector<float>({50, 3, 32, 32}, randn(50 * 3 * 32 * 32, 90));
    std::vector<std::int64_t> labels(50);
    for (int i = 0; i < 50; ++i) labels[i] = i % 10;
    ds.labels = engine::Tensor::from_vector<std::int64_t>({50}, labels);
    ds.num_classes = 10;
    ds.black = {-1.0f, -2.0f, -3.0f};
    data::LoaderOptions o{.batch_size = 16, .shuffle = true, .drop_last = false, .augment = {4, true}};
    data::DataLoader host(ds, o), dev(ds, o);
    const data::DeviceImages images = dev.upload(Device::CUDA);
    Generator g1(7), g2(7);
    host.start_epoch(g1);
    dev.start_epoch(g2);
    for (std::int64_t b = 0; b < host.num_batches(); ++b) {
      const data::Batch h = host.batch(b, g1);
      const data::Batch d = dev.batch_on(dev.plan(b, g2), images);
      CHECK(d.x.to_host().contiguous_bytes() == h.x.to_host().contiguous_bytes());
    }
  }

  TEST_CASE("ResNet18 training steps on the GPU match the CPU and repeat bit for bit") {
    auto g = gpu();
    if (!g) return;
    RegisteredGpu registered(g);
    const auto arch = nn::ResNet18Config::cifar(10, 0.25);
    std::vector<float> xs = randn(16 * 3 * 32 * 32, 80);
    const engine::Tensor x = engine::Tensor::from_vector<float>({16, 3, 32, 32}, xs);
    std::vector<std::int64_t> ys(16);
    for (int i = 0; i < 16; ++i) ys[i] = i % 10;
    const engine::Tensor y = engine::Tensor::from_vector<std::int64_t>({16}, ys);
    Value o = Value::make_dict();
    o["lr"] = 0.05;
    o["momentum"] = 0.9;
    o["weight_decay"] = 5e-4;
    auto run = [&](Device d, std::vector<float>& losses) {
      nn::ResNet18 model(arch, 3);
      model.to(d);
      std::vector<ParamRef> refs;
      for (auto& p : model.named_parameters())
        refs.push_back({p.name, p.value.data_ptr<float>(), p.grad.data_ptr<float>(), p.value.numel(),
                        p.value.shape(), p.value.device()});
      SGD opt(refs, o);
      nn::CrossEntropyLoss criterion(0.1f);
      for (int step = 0; step < 3; ++step) {
        model.zero_grad();
        losses.push_back(criterion.forward(model.forward(x.to(d)), y));
        model.backward(criterion.backward());
        opt.step();
      }
      return model.state_dict();
    };
    std::vector<float> lc, lg1, lg2;
    const Value sc = run(Device::CPU, lc), sg1 = run(Device::CUDA, lg1), sg2 = run(Device::CUDA, lg2);
    for (int s = 0; s < 3; ++s) CHECK(std::fabs(lg1[s] - lc[s]) < 1e-3 * std::max(1.0f, lc[s]));
    CHECK(same_bits(lg1, lg2));  // deterministic algorithms: the same run, the same bits
    for (const auto& [k, v] : sc.dict()) {
      CAPTURE(k.str());
      const sgckpt::Tensor& a = v.tensor();
      const sgckpt::Tensor& b1 = sg1.dict().find(k)->tensor();
      const sgckpt::Tensor& b2 = sg2.dict().find(k)->tensor();
      CHECK(b1.contiguous_bytes() == b2.contiguous_bytes());
      if (a.dtype() != DType::Float32) continue;
      std::vector<float> va(a.numel()), vb(a.numel());
      std::memcpy(va.data(), a.contiguous_bytes().data(), va.size() * 4);
      std::memcpy(vb.data(), b1.contiguous_bytes().data(), vb.size() * 4);
      CHECK(rel_err(vb, va) < 1e-2);  // three steps of training amplify rounding differences
    }
  }
}
