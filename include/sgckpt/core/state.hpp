// sgckpt/core/state.hpp: sgckpt::State<Tensor>, the user-facing container, and the adapter
// point through which an engine stores its own tensor type.
//
// A State is the root of a checkpoint's object tree (usually a dict of dicts of tensors and
// scalars). It is templated on the tensor type: the library's own host tensor by default,
// or any type T for which `sgckpt::tensor_traits<T>` is specialized:
//
//   template <> struct sgckpt::tensor_traits<MyTensor> {
//     // Saving: the host view of a tensor (copy device memory to host here). Return host
//     // tensors that share one sgckpt::Storage for views of one buffer to keep them shared.
//     static sgckpt::Tensor to_host(const MyTensor& t);
//     // Loading: build your tensor from a host tensor (upload to the device here). The host
//     // tensor may be a read-only view into a memory-mapped file.
//     static MyTensor from_host(const sgckpt::Tensor& t);
//   };
//
// sgckpt::save(state, path) and sgckpt::load_state<MyTensor>(path) then convert at the boundary.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"

namespace sgckpt {

// The primary template is left undefined: a type without a specialization is not a tensor.
template <class T>
struct tensor_traits;

template <>
struct tensor_traits<Tensor> {
  static const Tensor& to_host(const Tensor& t) { return t; }
  static Tensor from_host(const Tensor& t) { return t; }
};

using Value = BasicValue<Tensor>;
using Dict = BasicDict<Tensor>;

// Rebuilds a tree with every tensor mapped through f (containers, keys, attributes and
// flags are kept).
template <class U, class T, class F>
BasicValue<U> map_tensors(const BasicValue<T>& v, F&& f) {
  switch (v.kind()) {
    case Kind::None:
      return BasicValue<U>();
    case Kind::Bool:
      return BasicValue<U>(v.as_bool());
    case Kind::Int:
      return BasicValue<U>(v.as_big_int());
    case Kind::Float:
      return BasicValue<U>(v.as_float());
    case Kind::Str:
      return BasicValue<U>(v.as_str());
    case Kind::Bytes:
      return BasicValue<U>(v.as_bytes());
    case Kind::DType:
      return BasicValue<U>(v.as_dtype());
    case Kind::Device:
      return BasicValue<U>(v.as_device());
    case Kind::Numpy:  // host data whatever the tensor type
      return BasicValue<U>(v.numpy());
    case Kind::Tensor: {
      const auto& tv = v.tensor_value();
      return BasicValue<U>(TensorValue<U>{f(tv.tensor), tv.requires_grad, tv.parameter});
    }
    case Kind::List:
    case Kind::Tuple: {
      if (v.is_torch_size()) {
        std::vector<std::int64_t> dims;
        for (const auto& e : v.items()) dims.push_back(e.as_int());
        return BasicValue<U>::make_torch_size(dims);
      }
      typename BasicValue<U>::List out;
      out.reserve(v.items().size());
      for (const auto& e : v.items()) out.push_back(map_tensors<U>(e, f));
      return v.is_list() ? BasicValue<U>::make_list(std::move(out))
                         : BasicValue<U>::make_tuple(std::move(out));
    }
    case Kind::Dict: {
      BasicDict<U> d(v.dict().kind());
      for (const auto& [k, e] : v.dict()) d.set(k, map_tensors<U>(e, f));
      for (const auto& [k, e] : v.dict().attributes()) d.set_attribute(k, map_tensors<U>(e, f));
      return BasicValue<U>(std::move(d));
    }
  }
  return BasicValue<U>();
}

template <class T = Tensor>
class State {
 public:
  using Value = BasicValue<T>;

  // An empty dict, the usual root of a checkpoint.
  State() : root_(Value::make_dict()) {}
  // Any root value (torch.save accepts any object: a bare tensor, a list, ...).
  explicit State(Value root) : root_(std::move(root)) {}

  Value& root() noexcept { return root_; }
  const Value& root() const noexcept { return root_; }

  // Access to a dict root: reading never inserts, assigning creates (core/value_ref.hpp).
  BasicValueRef<T> operator[](Key k) { return root_[std::move(k)]; }
  BasicValueRef<T> operator[](const char* k) { return root_[Key(k)]; }
  const Value& operator[](const Key& k) const { return root_.at(k); }
  const Value& operator[](const char* k) const { return root_.at(Key(k)); }
  const Value& at(const Key& k) const { return root_.at(k); }
  Value& at(const Key& k) { return root_.at(k); }
  bool contains(const Key& k) const { return root_.contains(k); }
  bool erase(const Key& k) { return root_.dict().erase(k); }

  // The tree with host tensors, as the writer needs it.
  BasicValue<sgckpt::Tensor> to_host() const {
    if constexpr (std::is_same_v<T, sgckpt::Tensor>) {
      return root_;
    } else {
      return map_tensors<sgckpt::Tensor>(root_, [](const T& t) { return tensor_traits<T>::to_host(t); });
    }
  }

  // A State of host tensors converted to this tensor type.
  static State from_host(const BasicValue<sgckpt::Tensor>& host) {
    if constexpr (std::is_same_v<T, sgckpt::Tensor>) {
      return State(host);
    } else {
      return State(
          map_tensors<T>(host, [](const sgckpt::Tensor& t) { return tensor_traits<T>::from_host(t); }));
    }
  }

 private:
  Value root_;
};

}  // namespace sgckpt
