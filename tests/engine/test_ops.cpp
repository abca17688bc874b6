// The engine's CPU ops and modules: each backward against central finite differences on tiny
// shapes, conv2d against a direct loop, BatchNorm's running statistics against their formula,
// the loss against its definition, and the tensor / generator / state_dict plumbing.
//
// Finite differences: for a random projection L = Σ r · f(θ) (accumulated in double), the
// analytic gradient Σ r · ∂f/∂θ must match (L(θ + h) - L(θ - h)) / 2h for every element.
#include <doctest/doctest.h>

#include <sgckpt/engine/engine.hpp>
#include <sgckpt/sgckpt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../test_support.hpp"

namespace {

using namespace sgckpt::engine;
namespace F = sgckpt::engine::nn::functional;

Tensor random_tensor(Shape shape, Generator& gen, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape));
  float* p = t.data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = gen.uniform(lo, hi);
  return t;
}

double dot(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  double s = 0.0;
  for (std::size_t i = 0; i < a.numel(); ++i)
    s += static_cast<double>(a.data<float>()[i]) * b.data<float>()[i];
  return s;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (std::size_t i = 0; i < t.numel(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(t.data<float>()[i])));
  return m;
}

// Checks `grad` (the analytic dL/dθ) against central differences of loss() over θ's elements
// (every element, or `max_elements` spread over θ). Returns the worst error relative to max |grad|.
double check_gradient(const char* what, Tensor theta, const Tensor& grad, const std::function<double()>& loss,
                      double tol, float h = 1e-2f, std::size_t max_elements = 400) {
  REQUIRE(theta.numel() == grad.numel());
  const std::size_t n = theta.numel();
  const std::size_t step = std::max<std::size_t>(1, n / max_elements);
  const double scale = std::max(max_abs(grad), 1e-3);
  double worst = 0.0;
  float* p = theta.data<float>();
  for (std::size_t i = 0; i < n; i += step) {
    const float saved = p[i];
    p[i] = saved + h;
    const double lp = loss();
    p[i] = saved - h;
    const double lm = loss();
    p[i] = saved;
    const double numeric = (lp - lm) / (2.0 * static_cast<double>(h));
    worst = std::max(worst, std::fabs(numeric - grad.data<float>()[i]) / scale);
  }
  INFO(std::string(what) << ": worst relative error " << worst);
  CHECK(worst < tol);
  return worst;
}

// ---------------------------------------------------------------------------------- conv2d

// y[n,k,p,q] = Σ x[n,c,p*st-pad+r,q*st-pad+s] w[k,c,r,s] + b[k], directly.
std::vector<double> conv_direct(const ops::Conv2dShape& s, const float* x, const float* w, const float* b) {
  const std::int64_t P = s.P(), Q = s.Q();
  std::vector<double> y(static_cast<std::size_t>(s.N * s.K * P * Q));
  for (std::int64_t n = 0; n < s.N; ++n)
    for (std::int64_t k = 0; k < s.K; ++k)
      for (std::int64_t p = 0; p < P; ++p)
        for (std::int64_t q = 0; q < Q; ++q) {
          double acc = b ? b[k] : 0.0;
          for (std::int64_t c = 0; c < s.C; ++c)
            for (std::int64_t r = 0; r < s.R; ++r)
              for (std::int64_t t = 0; t < s.S; ++t) {
                const std::int64_t ih = p * s.stride - s.pad + r, iw = q * s.stride - s.pad + t;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                acc += static_cast<double>(x[((n * s.C + c) * s.H + ih) * s.W + iw]) *
                       w[((k * s.C + c) * s.R + r) * s.S + t];
              }
          y[static_cast<std::size_t>(((n * s.K + k) * P + p) * Q + q)] = acc;
        }
  return y;
}

struct ConvCase {
  std::int64_t N, C, H, W, K, R, stride, pad;
  bool bias;
  std::int64_t images_per_gemm;
};

void check_conv(const ConvCase& cc) {
  CAPTURE(cc.N);
  CAPTURE(cc.C);
  CAPTURE(cc.H);
  CAPTURE(cc.K);
  CAPTURE(cc.R);
  CAPTURE(cc.stride);
  CAPTURE(cc.pad);
  CAPTURE(cc.images_per_gemm);
  ops::Conv2dShape s;
  s.N = cc.N, s.C = cc.C, s.H = cc.H, s.W = cc.W, s.K = cc.K, s.R = s.S = cc.R, s.stride = cc.stride,
  s.pad = cc.pad;
  s.images_per_gemm = cc.images_per_gemm;
  Generator gen(7);
  Tensor x = random_tensor({s.N, s.C, s.H, s.W}, gen);
  Tensor w = random_tensor({s.K, s.C, s.R, s.S}, gen);
  Tensor b = random_tensor({s.K}, gen);
  Tensor r = random_tensor({s.N, s.K, s.P(), s.Q()}, gen);  // the random projection = dL/dy
  const float* bp = cc.bias ? b.data<float>() : nullptr;
  Tensor y = Tensor::empty(r.shape());

  // forward against the direct loop
  ops::conv2d_forward(y.data<float>(), x.data<float>(), w.data<float>(), bp, s);
  const auto ref = conv_direct(s, x.data<float>(), w.data<float>(), bp);
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::fabs(ref[i] - y.data<float>()[i]));
  CHECK(worst < 1e-5);

  // backward against finite differences (dw and db accumulate onto what is there)
  Tensor dx = Tensor::full(x.shape(), 123.0f);  // overwritten
  Tensor dw = Tensor::full(w.shape(), 0.5f);
  Tensor db = Tensor::full(b.shape(), 0.25f);
  ops::conv2d_backward(dx.data<float>(), dw.data<float>(), cc.bias ? db.data<float>() : nullptr,
                       r.data<float>(), x.data<float>(), w.data<float>(), s);
  for (std::size_t i = 0; i < dw.numel(); ++i) dw.data<float>()[i] -= 0.5f;
  for (std::size_t i = 0; i < db.numel(); ++i) db.data<float>()[i] -= 0.25f;
  auto loss = [&] {
    ops::conv2d_forward(y.data<float>(), x.data<float>(), w.data<float>(), bp, s);
    return dot(y, r);
  };
  check_gradient("conv dx", x, dx, loss, 1e-3);
  check_gradient("conv dw", w, dw, loss, 1e-3);
  if (cc.bias) check_gradient("conv db", b, db, loss, 1e-3);

  // input gradient skipped: the same weight gradient
  Tensor dw2 = Tensor::zeros(w.shape());
  ops::conv2d_backward(nullptr, dw2.data<float>(), nullptr, r.data<float>(), x.data<float>(), w.data<float>(),
                       s);
  for (std::size_t i = 0; i < dw.numel(); ++i)
    CHECK(dw2.data<float>()[i] == doctest::Approx(dw.data<float>()[i]).epsilon(1e-4));
}

TEST_CASE("conv2d: forward = direct loop, backward (dx, dw, db) = finite differences") {
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    CAPTURE(threads);
    check_conv({2, 3, 5, 6, 4, 3, 1, 1, true, 0});   // 3x3, stride 1, padding 1, bias
    check_conv({3, 2, 7, 7, 3, 3, 2, 1, false, 0});  // 3x3, stride 2 (as the blocks' conv1)
    check_conv({2, 3, 4, 5, 2, 1, 1, 0, true, 0});   // 1x1 stride 1: the column matrix is the image
    check_conv({3, 4, 6, 6, 5, 1, 2, 0, false, 0});  // 1x1 stride 2: the shortcut conv
    check_conv({2, 2, 6, 5, 3, 2, 2, 0, true, 0});   // even kernel, no padding
    check_conv({2, 1, 3, 3, 2, 3, 1, 2, true, 0});   // padding larger than half the kernel
    check_conv({5, 2, 4, 4, 3, 3, 2, 1, true, 2});   // 2 images per GEMM, a partial last group
    check_conv({5, 3, 3, 3, 2, 1, 1, 0, true, 3});   // grouped pointwise
    check_conv({4, 2, 2, 2, 3, 3, 1, 1, false, 4});  // one group of everything
  }
  set_num_threads(saved);
}

TEST_CASE("conv2d: results are identical for a given thread count") {
  ops::Conv2dShape s;
  s.N = 6, s.C = 3, s.H = 8, s.W = 8, s.K = 4, s.R = s.S = 3, s.stride = 1, s.pad = 1, s.images_per_gemm = 1;
  Generator gen(3);
  Tensor x = random_tensor({s.N, s.C, s.H, s.W}, gen), w = random_tensor({s.K, s.C, 3, 3}, gen);
  Tensor dy = random_tensor({s.N, s.K, s.P(), s.Q()}, gen);
  auto grads = [&](int threads) {
    set_num_threads(threads);
    Tensor dw = Tensor::zeros(w.shape()), db = Tensor::zeros({s.K});
    ops::conv2d_backward(nullptr, dw.data<float>(), db.data<float>(), dy.data<float>(), x.data<float>(),
                         w.data<float>(), s);
    return std::vector<float>(dw.data<float>(), dw.data<float>() + dw.numel());
  };
  const int saved = num_threads();
  CHECK(grads(2) == grads(2));
  CHECK(grads(3) == grads(3));
  set_num_threads(saved);
}

// ---------------------------------------------------------------------------------- batchnorm

TEST_CASE("batchnorm: training backward (dx, dgamma, dbeta) = finite differences") {
  const std::int64_t N = 3, C = 2, HW = 5;
  Generator gen(11);
  Tensor x = random_tensor({N, C, 1, HW}, gen, -2.0f, 2.0f);
  Tensor gamma = random_tensor({C}, gen, 0.5f, 1.5f), beta = random_tensor({C}, gen);
  Tensor r = random_tensor({N, C, 1, HW}, gen);
  Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({C}), invstd = Tensor::empty({C});
  auto loss = [&] {
    ops::batchnorm_forward_train(y.data<float>(), mean.data<float>(), invstd.data<float>(), nullptr, nullptr,
                                 x.data<float>(), gamma.data<float>(), beta.data<float>(), N, C, HW, 1e-5,
                                 0.1);
    return dot(y, r);
  };
  loss();
  Tensor dx = Tensor::empty(x.shape()), dg = Tensor::zeros({C}), dbt = Tensor::zeros({C});
  ops::batchnorm_backward(dx.data<float>(), dg.data<float>(), dbt.data<float>(), r.data<float>(),
                          x.data<float>(), gamma.data<float>(), mean.data<float>(), invstd.data<float>(), N,
                          C, HW, true);
  check_gradient("bn train dx", x, dx, loss, 5e-3, 1e-2f);
  check_gradient("bn train dgamma", gamma, dg, loss, 1e-3);
  check_gradient("bn train dbeta", beta, dbt, loss, 1e-3);
  // the gradient of a normalized channel sums to zero
  for (std::int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < HW; ++j) s += dx.data<float>()[(n * C + c) * HW + j];
    CHECK(std::fabs(s) < 1e-5);
  }
}

TEST_CASE("batchnorm: eval backward = finite differences; running statistics follow torch's formula") {
  const std::int64_t N = 2, C = 3, HW = 4;
  Generator gen(12);
  nn::BatchNorm2d bn(C);
  bn.weight.copy_(random_tensor({C}, gen, 0.5f, 1.5f));
  bn.bias.copy_(random_tensor({C}, gen));
  bn.running_mean.copy_(random_tensor({C}, gen));
  bn.running_var.copy_(random_tensor({C}, gen, 0.5f, 2.0f));
  Tensor x = random_tensor({N, C, 2, 2}, gen, -2.0f, 2.0f);
  Tensor r = random_tensor(x.shape(), gen);

  // eval: constants, dx = dy * gamma / sqrt(var + eps)
  bn.eval();
  auto loss = [&] {
    NoGradGuard no_grad;
    return dot(bn.forward(x), r);
  };
  bn.forward(x);
  bn.zero_grad();
  Tensor dx = bn.backward(r);
  check_gradient("bn eval dx", x, dx, loss, 1e-3);
  CHECK(*bn.num_batches_tracked.data<std::int64_t>() == 0);

  // training: running = 0.1 * batch + 0.9 * running, with the unbiased variance
  bn.train();
  std::vector<double> rm(C), rv(C);
  for (std::int64_t c = 0; c < C; ++c) {
    double s = 0.0, ss = 0.0;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < HW; ++j) s += x.data<float>()[(n * C + c) * HW + j];
    const double m = s / (N * HW);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < HW; ++j) ss += std::pow(x.data<float>()[(n * C + c) * HW + j] - m, 2);
    rm[c] = 0.1 * m + 0.9 * bn.running_mean.data<float>()[c];
    rv[c] = 0.1 * ss / (N * HW - 1) + 0.9 * bn.running_var.data<float>()[c];
  }
  {
    NoGradGuard no_grad;  // torch updates the running statistics under no_grad too
    bn.forward(x);
  }
  CHECK(*bn.num_batches_tracked.data<std::int64_t>() == 1);
  for (std::int64_t c = 0; c < C; ++c) {
    CHECK(bn.running_mean.data<float>()[c] == doctest::Approx(rm[c]).epsilon(1e-6));
    CHECK(bn.running_var.data<float>()[c] == doctest::Approx(rv[c]).epsilon(1e-6));
  }
  CHECK_THROWS_WITH_AS(bn.forward(Tensor::zeros({1, C, 1, 1})),
                       doctest::Contains("more than 1 value per channel"), sgckpt::Error);
}

// ---------------------------------------------------------------------------------- small ops

TEST_CASE("relu, residual add, global average pool: backward = finite differences") {
  Generator gen(13);
  // relu, away from the kink
  Tensor x = random_tensor({2, 3, 2, 2}, gen);
  for (std::size_t i = 0; i < x.numel(); ++i) {
    float& v = x.data<float>()[i];
    v = v < 0 ? v - 0.1f : v + 0.1f;
  }
  Tensor r = random_tensor(x.shape(), gen);
  auto relu_loss = [&] {
    Tensor y = x.clone();
    F::relu_(y);
    return dot(y, r);
  };
  Tensor y = x.clone();
  F::relu_(y);
  check_gradient("relu dx", x, F::relu_backward(r, y), relu_loss, 1e-4);

  // add: both inputs receive dout
  Tensor a = random_tensor({5}, gen), b = random_tensor({5}, gen), d = random_tensor({5}, gen);
  Tensor da = Tensor::zeros({5}), db = Tensor::full({5}, 1.0f);
  ops::add_backward(da.data<float>(), db.data<float>(), d.data<float>(), 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(da.data<float>()[i] == d.data<float>()[i]);
    CHECK(db.data<float>()[i] == 1.0f + d.data<float>()[i]);
  }
  Tensor s = a.clone();
  F::add_(s, b);
  CHECK(s.data<float>()[3] == a.data<float>()[3] + b.data<float>()[3]);

  // global average pool
  Tensor p = random_tensor({2, 3, 3, 2}, gen), rp = random_tensor({2, 3}, gen);
  auto pool_loss = [&] { return dot(F::global_avgpool(p), rp); };
  check_gradient("avgpool dx", p, F::global_avgpool_backward(rp, p.shape()), pool_loss, 1e-4);
}

TEST_CASE("linear: backward (dx, dw, db) = finite differences") {
  Generator gen(14);
  nn::Linear lin(5, 4, true, gen);
  Tensor x = random_tensor({3, 5}, gen), r = random_tensor({3, 4}, gen);
  auto loss = [&] {
    NoGradGuard no_grad;
    return dot(lin.forward(x), r);
  };
  lin.zero_grad();
  lin.forward(x);
  Tensor dx = lin.backward(r);
  check_gradient("linear dx", x, dx, loss, 1e-4);
  check_gradient("linear dw", lin.weight, lin.weight_grad, loss, 1e-4);
  check_gradient("linear db", lin.bias, lin.bias_grad, loss, 1e-4);
}

TEST_CASE("cross-entropy with label smoothing: value by definition, backward = finite differences") {
  Generator gen(15);
  const std::int64_t N = 4, C = 5;
  Tensor logits = random_tensor({N, C}, gen, -3.0f, 3.0f);
  Tensor labels = Tensor::from_vector<std::int64_t>({N}, {0, 4, 2, 2});
  for (float eps : {0.0f, 0.1f, 1.0f}) {
    CAPTURE(eps);
    nn::CrossEntropyLoss ce(eps);
    // by definition: mean_i Σ_c -q[i,c] log softmax[i,c]
    double want = 0.0;
    for (std::int64_t i = 0; i < N; ++i) {
      const float* l = logits.data<float>() + i * C;
      double z = 0.0;
      for (std::int64_t c = 0; c < C; ++c) z += std::exp(static_cast<double>(l[c]));
      for (std::int64_t c = 0; c < C; ++c) {
        const double q = (c == labels.data<std::int64_t>()[i] ? 1.0 - eps : 0.0) + eps / C;
        want -= q * (l[c] - std::log(z));
      }
    }
    want /= N;
    CHECK(ce.forward(logits, labels) == doctest::Approx(want).epsilon(1e-6));
    Tensor dl = ce.backward();
    check_gradient(
        "cross-entropy dlogits", logits, dl, [&] { return static_cast<double>(ce.forward(logits, labels)); },
        2e-3, 1e-2f);
  }
  nn::CrossEntropyLoss ce;
  CHECK_THROWS_WITH_AS(ce.forward(logits, Tensor::from_vector<std::int64_t>({N}, {0, 5, 1, 1})),
                       doctest::Contains("outside [0, 5)"), sgckpt::Error);
}

TEST_CASE("top-k counts, ties broken by class index") {
  const std::vector<float> l = {0.1f, 0.9f, 0.5f,   // label 1: top-1
                                0.7f, 0.7f, 0.1f,   // label 1 ties with class 0, which ranks first
                                0.3f, 0.2f, 0.1f};  // label 2: last
  Tensor logits = Tensor::from_vector<float>({3, 3}, l);
  Tensor labels = Tensor::from_vector<std::int64_t>({3}, {1, 1, 2});
  CHECK(F::topk_correct(logits, labels, 1) == 1);
  CHECK(F::topk_correct(logits, labels, 2) == 2);
  CHECK(F::topk_correct(logits, labels, 3) == 3);
  CHECK(F::topk_correct(logits, labels, 5) == 3);
}

// ---------------------------------------------------------------------------------- modules

TEST_CASE("BasicBlock with a projection shortcut: backward = finite differences") {
  Generator gen(16);
  nn::BasicBlock block(2, 3, 2, gen);  // stride 2 and a width change: shortcut.0 / shortcut.1
  REQUIRE_FALSE(block.shortcut.is_identity());
  Tensor x = random_tensor({2, 2, 4, 4}, gen);
  Tensor r = random_tensor({2, 3, 2, 2}, gen);
  block.train();
  auto loss = [&] {
    NoGradGuard no_grad;
    return dot(block.forward(x), r);
  };
  block.zero_grad();
  block.forward(x);
  Tensor dx = block.backward(r);
  check_gradient("block dx", x, dx, loss, 1e-2, 5e-3f);
  for (auto& p : block.named_parameters())
    check_gradient(p.name.c_str(), p.value, p.grad, loss, 1e-2, 5e-3f, 40);
}

// (Finite differences over a whole ResNet in float32 are too noisy to check anything: ReLU kinks
// and BatchNorm over a few values. tests/python/test_engine_resnet18.py compares its gradients
// with torch's instead.)
TEST_CASE("ResNet18: gradients accumulate until zero_grad; no-grad forwards keep nothing") {
  nn::ResNet18 model(nn::ResNet18Config::cifar(3, 1.0 / 16, 2), 5);  // planes 4, 8, 16, 32
  Generator gen(17);
  Tensor x = random_tensor({4, 2, 8, 8}, gen);
  Tensor labels = Tensor::from_vector<std::int64_t>({4}, {0, 2, 1, 2});
  nn::CrossEntropyLoss ce(0.1f);
  model.train();
  auto step = [&] {
    ce.forward(model.forward(x), labels);
    return model.backward(ce.backward(), /*need_input_grad=*/true);
  };
  model.zero_grad();
  Tensor dx1 = step();
  std::vector<Tensor> once;
  for (auto& p : model.named_parameters()) once.push_back(p.grad.clone());
  Tensor dx2 = step();  // same batch, train mode: the same gradients again, added
  std::size_t i = 0;
  for (auto& p : model.named_parameters()) {
    const Tensor& g1 = once[i++];
    for (std::size_t j = 0; j < g1.numel(); ++j)
      REQUIRE(p.grad.data<float>()[j] ==
              doctest::Approx(2.0 * g1.data<float>()[j]).epsilon(1e-4).scale(max_abs(g1)));
  }
  for (std::size_t j = 0; j < dx1.numel(); ++j) REQUIRE(dx1.data<float>()[j] == dx2.data<float>()[j]);
  ce.forward(model.forward(x), labels);
  CHECK_FALSE(model.backward(ce.backward()).defined());  // no input gradient unless asked
  CHECK(*model.layer3.blocks[1].bn2.num_batches_tracked.data<std::int64_t>() == 3);

  {
    NoGradGuard no_grad;
    model.eval();
    model.forward(x);
  }
  CHECK_THROWS_WITH_AS(model.backward(ce.backward()), doctest::Contains("without a forward"), sgckpt::Error);
  CHECK(*model.layer3.blocks[1].bn2.num_batches_tracked.data<std::int64_t>() == 3);  // eval: no update
}

TEST_CASE("ResNet18: state_dict entries, order, metadata; parameters; strict loading") {
  nn::ResNet18 model(nn::ResNet18Config::cifar(10), 1);
  sgckpt::Value sd = model.state_dict();
  REQUIRE(sd.is_dict());
  CHECK(sd.dict().kind() == sgckpt::DictKind::OrderedDict);
  CHECK(sd.size() == 122);
  CHECK(model.num_parameters() == 11173962);
  const auto params = model.named_parameters();
  CHECK(params.size() == 62);
  CHECK(params.front().name == "conv1.weight");
  CHECK(params.back().name == "linear.bias");
  const auto& items = sd.dict().items();
  CHECK(items[1].first.str() == "bn1.weight");
  CHECK(items[5].first.str() == "bn1.num_batches_tracked");
  CHECK(items[5].second.tensor().dtype() == sgckpt::DType::Int64);
  CHECK(items[5].second.tensor().shape().empty());
  CHECK(items[6].first.str() == "layer1.0.conv1.weight");
  CHECK(sd.at("layer2.0.shortcut.0.weight").tensor().shape() == sgckpt::Shape{128, 64, 1, 1});
  CHECK(sd.at("linear.weight").tensor().shape() == sgckpt::Shape{10, 512});
  const sgckpt::Value* meta = sd.dict().attribute("_metadata");
  REQUIRE(meta != nullptr);
  CHECK(meta->size() ==
        1 + 2 + 4 * (1 + 2 * 7) + 3 * 2 + 2);  // root, stem, layers and blocks, shortcut.0/1, head
  CHECK(meta->at("").at("version").as_int() == 1);
  CHECK(meta->at("layer3.0.shortcut.1").at("version").as_int() == 2);
  CHECK(meta->at("layer1.1.drop_path").at("version").as_int() == 1);
  CHECK(nn::ResNet18Config::from_state_dict(sd).planes[3] == 512);

  // a round trip through a .pth image and another model
  const auto bytes = sgckpt::save_to_memory(sd);
  nn::ResNet18 other(nn::ResNet18Config::cifar(10), 2);
  CHECK_FALSE(other.linear.weight.data<float>()[0] == model.linear.weight.data<float>()[0]);
  other.load_state_dict(sgckpt::load(bytes));
  CHECK(other.linear.weight.data<float>()[0] == model.linear.weight.data<float>()[0]);

  // every problem at once, and nothing loaded: the library's load path and its one report
  sgckpt::Value bad = sd;
  bad.dict().erase("layer1.0.bn1.bias");
  bad["extra.weight"] = sgckpt::Tensor::zeros(sgckpt::DType::Float32, {1});
  bad["linear.bias"] = sgckpt::Tensor::zeros(sgckpt::DType::Float32, {11});
  nn::ResNet18 target(nn::ResNet18Config::cifar(10), 3);
  const float before = target.conv1.weight.data<float>()[0];
  const std::string msg = sgckpt::test::error_message([&] { target.load_state_dict(bad); });
  CHECK(msg.find("missing from the checkpoint: 'layer1.0.bn1.bias'") != std::string::npos);
  CHECK(msg.find("unexpected in the checkpoint: 'extra.weight'") != std::string::npos);
  CHECK(msg.find("model 'linear.bias' [10] vs checkpoint 'linear.bias' [11]") != std::string::npos);
  CHECK(target.conv1.weight.data<float>()[0] == before);
  // non-strict: missing/unexpected keys pass, shapes still matter; dtypes convert as torch's
  // copy_ does (a float32 num_batches_tracked, as an averaged model has, truncates to int64)
  bad["linear.bias"] = sd.at("linear.bias");
  bad["bn1.num_batches_tracked"] =
      sgckpt::Tensor::from_values<float>(sgckpt::DType::Float32, {}, std::vector<float>{7.9f});
  const sgckpt::LoadReport r = target.load_state_dict(bad, {.strict = sgckpt::StrictLoad::Off});
  CHECK(r.missing == std::vector<std::string>{"layer1.0.bn1.bias"});
  CHECK(*target.bn1.num_batches_tracked.data<std::int64_t>() == 7);
  CHECK(target.conv1.weight.data<float>()[0] == model.conv1.weight.data<float>()[0]);
}

TEST_CASE("load_state_dict copies once, from a mapped file straight into the module's buffers") {
  nn::ResNet18 model(nn::ResNet18Config::cifar(10, 0.0625), 1);
  sgckpt::test::TempDir dir;
  sgckpt::Value ck = sgckpt::Value::make_dict();
  ck["net"] = model.state_dict();
  ck["ema_net"] = model.state_dict();
  ck["ema_net"]["linear.bias"].tensor().mutable_data<float>()[0] = 42.0f;
  sgckpt::save(ck, dir / "ckpt.pth");

  nn::ResNet18 other(nn::ResNet18Config::cifar(10, 0.0625), 2);
  const float* conv_buffer = other.conv1.weight.data<float>();
  const sgckpt::Value mapped = sgckpt::load(dir / "ckpt.pth", {.mmap = true});
  CHECK(mapped.at("net").at("conv1.weight").tensor().storage()->read_only());  // a view of the file
  const sgckpt::LoadReport r = other.load_state_dict(mapped);                  // its net
  CHECK(r.loaded.size() == model.state_dict().size());
  CHECK(other.conv1.weight.data<float>() == conv_buffer);  // the module's own buffer, written in place
  CHECK(other.conv1.weight.data<float>()[5] == model.conv1.weight.data<float>()[5]);
  CHECK(other.linear.bias.data<float>()[0] == model.linear.bias.data<float>()[0]);
  other.load_state_dict(mapped, {.weights = sgckpt::Weights::PreferEma});
  CHECK(other.linear.bias.data<float>()[0] == 42.0f);
}

TEST_CASE("zero_grad, named_parameters share memory with the model") {
  nn::ResNet18 model(nn::ResNet18Config::cifar(10, 0.0625), 1);
  auto params = model.named_parameters();
  params[0].grad.data<float>()[0] = 3.0f;
  CHECK(model.conv1.weight_grad.data<float>()[0] == 3.0f);
  params[0].value.data<float>()[0] = 0.5f;
  CHECK(model.conv1.weight.data<float>()[0] == 0.5f);
  model.zero_grad();
  CHECK(model.conv1.weight_grad.data<float>()[0] == 0.0f);
  CHECK(model.named_buffers().size() == 60);
}

// ---------------------------------------------------------------------------------- plumbing

TEST_CASE("Generator: state round trip, ranges, independence of seeds") {
  Generator g(42);
  for (int i = 0; i < 10; ++i) g.next_u64();
  const Generator::State s = g.state();
  CHECK(s.seed == 42);
  CHECK(s.offset == 10);
  std::vector<std::uint64_t> a, b;
  for (int i = 0; i < 5; ++i) a.push_back(g.next_u64());
  Generator h(0);
  h.set_state(s);
  for (int i = 0; i < 5; ++i) b.push_back(h.next_u64());
  CHECK(a == b);
  double sum = 0.0;
  for (int i = 0; i < 20000; ++i) {
    const float u = g.uniform(-2.0f, 3.0f);
    REQUIRE(u >= -2.0f);
    REQUIRE(u < 3.0f);
    sum += u;
    REQUIRE(g.below(7) < 7);
  }
  CHECK(sum / 20000 == doctest::Approx(0.5).epsilon(0.05));
  CHECK(Generator(1).next_u64() != Generator(2).next_u64());
}

TEST_CASE("engine Tensor: dtypes, sharing, State<engine::Tensor> round trip") {
  Tensor t = Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor v = t.reshape({3, 2});
  CHECK(v.shares_buffer_with(t));
  Tensor c = t.clone();
  c.data<float>()[0] = 9.0f;
  CHECK(t.data<float>()[0] == 1.0f);
  CHECK_THROWS_AS(t.data<std::int64_t>(), sgckpt::Error);
  CHECK_THROWS_AS(Tensor::empty({2}, sgckpt::DType::Float64), sgckpt::Error);

  sgckpt::State<Tensor> state;
  state["w"] = t;
  state["n"] = Tensor::scalar_int64(5);
  Tensor h = Tensor::empty({2}, sgckpt::DType::Float16);
  h.data<sgckpt::Half>()[0].bits = sgckpt::float_to_half(1.5f);
  h.data<sgckpt::Half>()[1].bits = sgckpt::float_to_half(-2.0f);
  state["h"] = h;
  state["u"] = Tensor::from_vector<std::uint8_t>({3}, {1, 2, 255});
  const auto bytes = sgckpt::save_to_memory(state.to_host());
  auto back = sgckpt::State<Tensor>::from_host(sgckpt::load(bytes));
  CHECK(back.at("w").tensor().shape() == Shape{2, 3});
  CHECK(back.at("w").tensor().data<float>()[5] == 6.0f);
  CHECK(*back.at("n").tensor().data<std::int64_t>() == 5);
  CHECK(sgckpt::half_to_float(back.at("h").tensor().data<sgckpt::Half>()[1].bits) == -2.0f);
  CHECK(back.at("u").tensor().data<std::uint8_t>()[2] == 255);

  // a non-contiguous host tensor becomes contiguous
  sgckpt::Tensor host = t.to_host();
  sgckpt::Tensor transposed =
      sgckpt::Tensor::view_of(host.storage(), sgckpt::DType::Float32, 0, {3, 2}, {1, 3});
  Tensor e = Tensor::from_host(transposed);
  CHECK(e.data<float>()[1] == 4.0f);
}

}  // namespace
