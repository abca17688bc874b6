// The engine's device seam (docs/engine.md, "The device seam"), driven by a fake device: a
// backend registered for Device::CUDA whose memory is host memory and whose kernels are the
// CPU kernels, but which behaves like a GPU where it matters to the engine:
//  * every kernel and copy is queued on a stream and runs only when the host waits (a copy to
//    the host, synchronize(), a kernel returning a value), so engine code that read device
//    memory without waiting, or freed memory queued work still uses, computes wrong numbers;
//  * fresh device memory is filled with garbage, so reading memory nobody wrote shows;
//  * it counts host synchronizations, the cost the CUDA backend must keep low.
// Because the kernels are the CPU's, a model trained through the seam must match the CPU
// model bit for bit: a training step, and a checkpoint/resume of the Trainer.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/engine.hpp"
#include "sgckpt/engine/optim/sgd.hpp"
#include "sgckpt/engine/train/trainer.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;
namespace fs = std::filesystem;

namespace {

class FakeDevice final : public Backend {
 public:
  ~FakeDevice() override { drain(); }

  Device device() const noexcept override { return Device::CUDA; }
  const char* name() const noexcept override { return "fake"; }

  // ---- memory ----
  void* allocate(std::size_t n) override {
    void* p = cpu_.allocate(n);
    std::memset(p, 0xA5, n);  // garbage: reading memory nobody wrote shows
    ++allocations;
    return p;
  }
  // Stream-ordered, like cudaFreeAsync: the memory goes back once queued work is done.
  void deallocate(void* p, std::size_t n) noexcept override { freed_.emplace_back(p, n); }
  void copy_from_host(void* dst, const void* src, std::size_t n) override {
    auto staged = std::make_shared<std::vector<std::byte>>(static_cast<const std::byte*>(src),
                                                           static_cast<const std::byte*>(src) + n);
    enqueue([dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  }
  void copy_to_host(void* dst, const void* src, std::size_t n) override {
    wait();
    std::memcpy(dst, src, n);
  }
  void copy(void* dst, const void* src, std::size_t n) override {
    enqueue([=] { std::memcpy(dst, src, n); });
  }
  void fill_zero(void* dst, std::size_t n) override {
    enqueue([=] { std::memset(dst, 0, n); });
  }
  void synchronize() override { wait(); }

  // ---- kernels: the CPU's, run later ----
  void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                      const ops::Conv2dShape& s) override {
    enqueue([=, this] { cpu_.conv2d_forward(y, x, w, b, s); });
  }
  void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const ops::Conv2dShape& s) override {
    enqueue([=, this] { cpu_.conv2d_backward(dx, dw, db, dy, x, w, s); });
  }
  void batchnorm_forward(const ops::BatchNormForward& a) override {
    enqueue([=, this] { cpu_.batchnorm_forward(a); });
  }
  void batchnorm_backward(const ops::BatchNormBackward& a) override {
    enqueue([=, this] { cpu_.batchnorm_backward(a); });
  }
  void relu_forward(float* y, const float* x, std::int64_t n) override {
    enqueue([=, this] { cpu_.relu_forward(y, x, n); });
  }
  void relu_backward(float* dx, const float* dy, const float* y, std::int64_t n) override {
    enqueue([=, this] { cpu_.relu_backward(dx, dy, y, n); });
  }
  void add(float* out, const float* a, const float* b, std::int64_t n) override {
    enqueue([=, this] { cpu_.add(out, a, b, n); });
  }
  void global_avgpool_forward(float* y, const float* x, std::int64_t NC, std::int64_t HW) override {
    enqueue([=, this] { cpu_.global_avgpool_forward(y, x, NC, HW); });
  }
  void global_avgpool_backward(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) override {
    enqueue([=, this] { cpu_.global_avgpool_backward(dx, dy, NC, HW); });
  }
  void linear_forward(float* y, const float* x, const float* w, const float* b, std::int64_t N,
                      std::int64_t in, std::int64_t out) override {
    enqueue([=, this] { cpu_.linear_forward(y, x, w, b, N, in, out); });
  }
  void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       std::int64_t N, std::int64_t in, std::int64_t out) override {
    enqueue([=, this] { cpu_.linear_backward(dx, dw, db, dy, x, w, N, in, out); });
  }
  float cross_entropy_forward(float* probs, const float* logits, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing) override {
    wait();
    return cpu_.cross_entropy_forward(probs, logits, labels, N, C, label_smoothing);
  }
  void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing, float dloss) override {
    enqueue([=, this] { cpu_.cross_entropy_backward(dlogits, probs, labels, N, C, label_smoothing, dloss); });
  }
  std::int64_t topk_correct(const float* logits, const std::int64_t* labels, std::int64_t N, std::int64_t C,
                            std::int64_t k) override {
    wait();
    return cpu_.topk_correct(logits, labels, N, C, k);
  }
  void sgd_step(const ops::SgdStep& a, std::size_t n) override {
    enqueue([=, this] { cpu_.sgd_step(a, n); });
  }
  void gather_batch(const ops::GatherBatch& g) override {
    enqueue([=, this] { cpu_.gather_batch(g); });
  }
  void cross_entropy_forward_to(float* loss, float* probs, const float* logits, const std::int64_t* labels,
                                std::int64_t N, std::int64_t C, float ls) override {
    enqueue([=, this] { cpu_.cross_entropy_forward_to(loss, probs, logits, labels, N, C, ls); });
  }
  void topk_correct_to(std::int64_t* correct, const float* logits, const std::int64_t* labels, std::int64_t N,
                       std::int64_t C, std::int64_t k) override {
    enqueue([=, this] { cpu_.topk_correct_to(correct, logits, labels, N, C, k); });
  }
  // A copy queued like a kernel; waiting for it runs the queue up to it, not beyond.
  std::uint64_t copy_to_host_later(void* dst, const void* src, std::size_t n) override {
    enqueue([=] { std::memcpy(dst, src, n); });
    return done_ + queue_.size();
  }
  void wait_copy(std::uint64_t ticket) override {
    ++copy_waits;
    while (done_ < ticket && !queue_.empty()) run_one();
  }
  std::int64_t copy_waits = 0;
  // The kernels' emulation, queued like any kernel (the table's host copy lives in the queue).
  std::unique_ptr<FusedTable> make_fused_table(const ops::mt::Table& t) override {
    struct Queued final : FusedTable {
      Queued(FakeDevice& d, ops::mt::Table table)
          : dev(d), t(std::make_shared<ops::mt::Table>(std::move(table))) {}
      void run(const ops::mt::FusedOp& op) override {
        dev.enqueue([table = t, op] { ops::mt::run_emulated(*table, op); });
      }
      FakeDevice& dev;
      std::shared_ptr<ops::mt::Table> t;
    };
    ++fused_tables;
    return std::make_unique<Queued>(*this, t);
  }
  std::int64_t fused_tables = 0;

  std::size_t pending() const { return queue_.size(); }
  std::int64_t host_syncs = 0;
  std::int64_t allocations = 0;

 private:
  void enqueue(std::function<void()> op) { queue_.push_back(std::move(op)); }
  // The host waits for the stream: a synchronization.
  void wait() {
    ++host_syncs;
    drain();
  }
  void run_one() {
    auto op = std::move(queue_.front());
    queue_.pop_front();
    ++done_;
    op();
  }
  void drain() {
    while (!queue_.empty()) run_one();
    for (auto [p, n] : freed_) cpu_.deallocate(p, n);
    freed_.clear();
  }

  CpuBackend cpu_;
  std::deque<std::function<void()>> queue_;
  std::uint64_t done_ = 0;  // ops run so far
  std::vector<std::pair<void*, std::size_t>> freed_;
};

// Registers a fresh fake device for Device::CUDA for the life of the object.
struct FakeDeviceScope {
  std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
  std::shared_ptr<Backend> previous = register_backend(device);
  ~FakeDeviceScope() {
    if (previous)
      register_backend(previous);
    else
      unregister_backend(Device::CUDA);
  }
};

bool same_bytes(const sgckpt::Tensor& a, const sgckpt::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.contiguous_bytes() == b.contiguous_bytes();
}

// Every tensor of two state dicts has the same bytes (names in the same order).
void check_same_state(const Value& a, const Value& b) {
  REQUIRE(a.size() == b.size());
  auto ib = b.dict().begin();
  for (const auto& entry : a.dict()) {
    const auto& [kb, vb] = *ib++;
    INFO(entry.first.str());
    REQUIRE(entry.first == kb);
    CHECK(same_bytes(entry.second.tensor(), vb.tensor()));
  }
}

engine::Tensor random_images(std::int64_t n, std::uint64_t seed) {
  engine::Tensor x = engine::Tensor::empty({n, 3, 32, 32});
  Generator gen(seed);
  float* p = x.data<float>();
  for (std::size_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>(gen.normal());
  return x;
}

std::vector<ParamRef> param_refs(nn::Module& m) {
  std::vector<ParamRef> refs;
  for (auto& p : m.named_parameters())
    refs.push_back({p.name, p.value.data_ptr<float>(), p.grad.data_ptr<float>(), p.value.numel(),
                    p.value.shape(), p.value.device()});
  return refs;
}

Value sgd_options() {
  Value o = Value::make_dict();
  o["lr"] = 0.1;
  o["momentum"] = 0.9;
  o["weight_decay"] = 5e-4;
  return o;
}

// One SGD training step; returns the loss.
float train_step(nn::ResNet18& model, SGD& opt, const engine::Tensor& x, const engine::Tensor& y) {
  nn::CrossEntropyLoss criterion(0.1f);
  model.zero_grad();
  const float loss = criterion.forward(model.forward(x.to(model.device())), y);
  model.backward(criterion.backward());
  opt.step();
  return loss;
}

}  // namespace

TEST_SUITE("engine/device_seam") {
  TEST_CASE("a tensor on a device: host access is refused, to() copies, the host copy has the values") {
    FakeDeviceScope fake;
    const engine::Tensor h = engine::Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
    const engine::Tensor d = h.to(Device::CUDA);
    CHECK(d.device() == Device::CUDA);
    CHECK(test::error_message([&] { (void)d.data<float>(); }) ==
          "engine: host access to a tensor on cuda (copy it with to(Device::CPU))");
    CHECK(fake.device->pending() > 0);  // the upload is queued, not done
    const engine::Tensor back = d.to(Device::CPU);
    CHECK(fake.device->host_syncs == 1);
    CHECK(std::vector<float>(back.data<float>(), back.data<float>() + 6) ==
          std::vector<float>{1, 2, 3, 4, 5, 6});
    CHECK(same_bytes(d.clone().to_host(), h.to_host()));

    engine::Tensor z = engine::Tensor::zeros({4}, DType::Float32, Device::CUDA);
    CHECK(z.to(Device::CPU).data<float>()[3] == 0.0f);
  }

  TEST_CASE("without a registered backend a device tensor is a clear error") {
    std::shared_ptr<Backend> saved = unregister_backend(Device::CUDA);
    CHECK(test::error_message([] { engine::Tensor::empty({2}, DType::Float32, Device::CUDA); }) ==
          "engine: no backend is registered for device cuda (this build has no CUDA backend)");
    if (saved) register_backend(saved);
  }

  TEST_CASE("an op on tensors of two devices names both") {
    FakeDeviceScope fake;
    nn::ResNet18 model(nn::ResNet18Config::cifar(10, 0.125), 1);
    model.to(Device::CUDA);
    const std::string msg = test::error_message([&] { model.conv1.forward(random_images(2, 3)); });
    CHECK(msg == "Conv2d: tensors on cpu and cuda (move the model and its inputs to one device with to())");
  }

  TEST_CASE("channels_last: the shape stays NCHW, the host copy has torch's channels_last strides") {
    engine::Tensor x = random_images(2, 5);
    const engine::Tensor cl = x.to(MemoryFormat::ChannelsLast);
    CHECK(cl.memory_format() == MemoryFormat::ChannelsLast);
    CHECK(cl.shape() == Shape{2, 3, 32, 32});
    const sgckpt::Tensor h = cl.to_host();
    CHECK(h.strides() == sgckpt::Shape{3 * 32 * 32, 1, 32 * 3, 3});
    CHECK(same_bytes(h, x.to_host()));  // same elements, other order in memory
    CHECK(same_bytes(cl.to(MemoryFormat::Contiguous).to_host(), x.to_host()));
    nn::ResNet18 model(nn::ResNet18Config::cifar(10, 0.125), 1);
    CHECK(test::error_message([&] { model.conv1.forward(cl); }) ==
          "Conv2d: expected contiguous (NCHW) tensors, got one in channels_last format (convert it with "
          "to(MemoryFormat::Contiguous))");
  }

  TEST_CASE("the fused BatchNorm ops are the CPU sequences, bit for bit") {
    nn::BatchNorm2d a(3), b(3);
    const engine::Tensor x = random_images(2, 11), r = random_images(2, 12);
    // forward: relu(bn(x) + r), fused and as the sequence
    engine::Tensor fused = a.forward(x, ops::BnActivation::AddRelu, r);
    engine::Tensor seq = b.forward(x);
    nn::functional::add_(seq, r);
    nn::functional::relu_(seq);
    CHECK(same_bytes(fused.to_host(), seq.to_host()));
    // backward: the residual's gradient is relu's; dx is bn's backward of it
    const engine::Tensor dy = random_images(2, 13);
    engine::Tensor dres;
    const engine::Tensor dx_fused = a.backward(dy, true, &dres);
    const engine::Tensor d = nn::functional::relu_backward(dy, seq);
    const engine::Tensor dx_seq = b.backward(d);
    CHECK(same_bytes(dres.to_host(), d.to_host()));
    CHECK(same_bytes(dx_fused.to_host(), dx_seq.to_host()));
    CHECK(same_bytes(a.weight_grad.to_host(), b.weight_grad.to_host()));
  }

  TEST_CASE("a training step through the seam gives the CPU's bits, with one host synchronization") {
    FakeDeviceScope fake;
    const engine::Tensor x = random_images(4, 21);
    const engine::Tensor y = engine::Tensor::from_vector<std::int64_t>({4}, {3, 1, 4, 1});
    const auto arch = nn::ResNet18Config::cifar(10, 0.125);

    nn::ResNet18 cpu_model(arch, 5), dev_model(arch, 5);
    dev_model.to(Device::CUDA);
    CHECK(dev_model.layer2.device() == Device::CUDA);  // every module of the tree moved
    CHECK(dev_model.layer2.blocks[0].bn1.running_mean.device() == Device::CUDA);
    CHECK(dev_model.layer2.blocks[0].bn1.num_batches_tracked.device() == Device::CPU);  // a host counter
    SGD cpu_opt(param_refs(cpu_model), sgd_options()), dev_opt(param_refs(dev_model), sgd_options());

    for (int step = 0; step < 2; ++step) {
      const std::int64_t syncs = fake.device->host_syncs;
      const float cpu_loss = train_step(cpu_model, cpu_opt, x, y);
      const float dev_loss = train_step(dev_model, dev_opt, x, y);
      CHECK(fake.device->host_syncs - syncs == 1);  // the loss; the rest stays queued
      CHECK(fake.device->pending() > 0);
      CHECK(std::memcmp(&cpu_loss, &dev_loss, sizeof(float)) == 0);
    }
    check_same_state(cpu_model.state_dict(), dev_model.state_dict());
    check_same_state(cpu_opt.state_dict().at("state")[Key(0)], dev_opt.state_dict().at("state")[Key(0)]);
    CHECK(dev_opt.momentum_buffer(0).device() == Device::CUDA);
  }

  TEST_CASE("AdamW on the device: one fused launch a step, the CPU's bits, its state saved and resumed") {
    FakeDeviceScope fake;
    const engine::Tensor x = random_images(4, 23);
    const engine::Tensor y = engine::Tensor::from_vector<std::int64_t>({4}, {3, 1, 4, 1});
    const auto arch = nn::ResNet18Config::cifar(10, 0.125);
    Value o = Value::make_dict();
    o["lr"] = 0.01;
    o["weight_decay"] = 0.05;
    o["amsgrad"] = true;
    nn::ResNet18 cpu_model(arch, 5), dev_model(arch, 5);
    dev_model.to(Device::CUDA);
    AdamW cpu_opt(param_refs(cpu_model), o), dev_opt(param_refs(dev_model), o);
    auto step = [&](nn::ResNet18& m, Optimizer& opt) {
      nn::CrossEntropyLoss criterion(0.1f);
      m.zero_grad();
      criterion.forward(m.forward(x.to(m.device())), y);
      m.backward(criterion.backward());
      opt.step();
    };
    for (int s = 0; s < 2; ++s) {
      step(cpu_model, cpu_opt);
      const std::int64_t tables = fake.device->fused_tables;
      step(dev_model, dev_opt);
      CHECK(fake.device->fused_tables - tables == (s == 0 ? 1 : 0));  // built once, then reused
    }
    check_same_state(cpu_model.state_dict(), dev_model.state_dict());
    const Value sa = cpu_opt.state_dict(), sb = dev_opt.state_dict();
    for (const char* k : {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
      CHECK(same_bytes(sa.at("state")[Key(0)].at(k).tensor(), sb.at("state")[Key(0)].at(k).tensor()));

    // A new optimizer on the device takes the saved state and continues as the CPU does.
    AdamW resumed(param_refs(dev_model), o);
    resumed.load_state_dict(sb);
    step(cpu_model, cpu_opt);
    step(dev_model, resumed);
    check_same_state(cpu_model.state_dict(), dev_model.state_dict());
  }

  TEST_CASE("a batch made on the device is the host loader's batch, from the same draws") {
    FakeDeviceScope fake;
    data::Dataset ds;
    ds.images = random_images(10, 41);
    ds.labels = engine::Tensor::from_vector<std::int64_t>({10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    ds.num_classes = 10;
    ds.black = {-1.0f, -2.0f, -3.0f};
    for (const bool augment : {false, true}) {
      CAPTURE(augment);
      data::LoaderOptions o{.batch_size = 4, .shuffle = true, .drop_last = false, .augment = {}};
      if (augment) o.augment = {4, true};
      data::DataLoader host(ds, o), dev(ds, o);
      const data::DeviceImages images = dev.upload(Device::CUDA);
      Generator g1(3), g2(3);
      host.start_epoch(g1);
      dev.start_epoch(g2);
      for (std::int64_t b = 0; b < host.num_batches(); ++b) {  // 4, 4, then 2
        const data::Batch h = host.batch(b, g1);
        const data::Batch d = dev.batch_on(dev.plan(b, g2), images);
        CHECK(d.x.device() == Device::CUDA);
        CHECK(d.y.device() == Device::CPU);  // the loss checks the labels on the host
        CHECK(same_bytes(d.x.to_host(), h.x.to_host()));
        CHECK(same_bytes(d.y.to_host(), h.y.to_host()));
      }
      CHECK(g1.next_u64() == g2.next_u64());  // the generator moved on alike
    }
  }

  TEST_CASE("the Trainer checkpoints and resumes through the seam, bit-exact with the CPU run") {
    FakeDeviceScope fake;
    test::TempDir tmp;
    data::Dataset images;
    images.images = random_images(8, 31);
    images.labels = engine::Tensor::from_vector<std::int64_t>({8}, {0, 1, 0, 1, 0, 1, 0, 1});
    images.num_classes = 2;
    images.black = {0.0f, 0.0f, 0.0f};

    auto trainer = [&](const char* experiment, Device device, int max_epochs) {
      train::TrainConfig cfg;
      cfg.max_epochs = max_epochs;
      cfg.batch_size = 4;
      cfg.valid_batch_size = 8;
      cfg.optimizer_params = sgd_options();
      cfg.ema = true;
      cfg.augment = {4, true};  // on the device: batches gathered there with the host's draws
      cfg.device = device;
      CheckpointConfig ckpt;
      ckpt.ckpt_root_dir = tmp.path();
      ckpt.experiment_name = experiment;
      ckpt.async_save = false;
      ckpt.durable = false;
      return train::Trainer(nn::ResNet18Config::cifar(2, 1.0 / 16), cfg, ckpt);
    };
    auto latest = [&](const char* experiment) {
      const ResumePlan plan = resolve_resume(tmp.path(), experiment, {.resume = true});
      return load(plan.run_dir / "ckpt_latest.pth");
    };

    // The CPU, two epochs in one go.
    trainer("cpu", Device::CPU, 2).fit(images, images, resolve_resume(tmp.path(), "cpu", {}));
    // The device: stopped after the first epoch's checkpoint, then a new Trainer resumes the run.
    struct Stop {};
    train::Trainer first = trainer("dev", Device::CUDA, 2);
    first.on_epoch = [](const train::EpochSummary&) { throw Stop{}; };
    CHECK_THROWS_AS(first.fit(images, images, resolve_resume(tmp.path(), "dev", {})), Stop);
    CHECK(latest("dev").at("epoch").as_number() == 1);
    const std::int64_t allocations = fake.device->allocations;
    // Within an epoch the loop never waits for the device: each step's loss and count are
    // read one step late (copy waits), never by a synchronization of the stream.
    train::Trainer second = trainer("dev", Device::CUDA, 2);
    std::vector<std::pair<int, std::int64_t>> syncs_at_step;
    std::vector<std::int64_t> waits_at_step;
    second.on_step = [&](const train::StepInfo& s) {
      syncs_at_step.emplace_back(s.epoch, fake.device->host_syncs);
      waits_at_step.push_back(fake.device->copy_waits);
    };
    second.fit(images, images, resolve_resume(tmp.path(), "dev", {.resume = true}));
    REQUIRE(syncs_at_step.size() == 2);  // epoch 1's two batches
    CHECK(syncs_at_step[1].second == syncs_at_step[0].second);
    CHECK(waits_at_step[1] == waits_at_step[0] + 1);
    CHECK(fake.device->allocations > allocations);  // the resumed run computed on the device
    CHECK(fake.device->fused_tables >= 2);  // each run's EMA stayed on the device (one fused launch a step)

    const Value a = latest("cpu"), b = latest("dev");
    CHECK(a.at("epoch").as_number() == b.at("epoch").as_number());
    check_same_state(a.at("net"), b.at("net"));
    check_same_state(a.at("ema_net"), b.at("ema_net"));
    const Value& sa = a.at("optimizer_state_dict").at("state");
    const Value& sb = b.at("optimizer_state_dict").at("state");
    REQUIRE(sa.size() == sb.size());
    for (const auto& [k, v] : sa.dict())
      CHECK(same_bytes(v.at("momentum_buffer").tensor(), sb.dict().find(k)->at("momentum_buffer").tensor()));
  }
}
