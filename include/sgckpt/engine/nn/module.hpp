// sgckpt/engine/nn/module.hpp: what every module has, as torch.nn.Module: named parameters
// (each with its gradient buffer), buffers, children, train/eval mode, and the state_dict.
//
// A module describes itself with three visitors, each in torch's registration order:
//   visit_parameters(f)  f(name, value, grad) for its own parameters,
//   visit_buffers(f)     f(name, value) for its own buffers,
//   visit_children(f)    f(name, child) for its direct submodules.
// Everything else (named_parameters, state_dict with its `_metadata`, load_state_dict,
// zero_grad, train) is derived from them here, walking the tree like torch: a module's
// parameters, then its buffers, then each child recursively.
//
// Tensors are allocated at construction and replaced only by to(device) (load_state_dict
// copies into them through views of their buffers), so the Tensors handed out by
// named_parameters() after the last to() share memory with the model: an optimizer may keep them.
#pragma once

#include <sgckpt/ckpt/load.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "sgckpt/engine/tensor.hpp"

namespace sgckpt::engine::nn {

// A parameter and its gradient (both share memory with the module).
struct NamedParameter {
  std::string name;  // "layer1.0.conv1.weight"
  Tensor value;
  Tensor grad;
};

struct NamedBuffer {
  std::string name;  // "layer1.0.bn1.running_mean"
  Tensor value;
};

class Module {
 public:
  using ParameterFn = std::function<void(const char* name, Tensor& value, Tensor& grad)>;
  using BufferFn = std::function<void(const char* name, Tensor& value)>;
  using ChildFn = std::function<void(const std::string& name, Module& child)>;

  Module() = default;
  virtual ~Module() = default;
  // Copying would alias the tensors (copies of a Tensor share memory): not allowed. To copy
  // weights, load one module's state_dict() into another.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  // torch's class name and _version (saved in the state_dict's _metadata).
  virtual const char* type_name() const = 0;
  virtual int version() const { return 1; }

  virtual void visit_parameters(const ParameterFn&) {}
  virtual void visit_buffers(const BufferFn&) {}
  virtual void visit_children(const ChildFn&) {}

  // ---- mode ----
  void train(bool on = true) {
    training_ = on;
    visit_children([on](const std::string&, Module& m) { m.train(on); });
  }
  void eval() { train(false); }
  bool training() const noexcept { return training_; }

  // ---- parameters and buffers, with full dotted names, in state_dict order ----
  std::vector<NamedParameter> named_parameters() {
    std::vector<NamedParameter> out;
    walk(*this, "", [&](const std::string& name, Tensor& v, Tensor* g) {
      if (g != nullptr) out.push_back({name, v, *g});
    });
    return out;
  }
  std::vector<NamedBuffer> named_buffers() {
    std::vector<NamedBuffer> out;
    walk(*this, "", [&](const std::string& name, Tensor& v, Tensor* g) {
      if (g == nullptr) out.push_back({name, v});
    });
    return out;
  }
  // Number of parameter scalars.
  std::int64_t num_parameters() {
    std::int64_t n = 0;
    for (auto& p : named_parameters()) n += static_cast<std::int64_t>(p.value.numel());
    return n;
  }
  void zero_grad() {
    for (auto& p : named_parameters()) p.grad.zero_();
  }

  // ---- device ----
  // Moves every float parameter, gradient and buffer to `device`. Integer buffers
  // (BatchNorm's num_batches_tracked) stay in host memory: they are counters the host keeps
  // and no kernel reads. The tensors are replaced: take named_parameters() afterwards.
  void to(Device device) {
    walk(*this, "", [&](const std::string&, Tensor& v, Tensor* g) {
      if (v.dtype() != DType::Int64) v = v.to(device);
      if (g != nullptr) *g = g->to(device);
    });
    walk_modules(*this, "", [device](const std::string&, Module& m) { m.device_ = device; });
  }
  Device device() const noexcept { return device_; }

  // ---- state_dict ----
  // An OrderedDict name -> host tensor (copies: a snapshot), parameters and buffers in torch's
  // order, with torch's `_metadata` attribute ({module prefix: {'version': v}}).
  sgckpt::Value state_dict() {
    sgckpt::Value sd = sgckpt::Value::make_ordered_dict();
    walk(*this, "", [&](const std::string& name, Tensor& v, Tensor*) {
      sd.dict().set(name, sgckpt::Value(v.to_host()));
    });
    sgckpt::Value meta = sgckpt::Value::make_ordered_dict();
    walk_modules(*this, "", [&](const std::string& prefix, const Module& m) {
      sgckpt::Value entry = sgckpt::Value::make_dict();
      entry.dict().set("version", sgckpt::Value(m.version()));
      meta.dict().set(prefix, std::move(entry));
    });
    sd.dict().set_attribute("_metadata", std::move(meta));
    return sd;
  }

  // Loads a state_dict (or a checkpoint: options.weights picks its net or ema_net) into the
  // parameters and buffers through the library's one load path (sgckpt::load_checkpoint_to_model:
  // strict modes, one error listing every problem and nothing modified then, dtypes converted
  // as torch's copy_ does). Each tensor is copied once, from the (possibly memory-mapped)
  // checkpoint tensor straight into the module's buffer.
  // A tensor on another device is loaded into a host copy of it, then copied back.
  sgckpt::LoadReport load_state_dict(const sgckpt::Value& sd, const sgckpt::ModelLoadOptions& options = {}) {
    sgckpt::Value targets = sgckpt::Value::make_ordered_dict();
    std::vector<std::pair<Tensor*, Tensor>> staged;  // device tensor, its host copy
    walk(*this, "", [&](const std::string& name, Tensor& v, Tensor*) {
      if (v.device() == Device::CPU) {
        targets.dict().set(name, sgckpt::Value(v.host_view()));
      } else {
        staged.emplace_back(&v, v.to(Device::CPU));
        targets.dict().set(name, sgckpt::Value(staged.back().second.host_view()));
      }
    });
    sgckpt::LoadReport report = sgckpt::load_checkpoint_to_model(targets, sd, options);
    for (auto& [device_tensor, host] : staged) device_tensor->copy_(host);
    return report;
  }

 protected:
  bool training_ = true;
  Device device_ = Device::CPU;

 private:
  // f(full name, value, grad or null for buffers) for every tensor, in state_dict order.
  template <class F>
  static void walk(Module& m, const std::string& prefix, F&& f) {
    auto full = [&](const char* n) { return prefix.empty() ? std::string(n) : prefix + "." + n; };
    m.visit_parameters([&](const char* n, Tensor& v, Tensor& g) { f(full(n), v, &g); });
    m.visit_buffers([&](const char* n, Tensor& v) { f(full(n), v, nullptr); });
    m.visit_children(
        [&](const std::string& n, Module& c) { walk(c, prefix.empty() ? n : prefix + "." + n, f); });
  }
  // f(prefix, module) for this module and every descendant, depth first (torch's _metadata order).
  template <class F>
  static void walk_modules(Module& m, const std::string& prefix, F&& f) {
    f(prefix, m);
    m.visit_children(
        [&](const std::string& n, Module& c) { walk_modules(c, prefix.empty() ? n : prefix + "." + n, f); });
  }
};

// A module without parameters or buffers that only appears in the state_dict's _metadata
// (torch's AdaptiveAvgPool2d, an identity DropPath, an empty Sequential).
class Placeholder : public Module {
 public:
  explicit Placeholder(const char* type) : type_(type) {}
  const char* type_name() const override { return type_; }

 private:
  const char* type_;
};

}  // namespace sgckpt::engine::nn
