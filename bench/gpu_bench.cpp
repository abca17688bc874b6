// bench/gpu_bench: the CUDA backend's numbers for bench/gpu_check.sh, one "name value unit" line
// each (the script sets them beside torch's, measured on the same GPU in the same run):
//   copy_gbs          device-to-device copy of 1 GiB (bytes read + written per second)
//   ema_<state>_gbs   the fused EMA kernel (read EMA and model, write EMA: 12 bytes/element)
//   avg_<state>_gbs   the fused averaging kernel's add (read the double sum and a snapshot,
//                     write the sum: 20 bytes/element)
//   train_b<B>_ips    ResNet18-CIFAR training steps, float32, synthetic data (images/s)
//   snapshot_ms       the stall of taking the model's state_dict to host memory
// <state> is resnet18 (the CIFAR model's floating tensors) or 1g (256 tensors of 1 Mi floats).
// Every repeat starts with L2 scrubbed (a 512 MiB write); times are medians.
//
// Usage: gpu_bench [--repeats N] [--train-steps N]
//        gpu_bench --interop DIR   reads DIR/torch2_written.pth (torch 2.x's), writes it back as
//                                  DIR/sgckpt_written.pth (for torch to load with weights_only=True)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "sgckpt/cuda/cuda.hpp"
#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/optim/sgd.hpp"
#include "sgckpt/sgckpt.hpp"

namespace eng = sgckpt::engine;
namespace mt = sgckpt::engine::ops::mt;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

struct DeviceMem {
  eng::Backend& b;
  std::size_t n;
  void* p;
  DeviceMem(eng::Backend& be, std::size_t bytes) : b(be), n(bytes), p(be.allocate(bytes)) {
    be.fill_zero(p, n);
  }
  ~DeviceMem() { b.deallocate(p, n); }
};

// The median seconds of `fn` over `repeats` runs, L2 scrubbed before each.
template <class Fn>
double timed(eng::Backend& b, DeviceMem& scrub, int repeats, Fn fn) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    b.fill_zero(scrub.p, scrub.n);
    b.synchronize();
    const double t0 = now();
    fn();
    b.synchronize();
    t.push_back(now() - t0);
  }
  return median(t);
}

// A state of float tensors with the given lengths, in device memory: EMA, model, double sums.
struct State {
  std::vector<std::unique_ptr<DeviceMem>> ema, model, sums;
  std::size_t elements = 0;
  mt::Table ema_table, avg_table;
  State(eng::Backend& b, const std::vector<std::size_t>& lengths) {
    std::vector<mt::Slot> e, a;
    for (std::size_t n : lengths) {
      ema.push_back(std::make_unique<DeviceMem>(b, n * 4));
      model.push_back(std::make_unique<DeviceMem>(b, n * 4));
      sums.push_back(std::make_unique<DeviceMem>(b, n * 8));
      mt::Slot se, sa;
      se.ptr[0] = ema.back()->p, se.ptr[1] = model.back()->p;
      sa.ptr[0] = sums.back()->p, sa.ptr[1] = model.back()->p;
      se.numel = sa.numel = static_cast<std::int64_t>(n);
      e.push_back(se);
      a.push_back(sa);
      elements += n;
    }
    ema_table = mt::make_table(e);
    avg_table = mt::make_table(a);
  }
};

void kernels(eng::Backend& b, DeviceMem& scrub, const char* name, const std::vector<std::size_t>& lengths,
             int repeats) {
  State s(b, lengths);
  const auto ema = b.make_fused_table(s.ema_table), avg = b.make_fused_table(s.avg_table);
  const auto c = sgckpt::detail::ew::ema_coefficients(0.9998);
  const double te = timed(b, scrub, repeats, [&] { ema->run(mt::EmaOp{c.d32, c.a32}); });
  const double ta = timed(b, scrub, repeats, [&] { avg->run(mt::AverageAddOp{false}); });
  std::printf("ema_%s_gbs %.1f GB/s\n", name, 12.0 * static_cast<double>(s.elements) / te / 1e9);
  std::printf("avg_%s_gbs %.1f GB/s\n", name, 20.0 * static_cast<double>(s.elements) / ta / 1e9);
  std::printf("ema_%s_ms %.3f ms\n", name, te * 1e3);
}

void train(int batch, int steps) {
  const auto arch = eng::nn::ResNet18Config::cifar(10, 1.0);
  eng::nn::ResNet18 model(arch, 1);
  model.to(eng::Device::CUDA);
  std::vector<eng::ParamRef> refs;
  for (auto& p : model.named_parameters())
    refs.push_back({p.name, p.value.data_ptr<float>(), p.grad.data_ptr<float>(), p.value.numel(),
                    p.value.shape(), p.value.device()});
  sgckpt::Value o = sgckpt::Value::make_dict();
  o["lr"] = 0.1;
  o["momentum"] = 0.9;
  o["weight_decay"] = 5e-4;
  eng::SGD opt(refs, o);
  eng::nn::CrossEntropyLoss criterion(0.0f);
  eng::Tensor x = eng::Tensor::zeros({batch, 3, 32, 32});
  std::vector<std::int64_t> labels(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) labels[static_cast<std::size_t>(i)] = i % 10;
  const eng::Tensor y = eng::Tensor::from_vector<std::int64_t>({batch}, labels);
  const eng::Tensor xd = x.to(eng::Device::CUDA);
  auto step = [&] {
    model.zero_grad();
    criterion.forward(model.forward(xd), y);  // returns the loss: one synchronization per step
    model.backward(criterion.backward());
    opt.step();
  };
  for (int i = 0; i < 3; ++i) step();
  eng::backend(eng::Device::CUDA).synchronize();
  const double t0 = now();
  for (int i = 0; i < steps; ++i) step();
  eng::backend(eng::Device::CUDA).synchronize();
  std::printf("train_b%d_ips %.0f images/s\n", batch, batch * steps / (now() - t0));
  if (batch == 256) {
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
      const double s0 = now();
      const sgckpt::Value sd = model.state_dict();
      t.push_back(now() - s0);
    }
    std::printf("snapshot_ms %.2f ms\n", median(t) * 1e3);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  int repeats = 20, train_steps = 30;
  std::string interop;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--repeats")
      repeats = std::stoi(argv[i + 1]);
    else if (a == "--train-steps")
      train_steps = std::stoi(argv[i + 1]);
    else if (a == "--interop")
      interop = argv[i + 1];
    else
      throw std::runtime_error("unknown option " + a);
  }
  if (!interop.empty()) {
    const sgckpt::Value sd = sgckpt::load(interop + "/torch2_written.pth");
    sgckpt::save(sd, interop + "/sgckpt_written.pth");
    std::printf("sgckpt_read_torch2 yes (%zu entries)\n", sd.size());
    return 0;
  }
  const sgckpt::cuda::DeviceStatus st = sgckpt::cuda::probe();
  if (!st.usable) {
    std::printf("skipped: %s\n", st.reason.c_str());
    return 0;
  }
  std::printf("device %s (sm_%d%d, %.0f GiB)\n", st.name.c_str(), st.major, st.minor,
              static_cast<double>(st.memory) / (1 << 30));
  std::printf("libraries %s\n", sgckpt::cuda::library_versions().c_str());
  auto b = sgckpt::cuda::install();
  DeviceMem scrub(*b, std::size_t{512} << 20);
  {
    const std::size_t bytes = std::size_t{1} << 30;
    DeviceMem src(*b, bytes), dst(*b, bytes);
    const double t = timed(*b, scrub, repeats, [&] { b->copy(dst.p, src.p, bytes); });
    std::printf("copy_gbs %.1f GB/s\n", 2.0 * static_cast<double>(bytes) / t / 1e9);
  }
  {
    eng::nn::ResNet18 model(eng::nn::ResNet18Config::cifar(10, 1.0), 1);
    std::vector<std::size_t> lengths;
    for (auto& p : model.named_parameters()) lengths.push_back(p.value.numel());
    kernels(*b, scrub, "resnet18", lengths, repeats);
  }
  kernels(*b, scrub, "1g", std::vector<std::size_t>(256, std::size_t{1} << 20), repeats);
  for (int batch : {256, 512}) train(batch, train_steps);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gpu_bench: %s\n", e.what());
  return 1;
}
