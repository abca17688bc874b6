// The engine's GradScaler (include/sgckpt/engine/optim/grad_scaler.hpp) against
// torch.cuda.amp.GradScaler's semantics: growth after growth_interval clean steps, backoff and a
// skipped optimizer step on inf/NaN, the growth tracker, unscaling by float(1/scale), and the
// state_dict ({} when disabled).
#include <doctest/doctest.h>

#include <sgckpt/engine/optim/grad_scaler.hpp>
#include <sgckpt/engine/optim/sgd.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cmath>
#include <limits>
#include <vector>

using namespace sgckpt;
using namespace sgckpt::engine;

namespace {

struct Fixture {
  std::vector<float> w{1.0f, 2.0f, 3.0f};
  std::vector<float> g{0.0f, 0.0f, 0.0f};
  std::vector<ParamRef> refs() { return {{"w", w.data(), g.data(), w.size(), {3}}}; }
};

Value sgd_options() {
  Value o = Value::make_dict();
  o["lr"] = 1.0;
  return o;
}

}  // namespace

TEST_CASE("GradScaler: defaults and state_dict") {
  GradScaler s;
  CHECK(s.get_scale() == 65536.0f);
  const Value sd = s.state_dict();
  REQUIRE(sd.size() == 5);
  const char* keys[] = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"};
  std::size_t i = 0;
  for (const auto& [k, v] : sd.dict()) CHECK(k.str() == keys[i++]);
  CHECK(sd.at("scale").is_float());
  CHECK(sd.at("scale").as_float() == 65536.0);
  CHECK(sd.at("growth_factor").as_float() == 2.0);
  CHECK(sd.at("backoff_factor").as_float() == 0.5);
  CHECK(sd.at("growth_interval").is_int());
  CHECK(sd.at("growth_interval").as_int() == 2000);
  CHECK(sd.at("_growth_tracker").as_int() == 0);

  GradScalerOptions off;
  off.enabled = false;
  GradScaler d(off);
  CHECK(d.state_dict().is_dict());
  CHECK(d.state_dict().size() == 0);
  CHECK(d.get_scale() == 1.0f);
  CHECK(d.scale(3.0f) == 3.0f);
  // an enabled scaler refuses the {} of a disabled one, as torch does
  CHECK_THROWS(s.load_state_dict(d.state_dict()));
}

TEST_CASE("GradScaler: growth after growth_interval clean steps, backoff and skip on inf/NaN") {
  Fixture f;
  SGD opt(f.refs(), sgd_options());
  GradScalerOptions o;
  o.init_scale = 8.0;
  o.growth_interval = 3;
  GradScaler s(o);

  auto iteration = [&](float grad_value) {
    for (auto& x : f.g) x = grad_value * s.get_scale();  // backward of a scaled loss
    const bool stepped = s.step(opt);
    s.update();
    return stepped;
  };

  // 2 clean steps: tracker 1, 2; the 3rd grows the scale and resets the tracker
  CHECK(iteration(0.5f));
  CHECK(s.growth_tracker() == 1);
  CHECK(f.w[0] == doctest::Approx(0.5));  // 1 - 1.0 * 0.5 (grads unscaled before the step)
  CHECK(iteration(0.5f));
  CHECK(s.growth_tracker() == 2);
  CHECK(s.get_scale() == 8.0f);
  CHECK(iteration(0.5f));
  CHECK(s.growth_tracker() == 0);
  CHECK(s.get_scale() == 16.0f);
  CHECK(f.w[0] == doctest::Approx(-0.5));

  // inf: step skipped, scale halved, tracker reset
  CHECK(iteration(0.5f));
  CHECK(s.growth_tracker() == 1);
  const float before = f.w[0];
  CHECK_FALSE(iteration(std::numeric_limits<float>::infinity()));
  CHECK(f.w[0] == before);
  CHECK(s.get_scale() == 8.0f);
  CHECK(s.growth_tracker() == 0);

  // NaN in one element only: skipped too
  for (auto& x : f.g) x = 1.0f;
  f.g[1] = std::numeric_limits<float>::quiet_NaN();
  s.unscale(opt.params());
  CHECK(s.found_inf());
  CHECK_FALSE(s.step(opt));
  s.update();
  CHECK(s.get_scale() == 4.0f);
  CHECK(f.w[0] == before);

  // a finite grad that overflows once multiplied is still finite after unscale: no skip
  CHECK(iteration(1e30f / 4.0f));
  CHECK(s.growth_tracker() == 1);
}

TEST_CASE("GradScaler: unscale multiplies by float(1/scale) and may be called once per update") {
  GradScalerOptions o;
  o.init_scale = 3.0;
  GradScaler s(o);
  std::vector<float> g{3.0f, -6.0f, 1.0f};
  GradBuffer b{g.data(), g.size()};
  s.unscale(std::span<const GradBuffer>(&b, 1));
  const float inv = static_cast<float>(1.0 / 3.0);
  CHECK(g[0] == 3.0f * inv);
  CHECK(g[1] == -6.0f * inv);
  CHECK(g[2] == 1.0f * inv);
  CHECK_FALSE(s.found_inf());
  CHECK_THROWS(s.unscale(std::span<const GradBuffer>(&b, 1)));
  s.update();
  CHECK_NOTHROW(s.unscale(std::span<const GradBuffer>(&b, 1)));
}

TEST_CASE("GradScaler: growth stops at a non-finite scale; backoff sequence; state round trip") {
  GradScalerOptions o;
  o.init_scale = 3.0e38;
  o.growth_interval = 1;
  GradScaler s(o);
  std::vector<float> g{1.0f};
  GradBuffer b{g.data(), 1};
  s.unscale(std::span<const GradBuffer>(&b, 1));
  s.update();  // 6e38 overflows float32: the scale stays
  CHECK(s.get_scale() == 3.0e38f);
  CHECK(s.growth_tracker() == 0);

  GradScaler t;
  std::vector<float> scales;
  for (int i = 0; i < 4; ++i) {
    g[0] = std::numeric_limits<float>::infinity();
    s.unscale(std::span<const GradBuffer>(&b, 1));
    t.unscale(std::span<const GradBuffer>(&b, 1));
    t.update();
    s.update();
    scales.push_back(t.get_scale());
  }
  CHECK(scales == std::vector<float>{32768.0f, 16384.0f, 8192.0f, 4096.0f});

  // the state survives a save/load through the pth writer
  const Value sd = t.state_dict();
  const Value back = sgckpt::load(sgckpt::save_to_memory(sd));
  GradScaler u;
  u.load_state_dict(back);
  CHECK(u.get_scale() == 4096.0f);
  CHECK(u.growth_tracker() == 0);
  CHECK(u.state_dict().at("growth_interval").as_int() == 2000);
}
