// sgckpt/engine/train/device_ema.hpp: the EMA of a model that trains on a device, kept on that
// device. Its float32 tensors live beside the model's and one fused launch per optimizer step
// blends all of them (ops::mt::EmaOp: ckpt/ema.hpp's blend, so the CPU's bits); entries the
// model keeps in host memory (BatchNorm's step counters) are copied on the host, as ema_update
// copies integer entries. The host state (the Value checkpoints and evaluation read) is
// refreshed from the device by to_host(), once an epoch, instead of a device-to-host copy of
// the whole model every step.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/engine/dispatch.hpp"
#include "sgckpt/engine/nn/module.hpp"
#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::train {

class DeviceEma {
 public:
  // `host`: the EMA state dict (keys of model.state_dict()), kept and refreshed by to_host().
  DeviceEma(Value& host, nn::Module& model) : host_(host) {
    std::map<std::string, Tensor> live;
    for (auto& p : model.named_parameters()) live.emplace(p.name, p.value);
    for (auto& b : model.named_buffers()) live.emplace(b.name, b.value);
    std::vector<ops::mt::Slot> slots;
    for (auto& [k, v] : host_.dict()) {
      const std::string key = k.to_string();
      const auto it = live.find(key);
      if (!v.is_tensor() || it == live.end())
        throw Error("DeviceEma: EMA entry '" + key + "' is not a tensor of the model");
      sgckpt::Tensor& e = v.tensor();
      const Tensor& m = it->second;
      if (e.dtype() != m.dtype() || e.numel() != m.numel())
        throw Error("DeviceEma: EMA entry '" + key + "' differs from the model's in dtype or size");
      if (e.storage()->read_only() || !e.is_contiguous()) e = e.clone();  // writable, dense
      if (m.device() == Device::CPU) {
        host_pairs_.push_back({&e, m});
        continue;
      }
      if (m.dtype() != DType::Float32)
        throw Error("DeviceEma: EMA entry '" + key + "' is a device tensor of " +
                    std::string(name(m.dtype())) + " (float32 only)");
      if (device_ == nullptr) device_ = &backend(m.device());
      Tensor d = Tensor::empty(m.shape(), DType::Float32, m.device());
      if (e.numel() > 0) device_->copy_from_host(d.data_ptr<float>(), e.raw_data(), e.nbytes());
      ops::mt::Slot s;
      s.ptr[0] = d.data_ptr<float>();
      s.ptr[1] = m.data_ptr<float>();
      s.numel = static_cast<std::int64_t>(m.numel());
      slots.push_back(s);
      device_pairs_.push_back({&e, std::move(d)});
    }
    if (device_ != nullptr) table_ = device_->make_fused_table(ops::mt::make_table(slots));
  }

  // After an optimizer step: ema = decay * ema + (1 - decay) * model.
  void update(double decay) {
    if (!(decay >= 0.0 && decay <= 1.0))
      throw Error("EMA decay must be in [0, 1], got " + std::to_string(decay));
    if (table_) {
      const auto c = sgckpt::detail::ew::ema_coefficients(decay);
      table_->run(ops::mt::EmaOp{c.d32, c.a32});
    }
    for (auto& [e, m] : host_pairs_)
      if (e->nbytes() > 0) std::memcpy(e->mutable_raw_data(), m.raw_data(), e->nbytes());
  }

  // The device's EMA into the host state (one synchronization).
  void to_host() {
    for (auto& [e, d] : device_pairs_)
      if (e->nbytes() > 0) device_->copy_to_host(e->mutable_raw_data(), d.data_ptr<float>(), e->nbytes());
  }

 private:
  Value& host_;
  Backend* device_ = nullptr;
  std::vector<std::pair<sgckpt::Tensor*, Tensor>> device_pairs_;  // host EMA tensor, its device copy
  std::vector<std::pair<sgckpt::Tensor*, Tensor>> host_pairs_;    // host EMA tensor, the model's host tensor
  std::unique_ptr<FusedTable> table_;
};

}  // namespace sgckpt::engine::train
