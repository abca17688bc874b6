// sgckpt/core/identical.hpp: whether two value trees hold the same thing, and where they
// first differ.
//
// "The same" is what a save and load round trip must keep: kinds (int 1, float 1.0 and bool
// True differ), container kinds (list, tuple, torch.Size; dict, OrderedDict, Counter), keys in
// order, OrderedDict attributes, tensor flags, floats bit for bit (a NaN equals the same NaN,
// 0.0 differs from -0.0), tensors and numpy values by dtype, shape and elements.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "sgckpt/core/key_path.hpp"
#include "sgckpt/core/state.hpp"

namespace sgckpt {

// Where two trees first differ: the key path ("<root>" for the root) and what differs there.
struct Difference {
  std::string path;
  std::string what;
};

namespace detail {

template <class T, class TensorEqual>
class TreeComparer {
 public:
  explicit TreeComparer(TensorEqual& eq) : eq_(eq) {}

  std::optional<Difference> operator()(const BasicValue<T>& a, const BasicValue<T>& b) {
    compare(a, b);
    return std::move(found_);
  }

 private:
  bool differ(std::string what) {
    found_ = Difference{path_.str().empty() ? "<root>" : path_.str(), std::move(what)};
    return false;
  }

  bool compare(const BasicValue<T>& a, const BasicValue<T>& b) {
    if (a.kind() != b.kind()) return differ(std::string(kind_name(a.kind())) + " vs " + kind_name(b.kind()));
    switch (a.kind()) {
      case Kind::None:
        return true;
      case Kind::Bool:
        return a.as_bool() == b.as_bool() || differ("bool differs");
      case Kind::Int:
        return a.as_big_int() == b.as_big_int() || differ("int differs");
      case Kind::Float: {
        const double x = a.as_float(), y = b.as_float();
        return std::memcmp(&x, &y, sizeof x) == 0 || differ("float differs");
      }
      case Kind::Str:
        return a.as_str() == b.as_str() || differ("str differs");
      case Kind::Bytes:
        return a.as_bytes() == b.as_bytes() || differ("bytes differ");
      case Kind::DType:
        return a.as_dtype() == b.as_dtype() || differ("dtype differs");
      case Kind::Device:
        return a.as_device() == b.as_device() || differ("device differs");
      case Kind::Numpy:
        if (a.numpy().scalar != b.numpy().scalar) return differ("numpy scalar vs array");
        return tensors(a.numpy().data, b.numpy().data) || differ("numpy value differs");
      case Kind::Tensor: {
        const auto &x = a.tensor_value(), &y = b.tensor_value();
        if (x.parameter != y.parameter || x.requires_grad != y.requires_grad)
          return differ("tensor flags differ");
        return eq_(x.tensor, y.tensor) || differ("tensor differs");
      }
      case Kind::List:
      case Kind::Tuple:
        return sequences(a, b);
      case Kind::Dict:
        return dicts(a.dict(), b.dict());
    }
    return differ("unknown kind");
  }

  // Numpy values are host tensors whatever T is.
  bool tensors(const Tensor& x, const Tensor& y) {
    if (!x.defined() || !y.defined()) return x.defined() == y.defined();
    if constexpr (std::is_same_v<T, Tensor>)
      return eq_(x, y);
    else
      return x.equal(y);
  }

  bool sequences(const BasicValue<T>& a, const BasicValue<T>& b) {
    if (a.is_torch_size() != b.is_torch_size()) return differ("torch.Size vs tuple");
    const auto &x = a.items(), &y = b.items();
    if (x.size() != y.size())
      return differ("length " + std::to_string(x.size()) + " vs " + std::to_string(y.size()));
    for (std::size_t i = 0; i < x.size(); ++i) {
      auto level = path_.index(i);
      if (!compare(x[i], y[i])) return false;
    }
    return true;
  }

  bool dicts(const BasicDict<T>& x, const BasicDict<T>& y) {
    if (x.kind() != y.kind()) return differ("dict kind differs");
    if (x.size() != y.size())
      return differ("dict of " + std::to_string(x.size()) + " vs " + std::to_string(y.size()));
    for (std::size_t i = 0; i < x.size(); ++i) {
      const Key& k = x.items()[i].first;
      if (!(k == y.items()[i].first))
        return differ("key " + std::to_string(i) + " is '" + k.to_string() + "' vs '" +
                      y.items()[i].first.to_string() + "'");
      auto level = k.is_str() ? path_.key(k.str()) : path_.key(k.integer());
      if (!compare(x.items()[i].second, y.items()[i].second)) return false;
    }
    const auto &ax = x.attributes(), &ay = y.attributes();
    if (ax.size() != ay.size()) return differ("attributes differ");
    for (std::size_t i = 0; i < ax.size(); ++i) {
      if (ax[i].first != ay[i].first)
        return differ("attribute '" + ax[i].first + "' vs '" + ay[i].first + "'");
      auto level = path_.attribute(ax[i].first);
      if (!compare(ax[i].second, ay[i].second)) return false;
    }
    return true;
  }

  TensorEqual& eq_;
  KeyPath path_;
  std::optional<Difference> found_;
};

}  // namespace detail

// The first difference between two trees, comparing tensors with `tensors_equal(a, b)` (for
// an engine's tensor type, or to sample huge views), or nullopt when they are identical.
template <class T, class TensorEqual>
std::optional<Difference> first_difference(const BasicValue<T>& a, const BasicValue<T>& b,
                                           TensorEqual&& tensors_equal) {
  return detail::TreeComparer<T, std::remove_reference_t<TensorEqual>>(tensors_equal)(a, b);
}

// Host tensors compare by dtype, shape and every element's bytes (Tensor::equal).
inline std::optional<Difference> first_difference(const Value& a, const Value& b) {
  return first_difference(a, b, [](const Tensor& x, const Tensor& y) { return x.equal(y); });
}

inline bool identical(const Value& a, const Value& b) {
  return !first_difference(a, b);
}

}  // namespace sgckpt
