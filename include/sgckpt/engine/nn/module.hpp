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
// Tensors are allocated once, at construction, and never replaced (load_state_dict copies
// into them), so the Tensors handed out by named_parameters() stay valid and share memory
// with the model for its whole life: an optimizer may keep them.
#pragma once

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

struct LoadStateDictOptions {
  // Missing and unexpected keys are errors (torch's strict=True). Shape mismatches always are.
  bool strict = true;
  // Convert between dtypes (torch's copy_ does: e.g. a float32 num_batches_tracked from an
  // averaged model becomes int64, truncated). Off: a dtype mismatch is an error.
  bool convert_dtypes = false;
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

  // Copies a state_dict (an OrderedDict or dict of tensors, e.g. what torch's
  // module.state_dict() saves) into the parameters and buffers. Checks everything first and
  // throws one sgckpt::Error listing every problem; nothing is modified then.
  void load_state_dict(const sgckpt::Value& sd, const LoadStateDictOptions& options = {}) {
    if (!sd.is_dict())
      throw Error(std::string("load_state_dict: expected a dict, found a ") + kind_name(sd.kind()));
    struct Target {
      std::string name;
      Tensor value;
      const sgckpt::Tensor* source = nullptr;
    };
    std::vector<Target> targets;
    walk(*this, "", [&](const std::string& name, Tensor& v, Tensor*) {
      targets.push_back({name, v, nullptr});
    });

    std::vector<std::string> missing, unexpected, mismatched;
    for (auto& t : targets) {
      const sgckpt::Value* v = sd.dict().find(t.name);
      if (v == nullptr) {
        missing.push_back(t.name);
        continue;
      }
      if (!v->is_tensor()) {
        mismatched.push_back("'" + t.name + "' is a " + kind_name(v->kind()) + ", not a tensor");
        continue;
      }
      const sgckpt::Tensor& h = v->tensor();
      if (h.shape() != t.value.shape()) {
        mismatched.push_back("size mismatch for " + t.name + ": copying a param with shape " +
                             shape_string(h.shape()) + " from checkpoint, the shape in current model is " +
                             shape_string(t.value.shape()));
        continue;
      }
      if (h.dtype() != t.value.dtype() &&
          !(options.convert_dtypes && convertible(h.dtype(), t.value.dtype()))) {
        mismatched.push_back("dtype mismatch for " + t.name + ": " + std::string(sgckpt::name(h.dtype())) +
                             " in checkpoint, " + std::string(sgckpt::name(t.value.dtype())) +
                             " in current model");
        continue;
      }
      t.source = &h;
    }
    if (options.strict) {
      for (const auto& [key, v] : sd.dict()) {
        const std::string k = key.to_string();
        bool known = false;
        for (const auto& t : targets) known = known || t.name == k;
        if (!known) unexpected.push_back(k);
      }
    } else {
      missing.clear();
    }
    if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
      std::string msg = std::string("Error(s) in loading state_dict for ") + type_name() + ":";
      auto list = [&](const char* what, const std::vector<std::string>& keys) {
        if (keys.empty()) return;
        msg += std::string("\n  ") + what + " key(s) in state_dict: ";
        for (std::size_t i = 0; i < keys.size(); ++i) msg += (i ? ", \"" : "\"") + keys[i] + "\"";
        msg += ".";
      };
      list("Missing", missing);
      list("Unexpected", unexpected);
      for (const auto& m : mismatched) msg += "\n  " + m + ".";
      throw Error(msg);
    }
    for (auto& t : targets)
      if (t.source != nullptr) copy_from_host(t.value, *t.source);
  }

 protected:
  bool training_ = true;

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

  static bool convertible(DType from, DType to) {
    const bool from_real = sgckpt::is_floating(from) || from == DType::Int64 || from == DType::Int32 ||
                           from == DType::Int16 || from == DType::Int8 || from == DType::UInt8 ||
                           from == DType::Bool;
    return from_real && (to == DType::Float32 || to == DType::Int64);
  }
  static void copy_from_host(Tensor& dst, const sgckpt::Tensor& h) {
    if (h.dtype() == dst.dtype()) {
      dst.copy_(Tensor::from_host(h));
      return;
    }
    const std::size_t n = dst.numel();
    if (dst.dtype() == DType::Float32) {
      float* p = dst.data<float>();
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<float>(h.element_as_double(i));
    } else {
      std::int64_t* p = dst.data<std::int64_t>();
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::int64_t>(h.element_as_double(i));
    }
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
