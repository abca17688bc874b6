// kernels/backend.cu: the CUDA backend behind the engine's device seam (engine/backend.hpp).
// One compute stream carries every kernel and copy, in order; memory comes from the device's
// stream-ordered pool, which keeps what it got (nothing goes back to the driver between
// steps); host-to-device copies go through two reused pinned buffers, so the caller's buffer is
// free when copy_from_host returns and the host never waits for a copy to finish unless it
// reuses a buffer still in flight. The host waits only where the seam says it does.
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "context.hpp"
#include "conv_cudnn.hpp"
#include "sgckpt/cuda/cuda.hpp"

namespace sgckpt::cuda {

namespace detail {

namespace {

// Copies larger than this go straight from the caller's memory and are waited for.
constexpr std::size_t kStagingMax = std::size_t{64} << 20;

struct Staging {
  void* host = nullptr;
  std::size_t capacity = 0;
  cudaEvent_t done = nullptr;
  bool in_flight = false;
};

class CudaBackend final : public engine::Backend, public std::enable_shared_from_this<CudaBackend> {
 public:
  explicit CudaBackend(const Options& o) {
    const DeviceStatus st = probe();
    if (!st.usable) throw Error("CUDA backend: " + st.reason);
    c_.device = o.device;
    c_.poison = o.poison;
    sync_debug() = o.sync_debug;
    SGCKPT_CUDA_CHECK(cudaSetDevice(o.device));
    cudaDeviceProp prop{};
    SGCKPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
    name_ = std::string("cuda (") + prop.name + ")";
    try {
      SGCKPT_CUDA_CHECK(cudaStreamCreateWithFlags(&c_.stream, cudaStreamNonBlocking));
      SGCKPT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&c_.pool, o.device));
      std::uint64_t keep_all = UINT64_MAX;
      SGCKPT_CUDA_CHECK(cudaMemPoolSetAttribute(c_.pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
      SGCKPT_CUDA_CHECK(cudnnCreate(&c_.cudnn));
      SGCKPT_CUDA_CHECK(cudnnSetStream(c_.cudnn, c_.stream));
      SGCKPT_CUDA_CHECK(cublasLtCreate(&c_.lt));
      for (Staging& s : staging_)
        SGCKPT_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
      for (cudaEvent_t& e : late_events_)
        SGCKPT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    } catch (...) {
      teardown();
      throw;
    }
  }
  ~CudaBackend() override { teardown(); }

  Context& context() noexcept { return c_; }

  engine::Device device() const noexcept override { return engine::Device::CUDA; }
  const char* name() const noexcept override { return name_.c_str(); }

  // ---- memory ----
  void* allocate(std::size_t n) override {
    void* p = c_.scratch(n == 0 ? 1 : n);       // pool blocks are 256-byte aligned
    if (c_.poison) fill_bytes(c_, p, 0xFF, n);  // all-ones float32 is a NaN
    return p;
  }
  void deallocate(void* p, std::size_t) noexcept override {
    if (p != nullptr && cudaFreeAsync(p, c_.stream) != cudaSuccess) cudaGetLastError();
  }
  void copy_from_host(void* dst, const void* src, std::size_t n) override {
    if (n == 0) return;
    if (n > kStagingMax) {
      SGCKPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c_.stream));
      SGCKPT_CUDA_CHECK(cudaStreamSynchronize(c_.stream));
      return;
    }
    Staging& s = staging_[next_];
    next_ ^= 1;
    if (s.in_flight) SGCKPT_CUDA_CHECK(cudaEventSynchronize(s.done));
    s.in_flight = false;
    if (s.capacity < n) {
      if (s.host != nullptr) SGCKPT_CUDA_CHECK(cudaFreeHost(s.host));
      s.host = nullptr;
      s.capacity = 0;
      SGCKPT_CUDA_CHECK(cudaMallocHost(&s.host, n));
      s.capacity = n;
    }
    std::memcpy(s.host, src, n);
    SGCKPT_CUDA_CHECK(cudaMemcpyAsync(dst, s.host, n, cudaMemcpyHostToDevice, c_.stream));
    SGCKPT_CUDA_CHECK(cudaEventRecord(s.done, c_.stream));
    s.in_flight = true;
  }
  void copy_to_host(void* dst, const void* src, std::size_t n) override {
    if (n == 0) return;
    SGCKPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c_.stream));
    SGCKPT_CUDA_CHECK(cudaStreamSynchronize(c_.stream));
  }
  void copy(void* dst, const void* src, std::size_t n) override {
    if (n > 0 && dst != src)
      SGCKPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c_.stream));
  }
  void fill_zero(void* dst, std::size_t n) override { fill_bytes(c_, dst, 0, n); }
  void synchronize() override { SGCKPT_CUDA_CHECK(cudaStreamSynchronize(c_.stream)); }

  // ---- kernels ----
  void conv2d_forward(float* y, const float* x, const float* w, const float* b,
                      const ops::Conv2dShape& s) override {
    detail::conv2d_forward(c_, conv_, y, x, w, b, s);
  }
  void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       const ops::Conv2dShape& s) override {
    detail::conv2d_backward(c_, conv_, dx, dw, db, dy, x, w, s);
  }
  void batchnorm_forward(const ops::BatchNormForward& a) override { detail::batchnorm_forward(c_, a); }
  void batchnorm_backward(const ops::BatchNormBackward& a) override { detail::batchnorm_backward(c_, a); }
  void relu_forward(float* y, const float* x, std::int64_t n) override { detail::relu_forward(c_, y, x, n); }
  void relu_backward(float* dx, const float* dy, const float* y, std::int64_t n) override {
    detail::relu_backward(c_, dx, dy, y, n);
  }
  void add(float* out, const float* a, const float* b, std::int64_t n) override {
    detail::add(c_, out, a, b, n);
  }
  void global_avgpool_forward(float* y, const float* x, std::int64_t NC, std::int64_t HW) override {
    detail::avgpool_forward(c_, y, x, NC, HW);
  }
  void global_avgpool_backward(float* dx, const float* dy, std::int64_t NC, std::int64_t HW) override {
    detail::avgpool_backward(c_, dx, dy, NC, HW);
  }
  void linear_forward(float* y, const float* x, const float* w, const float* b, std::int64_t N,
                      std::int64_t in, std::int64_t out) override {
    detail::linear_forward(c_, y, x, w, b, N, in, out);
  }
  void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                       std::int64_t N, std::int64_t in, std::int64_t out) override {
    detail::linear_backward(c_, dx, dw, db, dy, x, w, N, in, out);
  }
  float cross_entropy_forward(float* probs, const float* logits, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing) override {
    return detail::cross_entropy_forward(c_, probs, logits, labels, N, C, label_smoothing);
  }
  void cross_entropy_backward(float* dlogits, const float* probs, const std::int64_t* labels, std::int64_t N,
                              std::int64_t C, float label_smoothing, float dloss) override {
    detail::cross_entropy_backward(c_, dlogits, probs, labels, N, C, label_smoothing, dloss);
  }
  std::int64_t topk_correct(const float* logits, const std::int64_t* labels, std::int64_t N, std::int64_t C,
                            std::int64_t k) override {
    return detail::topk_correct(c_, logits, labels, N, C, k);
  }
  void cross_entropy_forward_to(float* loss, float* probs, const float* logits, const std::int64_t* labels,
                                std::int64_t N, std::int64_t C, float label_smoothing) override {
    detail::cross_entropy_forward_to(c_, loss, probs, logits, labels, N, C, label_smoothing);
  }
  void topk_correct_to(std::int64_t* correct, const float* logits, const std::int64_t* labels, std::int64_t N,
                       std::int64_t C, std::int64_t k) override {
    detail::topk_correct_to(c_, correct, logits, labels, N, C, k);
  }

  // Late copies land in a ring of pinned slots, each with an event; waiting for one waits for
  // its event only. A full ring waits for its oldest copy.
  std::uint64_t copy_to_host_later(void* dst, const void* src, std::size_t n) override {
    if (n > kLateBytes) throw Error("copy_to_host_later: " + std::to_string(n) + " bytes (at most 64)");
    if (late_.size() == kLateSlots) wait_copy(late_.front().ticket);
    if (late_host_ == nullptr) SGCKPT_CUDA_CHECK(cudaMallocHost(&late_host_, kLateSlots * kLateBytes));
    const int slot = next_slot_;
    next_slot_ = (next_slot_ + 1) % kLateSlots;
    if (n > 0)
      SGCKPT_CUDA_CHECK(
          cudaMemcpyAsync(late_host_ + slot * kLateBytes, src, n, cudaMemcpyDeviceToHost, c_.stream));
    SGCKPT_CUDA_CHECK(cudaEventRecord(late_events_[slot], c_.stream));
    late_.push_back({next_ticket_, dst, n, slot});
    return next_ticket_++;
  }
  void wait_copy(std::uint64_t ticket) override {
    while (!late_.empty() && late_.front().ticket <= ticket) {
      const LateCopy f = late_.front();
      SGCKPT_CUDA_CHECK(cudaEventSynchronize(late_events_[f.slot]));
      if (f.n > 0) std::memcpy(f.dst, late_host_ + f.slot * kLateBytes, f.n);
      late_.pop_front();
    }
  }
  void sgd_step(const ops::SgdStep& a, std::size_t n) override {
    detail::sgd_step(c_, a, static_cast<std::int64_t>(n));
  }
  void gather_batch(const ops::GatherBatch& g) override { detail::gather_batch(c_, g); }
  std::unique_ptr<engine::FusedTable> make_fused_table(const engine::ops::mt::Table& t) override {
    return detail::make_fused_table(shared_from_this(), t);
  }

 private:
  // Errors are ignored here: a destructor cannot report them, and at process exit the
  // runtime may already be gone.
  void teardown() noexcept {
    if (c_.stream != nullptr) cudaStreamSynchronize(c_.stream);
    for (Staging& s : staging_) {
      if (s.host != nullptr) cudaFreeHost(s.host);
      if (s.done != nullptr) cudaEventDestroy(s.done);
      s = Staging{};
    }
    for (cudaEvent_t& e : late_events_) {
      if (e != nullptr) cudaEventDestroy(e);
      e = nullptr;
    }
    if (late_host_ != nullptr) cudaFreeHost(late_host_);
    late_host_ = nullptr;
    if (c_.lt != nullptr) cublasLtDestroy(c_.lt);
    if (c_.cudnn != nullptr) cudnnDestroy(c_.cudnn);
    if (c_.stream != nullptr) cudaStreamDestroy(c_.stream);
    c_.lt = nullptr, c_.cudnn = nullptr, c_.stream = nullptr;
  }

  struct LateCopy {
    std::uint64_t ticket;
    void* dst;
    std::size_t n;
    int slot;
  };
  static constexpr int kLateSlots = 64;
  static constexpr std::size_t kLateBytes = 64;

  Context c_;
  ConvCache conv_;
  unsigned char* late_host_ = nullptr;
  cudaEvent_t late_events_[kLateSlots] = {};
  std::deque<LateCopy> late_;
  std::uint64_t next_ticket_ = 1;
  int next_slot_ = 0;
  Staging staging_[2];
  int next_ = 0;
  std::string name_;
};

}  // namespace

Context& context_of(engine::Backend& b) {
  auto* cb = dynamic_cast<CudaBackend*>(&b);
  if (cb == nullptr)
    throw Error(std::string("CUDA backend: '") + b.name() + "' is not a backend of sgckpt::cuda");
  return cb->context();
}

}  // namespace detail

std::shared_ptr<engine::Backend> make_backend(const Options& o) {
  return std::make_shared<detail::CudaBackend>(o);
}

std::shared_ptr<engine::Backend> install(const Options& o) {
  auto b = make_backend(o);
  engine::register_backend(b);
  return b;
}

}  // namespace sgckpt::cuda
