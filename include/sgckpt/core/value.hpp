// sgckpt/core/value.hpp: the tree of everything a torch checkpoint holds.
//
// BasicValue<T> is one node: None, bool, int (any size, kept exactly), float (double),
// str, bytes, a tensor of type T (plain or nn.Parameter, with requires_grad), list, tuple
// (or a torch.Size, a tuple of ints that remembers it was one), a dict with str or int keys
// that remembers whether it was a dict, an OrderedDict (with its attributes, e.g. a module
// state_dict's `_metadata`) or a collections.Counter, a torch.dtype, a torch.device, or a
// numpy array or scalar (docs/pth-format.md, "Values besides tensors").
//
// Values have value semantics (copying a value copies the tree; tensors inside share their
// storage, like torch tensors). Python's bool, int and float stay distinct kinds, because
// torch's loaders care: `weight_decay` is int 0, `lr` a float, `nesterov` a bool.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/key_path.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/detail/keyed_hash.hpp"

namespace sgckpt {

// ---- Int: a Python int of any size ------------------------------------------------------

class Int {
 public:
  Int() = default;
  Int(std::int64_t v) : small_(v) {}  // NOLINT(google-explicit-constructor): ints convert

  // From minimal or non-minimal two's-complement little-endian bytes (pickle LONG1/LONG4).
  static Int from_le_bytes(const std::uint8_t* p, std::size_t n) {
    Int r;
    if (n == 0) return r;
    const bool neg = (p[n - 1] & 0x80) != 0;
    // Strip redundant sign-extension bytes.
    while (n > 1 && ((p[n - 1] == 0x00 && !(p[n - 2] & 0x80)) || (p[n - 1] == 0xFF && (p[n - 2] & 0x80))))
      --n;
    if (n <= 8) {
      std::uint64_t u = neg ? ~std::uint64_t{0} : 0;
      for (std::size_t i = 0; i < n; ++i) {
        u &= ~(std::uint64_t{0xFF} << (8 * i));
        u |= std::uint64_t{p[i]} << (8 * i);
      }
      r.small_ = static_cast<std::int64_t>(u);
      return r;
    }
    r.big_.assign(p, p + n);
    return r;
  }

  bool fits_int64() const noexcept { return big_.empty(); }
  std::int64_t to_int64() const {
    if (!fits_int64()) throw Error(ErrorKind::Schema, "integer " + to_string() + " does not fit in 64 bits");
    return small_;
  }
  bool negative() const noexcept { return big_.empty() ? small_ < 0 : (big_.back() & 0x80) != 0; }

  // Minimal two's-complement little-endian bytes; 0 -> empty (as pickle's LONG1 writes it).
  std::vector<std::uint8_t> to_le_bytes() const {
    if (!big_.empty()) return big_;
    std::vector<std::uint8_t> out;
    if (small_ == 0) return out;
    auto u = static_cast<std::uint64_t>(small_);
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
    const bool neg = small_ < 0;
    while (out.size() > 1 && ((out.back() == 0x00 && !(out[out.size() - 2] & 0x80) && !neg) ||
                              (out.back() == 0xFF && (out[out.size() - 2] & 0x80) && neg)))
      out.pop_back();
    return out;
  }

  // Exact decimal text. Divides 32-bit limbs by 10^9 and drops leading zero limbs as it
  // goes: a 4,096-byte LONG4 (~9,900 digits) takes ~0.6 M limb steps, where dividing bytes
  // by 10 took ~40 M (inspect of a list of such ints ran for minutes).
  std::string to_string() const {
    if (big_.empty()) return std::to_string(small_);
    std::vector<std::uint8_t> mag = big_;
    const bool neg = negative();
    if (neg) {  // two's complement negate
      unsigned carry = 1;
      for (auto& b : mag) {
        unsigned v = static_cast<std::uint8_t>(~b) + carry;
        b = static_cast<std::uint8_t>(v);
        carry = v >> 8;
      }
    }
    std::vector<std::uint32_t> limbs((mag.size() + 3) / 4, 0);
    for (std::size_t i = 0; i < mag.size(); ++i) limbs[i / 4] |= std::uint32_t{mag[i]} << (8 * (i % 4));
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
    std::string digits;  // reversed
    while (!limbs.empty()) {
      std::uint64_t rem = 0;
      for (std::size_t i = limbs.size(); i-- > 0;) {
        const std::uint64_t cur = (rem << 32) | limbs[i];
        limbs[i] = static_cast<std::uint32_t>(cur / 1'000'000'000u);
        rem = cur % 1'000'000'000u;
      }
      while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
      for (int k = 0; k < 9 && (rem != 0 || !limbs.empty()); ++k, rem /= 10)
        digits.push_back(static_cast<char>('0' + rem % 10));
    }
    if (digits.empty()) digits.push_back('0');
    if (neg) digits.push_back('-');
    return {digits.rbegin(), digits.rend()};
  }

  friend bool operator==(const Int& a, const Int& b) { return a.small_ == b.small_ && a.big_ == b.big_; }

 private:
  std::int64_t small_ = 0;
  std::vector<std::uint8_t> big_;  // non-empty only when the value needs more than 64 bits
};

// ---- Dict keys ----------------------------------------------------------------------------

// A dict key: str or int (all torch checkpoints use these; optimizer state uses int keys).
class Key {
 public:
  Key(std::string s) : v_(std::move(s)) {}         // NOLINT(google-explicit-constructor)
  Key(const char* s) : v_(std::string(s)) {}       // NOLINT(google-explicit-constructor)
  Key(std::string_view s) : v_(std::string(s)) {}  // NOLINT(google-explicit-constructor)
  Key(std::int64_t i) : v_(i) {}                   // NOLINT(google-explicit-constructor)
  Key(int i) : v_(std::int64_t{i}) {}              // NOLINT(google-explicit-constructor)

  bool is_str() const noexcept { return std::holds_alternative<std::string>(v_); }
  bool is_int() const noexcept { return !is_str(); }
  const std::string& str() const {
    if (!is_str()) throw Error(ErrorKind::Schema, "dict key " + to_string() + " is an int, not a str");
    return std::get<std::string>(v_);
  }
  std::int64_t integer() const {
    if (is_str()) throw Error(ErrorKind::Schema, "dict key '" + str() + "' is a str, not an int");
    return std::get<std::int64_t>(v_);
  }
  // The key as text: str keys verbatim, int keys in decimal (used in key paths and JSON).
  std::string to_string() const { return is_str() ? str() : std::to_string(std::get<std::int64_t>(v_)); }

  friend bool operator==(const Key& a, const Key& b) { return a.v_ == b.v_; }
  // Keyed (see detail/keyed_hash.hpp): keys come from files, and an unkeyed hash lets a
  // file's author make every key collide. Int and str keys never compare equal, so a
  // collision between an int and an 8-byte str costs nothing but a probe.
  std::size_t hash() const noexcept {
    return is_str() ? detail::keyed_hash(std::get<std::string>(v_))
                    : detail::keyed_hash(static_cast<std::uint64_t>(std::get<std::int64_t>(v_)));
  }

 private:
  std::variant<std::int64_t, std::string> v_;
};

struct KeyHash {
  std::size_t operator()(const Key& k) const noexcept { return k.hash(); }
};

// What kind of Python mapping a dict was.
enum class DictKind : std::uint8_t { Dict, OrderedDict, Counter };

template <class T>
class BasicValue;
template <class T>
class BasicValueRef;

namespace detail {
// A heap box with value semantics, so that recursive types can live in a std::variant.
template <class X>
class Box {
 public:
  Box() : p_(std::make_unique<X>()) {}
  explicit Box(X x) : p_(std::make_unique<X>(std::move(x))) {}
  Box(const Box& o) : p_(std::make_unique<X>(*o.p_)) {}
  Box(Box&&) noexcept = default;
  Box& operator=(const Box& o) {
    if (this != &o) p_ = std::make_unique<X>(*o.p_);
    return *this;
  }
  Box& operator=(Box&&) noexcept = default;
  X& operator*() { return *p_; }
  const X& operator*() const { return *p_; }
  X* operator->() { return p_.get(); }
  const X* operator->() const { return p_.get(); }

 private:
  std::unique_ptr<X> p_;
};
}  // namespace detail

// A tensor leaf: the tensor plus the Python-side flags torch keeps for it.
template <class T>
struct TensorValue {
  T tensor;
  bool requires_grad = false;
  bool parameter = false;  // an nn.Parameter (saved with _rebuild_parameter)
};

// An insertion-ordered mapping with str/int keys and O(1) lookup.
template <class T>
class BasicDict {
 public:
  using Item = std::pair<Key, BasicValue<T>>;

  explicit BasicDict(DictKind kind = DictKind::Dict) : kind_(kind) {}

  DictKind kind() const noexcept { return kind_; }

  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  bool contains(const Key& k) const { return index_.count(k) != 0; }

  // Inserts or replaces; a replaced key keeps its position (as in Python).
  BasicValue<T>& set(Key k, BasicValue<T> v) {
    auto it = index_.find(k);
    if (it != index_.end()) return items_[it->second].second = std::move(v);
    index_.emplace(k, items_.size());
    items_.emplace_back(std::move(k), std::move(v));
    return items_.back().second;
  }

  BasicValue<T>* find(const Key& k) {
    auto it = index_.find(k);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  const BasicValue<T>* find(const Key& k) const {
    auto it = index_.find(k);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }

  BasicValue<T>& at(const Key& k) {
    if (auto* v = find(k)) return *v;
    throw Error(ErrorKind::Schema, "missing key '" + k.to_string() + "'",
                ErrorContext::at_key(k.to_string()));
  }
  const BasicValue<T>& at(const Key& k) const {
    if (auto* v = find(k)) return *v;
    throw Error(ErrorKind::Schema, "missing key '" + k.to_string() + "'",
                ErrorContext::at_key(k.to_string()));
  }

  // The value at k, inserting None when k is missing (Counter's d[k] += 1).
  BasicValue<T>& get_or_insert(const Key& k) {
    if (auto* v = find(k)) return *v;
    return set(k, BasicValue<T>());
  }

  bool erase(const Key& k) {
    auto it = index_.find(k);
    if (it == index_.end()) return false;
    const std::size_t pos = it->second;
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(pos));
    index_.erase(it);
    for (auto& [key, idx] : index_)
      if (idx > pos) --idx;
    return true;
  }

  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  const std::deque<Item>& items() const noexcept { return items_; }

  // Attributes set on the instance (OrderedDict's __dict__, e.g. "_metadata"). Empty for
  // plain dicts and Counters.
  std::vector<std::pair<std::string, BasicValue<T>>>& attributes() { return attrs_; }
  const std::vector<std::pair<std::string, BasicValue<T>>>& attributes() const { return attrs_; }
  const BasicValue<T>* attribute(std::string_view name) const {
    for (auto& [k, v] : attrs_)
      if (k == name) return &v;
    return nullptr;
  }
  void set_attribute(std::string name, BasicValue<T> v) {
    for (auto& [k, old] : attrs_)
      if (k == name) {
        old = std::move(v);
        return;
      }
    attrs_.emplace_back(std::move(name), std::move(v));
  }

 private:
  DictKind kind_;
  // A deque, not a vector: inserting a key must not move the other values, so that
  // `d["b"] = d.at("a")` (the right side is evaluated first) never reads a moved-from slot.
  std::deque<Item> items_;
  std::unordered_map<Key, std::size_t, KeyHash> index_;
  std::vector<std::pair<std::string, BasicValue<T>>> attrs_;
};

enum class Kind : std::uint8_t {
  None,
  Bool,
  Int,
  Float,
  Str,
  Tensor,
  List,
  Tuple,
  Dict,
  Bytes,
  DType,
  Device,
  Numpy
};

// A Python bytes object (rare in checkpoints; torch pickles it as _codecs.encode(..., 'latin1')).
struct Bytes {
  std::string data;  // raw bytes
  friend bool operator==(const Bytes& a, const Bytes& b) { return a.data == b.data; }
};

// A torch.device: its type ("cpu", "cuda", "meta", ...) and index (none in torch.device("cpu")).
struct TorchDevice {
  std::string type;
  std::optional<std::int64_t> index;
  // As torch prints it: "cuda:1", "cpu".
  std::string to_string() const { return index ? type + ":" + std::to_string(*index) : type; }
  friend bool operator==(const TorchDevice&, const TorchDevice&) = default;
};

// A numpy array or numpy scalar (numpy.float64(0.5)), as older checkpoints and SuperGradients'
// averaging_snapshots.pkl hold them. The elements are a host tensor, native (little-endian)
// byte order; `scalar` tells a numpy scalar from a 0-d array. Only plain numeric dtypes are
// read (docs/pth-format.md).
struct NumpyValue {
  Tensor data;
  bool scalar = false;
};

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::Str:
      return "str";
    case Kind::Tensor:
      return "tensor";
    case Kind::List:
      return "list";
    case Kind::Tuple:
      return "tuple";
    case Kind::Dict:
      return "dict";
    case Kind::Bytes:
      return "bytes";
    case Kind::DType:
      return "dtype";
    case Kind::Device:
      return "device";
    case Kind::Numpy:
      return "numpy";
  }
  return "?";
}

template <class T>
class BasicValue {
 public:
  using Tensor = T;
  using List = std::vector<BasicValue>;
  using Dict = BasicDict<T>;
  struct TupleTag {};

  BasicValue() = default;                                             // None
  BasicValue(std::nullptr_t) {}                                       // NOLINT(google-explicit-constructor)
  BasicValue(bool b) : v_(b) {}                                       // NOLINT(google-explicit-constructor)
  BasicValue(Int i) : v_(std::move(i)) {}                             // NOLINT(google-explicit-constructor)
  BasicValue(int i) : v_(Int(i)) {}                                   // NOLINT(google-explicit-constructor)
  BasicValue(long i) : v_(Int(static_cast<std::int64_t>(i))) {}       // NOLINT(google-explicit-constructor)
  BasicValue(long long i) : v_(Int(static_cast<std::int64_t>(i))) {}  // NOLINT(google-explicit-constructor)
  BasicValue(unsigned i) : v_(Int(static_cast<std::int64_t>(i))) {}   // NOLINT(google-explicit-constructor)
  BasicValue(double d) : v_(d) {}                                     // NOLINT(google-explicit-constructor)
  BasicValue(float d) : v_(static_cast<double>(d)) {}                 // NOLINT(google-explicit-constructor)
  BasicValue(std::string s) : v_(std::move(s)) {}                     // NOLINT(google-explicit-constructor)
  BasicValue(std::string_view s) : v_(std::string(s)) {}              // NOLINT(google-explicit-constructor)
  BasicValue(const char* s) : v_(std::string(s)) {}                   // NOLINT(google-explicit-constructor)
  BasicValue(T t) : v_(TensorValue<T>{std::move(t)}) {}               // NOLINT(google-explicit-constructor)
  BasicValue(TensorValue<T> t) : v_(std::move(t)) {}                  // NOLINT(google-explicit-constructor)
  BasicValue(List l) : v_(ListBox(std::move(l))) {}                   // NOLINT(google-explicit-constructor)
  BasicValue(Dict d) : v_(DictBox(std::move(d))) {}                   // NOLINT(google-explicit-constructor)
  BasicValue(Bytes b) : v_(std::move(b)) {}                           // NOLINT(google-explicit-constructor)
  BasicValue(DType d) : v_(d) {}                                      // NOLINT(google-explicit-constructor)
  BasicValue(TorchDevice d) : v_(std::move(d)) {}                     // NOLINT(google-explicit-constructor)
  BasicValue(NumpyValue n) : v_(std::move(n)) {}                      // NOLINT(google-explicit-constructor)

  static BasicValue make_tuple(List items = {}) {
    BasicValue v;
    v.v_ = TupleBox(std::move(items));
    return v;
  }
  // A torch.Size: a tuple of ints that is written back as torch.Size.
  static BasicValue make_torch_size(const std::vector<std::int64_t>& dims) {
    List items(dims.begin(), dims.end());
    BasicValue v = make_tuple(std::move(items));
    std::get<TupleBox>(v.v_).torch_size = true;
    return v;
  }
  static BasicValue make_list(List items = {}) { return BasicValue(std::move(items)); }
  static BasicValue make_dict(DictKind kind = DictKind::Dict) { return BasicValue(Dict(kind)); }
  static BasicValue make_ordered_dict() { return make_dict(DictKind::OrderedDict); }
  static BasicValue make_parameter(T t, bool requires_grad = true) {
    return BasicValue(TensorValue<T>{std::move(t), requires_grad, true});
  }

  Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
  bool is_none() const noexcept { return kind() == Kind::None; }
  bool is_bool() const noexcept { return kind() == Kind::Bool; }
  bool is_int() const noexcept { return kind() == Kind::Int; }
  bool is_float() const noexcept { return kind() == Kind::Float; }
  bool is_str() const noexcept { return kind() == Kind::Str; }
  bool is_tensor() const noexcept { return kind() == Kind::Tensor; }
  bool is_list() const noexcept { return kind() == Kind::List; }
  bool is_tuple() const noexcept { return kind() == Kind::Tuple; }
  bool is_dict() const noexcept { return kind() == Kind::Dict; }
  bool is_bytes() const noexcept { return kind() == Kind::Bytes; }
  bool is_number() const noexcept { return is_int() || is_float(); }
  bool is_dtype() const noexcept { return kind() == Kind::DType; }
  bool is_device() const noexcept { return kind() == Kind::Device; }
  bool is_numpy() const noexcept { return kind() == Kind::Numpy; }
  bool is_torch_size() const noexcept { return is_tuple() && std::get<TupleBox>(v_).torch_size; }

  bool as_bool() const { return get<bool>("bool"); }
  const Int& as_big_int() const { return get<Int>("int"); }
  std::int64_t as_int() const { return get<Int>("int").to_int64(); }
  double as_float() const { return get<double>("float"); }
  // int, float or a real numpy scalar as double (Python numbers mix freely: weight_decay may
  // be int 0, and checkpoints written with numpy hold numpy.float64 metrics).
  double as_number() const {
    if (is_int()) return static_cast<double>(as_int());
    if (is_numpy() && numpy().data.defined() && numpy().data.numel() == 1 &&
        !is_complex(numpy().data.dtype()))
      return numpy().data.element_as_double(0);
    return as_float();
  }
  const std::string& as_str() const { return get<std::string>("str"); }
  const Bytes& as_bytes() const { return get<Bytes>("bytes"); }
  DType as_dtype() const { return get<DType>("dtype"); }
  const TorchDevice& as_device() const { return get<TorchDevice>("device"); }
  const NumpyValue& numpy() const { return get<NumpyValue>("numpy value"); }

  const TensorValue<T>& tensor_value() const { return get<TensorValue<T>>("tensor"); }
  TensorValue<T>& tensor_value() { return get<TensorValue<T>>("tensor"); }
  const T& tensor() const { return tensor_value().tensor; }
  T& tensor() { return tensor_value().tensor; }
  bool is_parameter() const { return is_tensor() && tensor_value().parameter; }

  // Elements of a list or a tuple.
  const List& items() const {
    if (is_list()) return *std::get<ListBox>(v_);
    if (is_tuple()) return *std::get<TupleBox>(v_);
    throw type_error("list or tuple");
  }
  List& items() {
    if (is_list()) return *std::get<ListBox>(v_);
    if (is_tuple()) return *std::get<TupleBox>(v_);
    throw type_error("list or tuple");
  }
  const Dict& dict() const { return *get<DictBox>("dict"); }
  Dict& dict() { return *get<DictBox>("dict"); }

  // Dict access. On a non-const value, v["k"] is a place (core/value_ref.hpp): reading it
  // never inserts (a missing key throws, naming the key path), assigning to it creates the
  // key and any missing dicts above it. On a const value it reads, as at() does.
  BasicValueRef<T> operator[](Key k) { return BasicValueRef<T>(*this, std::move(k)); }
  BasicValueRef<T> operator[](const char* k) { return (*this)[Key(k)]; }
  BasicValueRef<T> operator[](const std::string& k) { return (*this)[Key(k)]; }
  const BasicValue& operator[](const Key& k) const { return at(k); }
  const BasicValue& operator[](const char* k) const { return at(Key(k)); }
  const BasicValue& operator[](const std::string& k) const { return at(Key(k)); }
  const BasicValue& at(const Key& k) const { return dict().at(k); }
  BasicValue& at(const Key& k) { return dict().at(k); }
  bool contains(const Key& k) const { return is_dict() && dict().contains(k); }
  // List/tuple element i; on a dict, the int key i (optimizer state is keyed by ints), so
  // that v[0] means what it would in Python.
  const BasicValue& operator[](std::size_t i) const {
    if (is_dict()) return dict().at(Key(static_cast<std::int64_t>(i)));
    return at_index(i);
  }
  BasicValueRef<T> operator[](std::size_t i) { return (*this)[Key(static_cast<std::int64_t>(i))]; }
  BasicValueRef<T> operator[](int i) { return (*this)[Key(i)]; }
  const BasicValue& operator[](int i) const { return (*this)[static_cast<std::size_t>(i)]; }
  std::size_t size() const {
    if (is_dict()) return dict().size();
    return items().size();
  }

  // Calls f(key_path, tensor_value) for every tensor in the tree, in order. key_path is the
  // KeyPath text ("net/layer1.0.weight"; long keys abbreviated), valid during the call.
  template <class F>
  void visit_tensors(F&& f) const {
    KeyPath path;
    visit_tensors_at(f, path);
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "/" + key;
  }

  // A key as messages show it in a key path (KeyPath::abbreviate_key).
  static std::string path_key(std::string_view key) { return KeyPath::abbreviate_key(key); }

 private:
  template <class F>
  void visit_tensors_at(F& f, KeyPath& path) const {
    switch (kind()) {
      case Kind::Tensor:
        f(path.str(), tensor_value());
        break;
      case Kind::List:
      case Kind::Tuple: {
        const auto& l = items();
        for (std::size_t i = 0; i < l.size(); ++i) {
          auto level = path.index(i);
          l[i].visit_tensors_at(f, path);
        }
        break;
      }
      case Kind::Dict:
        for (const auto& [k, v] : dict()) {
          auto level = k.is_str() ? path.key(k.str()) : path.key(k.integer());
          v.visit_tensors_at(f, path);
        }
        break;
      default:
        break;
    }
  }

  using ListBox = detail::Box<List>;
  struct TupleBox : detail::Box<List> {
    using detail::Box<List>::Box;
    bool torch_size = false;  // a torch.Size
  };
  using DictBox = detail::Box<Dict>;

  template <class X>
  const X& get(const char* want) const {
    if (auto* p = std::get_if<X>(&v_)) return *p;
    throw type_error(want);
  }
  template <class X>
  X& get(const char* want) {
    if (auto* p = std::get_if<X>(&v_)) return *p;
    throw type_error(want);
  }
  Error type_error(const char* want) const {
    return Error(ErrorKind::Schema, std::string("expected a ") + want + ", found a " + kind_name(kind()));
  }
  const BasicValue& at_index(std::size_t i) const {
    const auto& l = items();
    if (i >= l.size())
      throw Error(ErrorKind::Schema, "index " + std::to_string(i) + " out of range for a " +
                                         kind_name(kind()) + " of " + std::to_string(l.size()) + " elements");
    return l[i];
  }

  // The index order must match Kind.
  std::variant<std::monostate, bool, Int, double, std::string, TensorValue<T>, ListBox, TupleBox, DictBox,
               Bytes, DType, TorchDevice, NumpyValue>
      v_;
};

}  // namespace sgckpt

#include "sgckpt/core/value_ref.hpp"
