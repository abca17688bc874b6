// sgckpt/core/value_ref.hpp: what `value["key"]` returns on a non-const value.
//
// Reading a key that does not exist must not change the tree: with a plain reference,
// `if (state["ema_net"].is_none())` on a loaded checkpoint inserted "ema_net", and the next save
// wrote it. A BasicValueRef names a place (a value plus the keys below it) and touches the tree
// only when assigned to:
//   - reading (`v["a"]["b"].as_int()`, `Value& x = v["a"]`) finds the key or throws a schema
//     Error whose key path names the whole chain ("a/b"), as Python's KeyError would;
//   - assigning (`v["a"]["b"] = 1`) creates the missing dicts on the way, then sets the key.
// Int keys index lists and tuples (`v["param_groups"][0]["lr"]`); lists never grow.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "sgckpt/core/error.hpp"
#include "sgckpt/core/key_path.hpp"
#include "sgckpt/core/value.hpp"

namespace sgckpt {

template <class T>
class BasicValueRef {
 public:
  using Value = BasicValue<T>;

  BasicValueRef(Value& base, Key key) : base_(&base), keys_{std::move(key)} {}

  // The value at this place; throws (schema, with the key path) when a key is missing.
  Value& get() const {
    Value* v = base_;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      v = step(*v, i);
      if (v == nullptr) throw missing(i);
    }
    return *v;
  }
  operator Value&() const { return get(); }  // NOLINT(google-explicit-constructor): a reference
  Value* operator->() const { return &get(); }
  // Whether get() would find a value (no throw, no insertion).
  bool exists() const noexcept {
    try {
      Value* v = base_;
      for (std::size_t i = 0; i < keys_.size() && v != nullptr; ++i) v = step(*v, i);
      return v != nullptr;
    } catch (const Error&) {
      return false;
    }
  }

  // Sets the value, creating missing dicts on the way. The new value is complete before the
  // tree changes, so `v["a"] = v["a"]["b"]` reads what it replaces safely.
  Value& operator=(Value v) const { return assign(std::move(v)); }
  BasicValueRef& operator=(const BasicValueRef& o) {  // assigns the value, never rebinds
    assign(Value(o.get()));
    return *this;
  }
  BasicValueRef(const BasicValueRef&) = default;

  // A place below this one.
  BasicValueRef operator[](Key k) const { return BasicValueRef(*this, std::move(k)); }
  BasicValueRef operator[](const char* k) const { return (*this)[Key(k)]; }
  BasicValueRef operator[](const std::string& k) const { return (*this)[Key(k)]; }
  BasicValueRef operator[](int i) const { return (*this)[Key(i)]; }
  BasicValueRef operator[](std::size_t i) const { return (*this)[Key(static_cast<std::int64_t>(i))]; }

  // BasicValue's reading API; a kind error names this place's key path.
  Kind kind() const {
    return read([](Value& v) { return v.kind(); });
  }
  bool is_none() const {
    return read([](Value& v) { return v.is_none(); });
  }
  bool is_bool() const {
    return read([](Value& v) { return v.is_bool(); });
  }
  bool is_int() const {
    return read([](Value& v) { return v.is_int(); });
  }
  bool is_float() const {
    return read([](Value& v) { return v.is_float(); });
  }
  bool is_str() const {
    return read([](Value& v) { return v.is_str(); });
  }
  bool is_tensor() const {
    return read([](Value& v) { return v.is_tensor(); });
  }
  bool is_list() const {
    return read([](Value& v) { return v.is_list(); });
  }
  bool is_tuple() const {
    return read([](Value& v) { return v.is_tuple(); });
  }
  bool is_dict() const {
    return read([](Value& v) { return v.is_dict(); });
  }
  bool is_bytes() const {
    return read([](Value& v) { return v.is_bytes(); });
  }
  bool is_number() const {
    return read([](Value& v) { return v.is_number(); });
  }
  bool is_parameter() const {
    return read([](Value& v) { return v.is_parameter(); });
  }
  bool as_bool() const {
    return read([](Value& v) { return v.as_bool(); });
  }
  const Int& as_big_int() const {
    return read([](Value& v) -> const Int& { return v.as_big_int(); });
  }
  std::int64_t as_int() const {
    return read([](Value& v) { return v.as_int(); });
  }
  double as_float() const {
    return read([](Value& v) { return v.as_float(); });
  }
  double as_number() const {
    return read([](Value& v) { return v.as_number(); });
  }
  const std::string& as_str() const {
    return read([](Value& v) -> const std::string& { return v.as_str(); });
  }
  const Bytes& as_bytes() const {
    return read([](Value& v) -> const Bytes& { return v.as_bytes(); });
  }
  TensorValue<T>& tensor_value() const {
    return read([](Value& v) -> TensorValue<T>& { return v.tensor_value(); });
  }
  T& tensor() const {
    return read([](Value& v) -> T& { return v.tensor(); });
  }
  typename Value::List& items() const {
    return read([](Value& v) -> typename Value::List& { return v.items(); });
  }
  typename Value::Dict& dict() const {
    return read([](Value& v) -> typename Value::Dict& { return v.dict(); });
  }
  Value& at(const Key& k) const {
    return read([&](Value& v) -> Value& { return v.at(k); });
  }
  bool contains(const Key& k) const {
    return read([&](Value& v) { return v.contains(k); });
  }
  std::size_t size() const {
    return read([](Value& v) { return v.size(); });
  }
  template <class F>
  void visit_tensors(F&& f) const {
    get().visit_tensors(std::forward<F>(f));
  }

  // The keys from the base value to this place, as an error's key path shows them.
  std::string path() const { return prefix(keys_.size()); }

 private:
  BasicValueRef(const BasicValueRef& parent, Key k) : base_(parent.base_), keys_(parent.keys_) {
    keys_.push_back(std::move(k));
  }

  // The child keys_[i] of v, or nullptr when a dict lacks it; throws when v cannot have children.
  Value* step(Value& v, std::size_t i) const {
    const Key& k = keys_[i];
    if ((v.is_list() || v.is_tuple()) && k.is_int()) {
      auto& items = v.items();
      const std::int64_t n = k.integer();
      if (n < 0 || static_cast<std::size_t>(n) >= items.size())
        throw Error(ErrorKind::Schema,
                    "index " + std::to_string(n) + " out of range for a " + kind_name(v.kind()) + " of " +
                        std::to_string(items.size()) + " elements",
                    ErrorContext::at_key(prefix(i + 1)));
      return &items[static_cast<std::size_t>(n)];
    }
    if (!v.is_dict())
      throw Error(ErrorKind::Schema, std::string("expected a dict, found a ") + kind_name(v.kind()),
                  ErrorContext::at_key(prefix(i)));
    return v.dict().find(k);
  }

  Value& assign(Value value) const {
    Value* v = base_;
    for (std::size_t i = 0; i + 1 < keys_.size(); ++i) {
      Value* next = step(*v, i);
      v = next != nullptr ? next : &v->dict().set(keys_[i], Value::make_dict());
    }
    const Key& last = keys_.back();
    if ((v->is_list() || v->is_tuple()) && last.is_int())
      return *step(*v, keys_.size() - 1) = std::move(value);
    if (!v->is_dict())
      throw Error(ErrorKind::Schema, std::string("expected a dict, found a ") + kind_name(v->kind()),
                  ErrorContext::at_key(prefix(keys_.size() - 1)));
    return v->dict().set(last, std::move(value));
  }

  template <class F>
  decltype(auto) read(F&& f) const {
    Value& v = get();
    try {
      return f(v);
    } catch (const Error& e) {
      if (!e.context().key_path.empty()) throw;
      throw e.with_key_path(path());
    }
  }

  Error missing(std::size_t i) const {
    return Error(ErrorKind::Schema, "missing key '" + keys_[i].to_string() + "'",
                 ErrorContext::at_key(prefix(i + 1)));
  }
  std::string prefix(std::size_t n) const {
    std::string out;
    for (std::size_t i = 0; i < n; ++i)
      out = Value::join(out,
                        keys_[i].is_str() ? KeyPath::abbreviate_key(keys_[i].str()) : keys_[i].to_string());
    return out;
  }

  Value* base_;
  std::vector<Key> keys_;  // from base_ down to this place
};

}  // namespace sgckpt
