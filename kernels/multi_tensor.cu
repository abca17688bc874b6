// kernels/multi_tensor.cu: the fused multi-tensor kernels. One block per chunk of the table
// (engine/ops/multi_tensor.hpp) runs ops::mt::chunk_body with the op; the per-element math is
// the CPU's (SGCKPT_HD, compiled with -fmad=false), so the results are the CPU emulation's
// bits, and through it the CPU optimizers', EMA's and averaging's.
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "context.hpp"
#include "sgckpt/cuda/cuda.hpp"

namespace sgckpt::cuda {

namespace mt = ::sgckpt::engine::ops::mt;

namespace {

constexpr int kBlock = 256;

template <class Op>
__global__ void chunk_kernel(const mt::Slot* slots, const mt::Chunk* chunks, Op op) {
  mt::chunk_body(slots, chunks[blockIdx.x], threadIdx.x, kBlock, op);
}

__global__ void adam_advance_step_kernel(mt::AdamOp op) {
  mt::adam_advance_step(op);
}

__global__ void scaler_update_kernel(float* scale, std::int64_t* tracker, std::int32_t* found_inf,
                                     float growth, float backoff, std::int64_t interval) {
  engine::optim_math::scaler_update(*scale, *tracker, *found_inf != 0, growth, backoff, interval);
  *found_inf = 0;
}

}  // namespace

namespace detail {

namespace {

// The table in one device allocation (slots, then chunks), freed in stream order.
class CudaFusedTable final : public engine::FusedTable {
 public:
  CudaFusedTable(std::shared_ptr<engine::Backend> backend, const mt::Table& table)
      : backend_(std::move(backend)) {
    const std::size_t slot_bytes = table.slots.size() * sizeof(mt::Slot);
    const std::size_t chunk_bytes = table.chunks.size() * sizeof(mt::Chunk);
    bytes_ = slot_bytes + chunk_bytes;
    chunks_ = static_cast<std::int64_t>(table.chunks.size());
    if (bytes_ == 0) return;
    std::vector<unsigned char> host(bytes_);
    std::memcpy(host.data(), table.slots.data(), slot_bytes);
    std::memcpy(host.data() + slot_bytes, table.chunks.data(), chunk_bytes);
    device_ = backend_->allocate(bytes_);
    try {
      backend_->copy_from_host(device_, host.data(), bytes_);
    } catch (...) {
      backend_->deallocate(device_, bytes_);
      throw;
    }
    slots_ = static_cast<const mt::Slot*>(device_);
    chunk_table_ = reinterpret_cast<const mt::Chunk*>(static_cast<unsigned char*>(device_) + slot_bytes);
  }
  ~CudaFusedTable() override {
    if (device_ != nullptr) backend_->deallocate(device_, bytes_);
  }

  void run(const mt::FusedOp& op) override {
    std::visit([&](const auto& o) { launch(o); }, op);
  }

 private:
  template <class Op>
  void launch(const Op& op) {
    Context& c = context_of(*backend_);
    if (chunks_ > 0) {
      chunk_kernel<<<static_cast<unsigned>(chunks_), kBlock, 0, c.stream>>>(slots_, chunk_table_, op);
      SGCKPT_CUDA_LAUNCHED("fused multi-tensor update", c.stream);
    }
    if constexpr (std::is_same_v<Op, mt::AdamOp>) {
      adam_advance_step_kernel<<<1, 1, 0, c.stream>>>(op);
      SGCKPT_CUDA_LAUNCHED("fused adam (step count)", c.stream);
    }
  }

  std::shared_ptr<engine::Backend> backend_;
  void* device_ = nullptr;
  std::size_t bytes_ = 0;
  const mt::Slot* slots_ = nullptr;
  const mt::Chunk* chunk_table_ = nullptr;
  std::int64_t chunks_ = 0;
};

}  // namespace

std::unique_ptr<engine::FusedTable> make_fused_table(std::shared_ptr<engine::Backend> backend,
                                                     const mt::Table& table) {
  return std::make_unique<CudaFusedTable>(std::move(backend), table);
}

}  // namespace detail

void scaler_update(engine::Backend& backend, float* scale, std::int64_t* tracker, std::int32_t* found_inf,
                   float growth, float backoff, std::int64_t interval) {
  detail::Context& c = detail::context_of(backend);
  scaler_update_kernel<<<1, 1, 0, c.stream>>>(scale, tracker, found_inf, growth, backoff, interval);
  SGCKPT_CUDA_LAUNCHED("scaler_update", c.stream);
}

}  // namespace sgckpt::cuda
