// tools/sgckpt/state_edit.hpp: what `sgckpt convert` can change on the way through:
//   --select PATH      the output is the value at PATH ("net": the state dict itself)
//   --key PATTERN      keep only the dict entries whose key path matches (and what leads there)
//   --drop PATTERN     remove the dict entries whose key path matches
//   --cast FROM=TO     every FROM tensor becomes a TO tensor (sgckpt::cast, torch's rules)
// Key paths join dict keys and list indices with '/' ("net/conv1.weight"); in a PATTERN, '*'
// matches any run of characters, '/' included, and '?' one character (fnmatch(3) without
// FNM_PATHNAME). A matched entry is kept or dropped whole. Only dict entries are removed:
// lists and tuples keep their length. A pattern that matches nothing is an error (a typo
// would otherwise write a file without the data asked for).
#pragma once

#include <fnmatch.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/state.hpp"

namespace sgckpt::tool {

struct EditOptions {
  std::string select;
  std::vector<std::string> keep;
  std::vector<std::string> drop;
  std::vector<std::pair<DType, DType>> casts;

  bool empty() const { return select.empty() && keep.empty() && drop.empty() && casts.empty(); }
};

namespace detail {

inline std::string child_path(const std::string& parent, const Key& k) {
  return parent.empty() ? k.to_string() : parent + "/" + k.to_string();
}

struct PatternSet {
  const std::vector<std::string>& patterns;
  std::vector<bool> used = std::vector<bool>(patterns.size(), false);

  bool matches(const std::string& path) {
    bool any = false;
    for (std::size_t i = 0; i < patterns.size(); ++i)
      if (fnmatch(patterns[i].c_str(), path.c_str(), 0) == 0) any = used[i] = true;
    return any;
  }
  void require_all_used(const char* flag) const {
    for (std::size_t i = 0; i < patterns.size(); ++i)
      if (!used[i]) throw Error(std::string(flag) + " '" + patterns[i] + "' matches no key path");
  }
};

// The entry of d that a path component names: a str key, else an int key written in decimal.
inline const Value* find_key(const Dict& d, const std::string& part) {
  if (const Value* v = d.find(Key(part))) return v;
  std::int64_t i = 0;
  const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), i);
  if (ec == std::errc() && end == part.data() + part.size() && !part.empty()) return d.find(Key(i));
  return nullptr;
}

// A dict with the same kind and attributes as d, and no items.
inline Dict like(const Dict& d) {
  Dict out(d.kind());
  out.attributes() = d.attributes();
  return out;
}

// Keeps the entries matching `keep` (whole) and the dicts leading to them; false: nothing kept.
inline bool keep_matching(Value& v, const std::string& path, PatternSet& keep) {
  if (!v.is_dict()) return false;
  Dict& d = v.dict();
  Dict out = like(d);
  for (auto& [k, child] : d) {
    const std::string p = child_path(path, k);
    if (keep.matches(p) || keep_matching(child, p, keep)) out.set(k, std::move(child));
  }
  const bool any = out.size() != 0;
  d = std::move(out);
  return any;
}

inline void drop_matching(Value& v, const std::string& path, PatternSet& drop) {
  if (v.is_list() || v.is_tuple()) {
    auto& items = v.items();
    for (std::size_t i = 0; i < items.size(); ++i)
      drop_matching(items[i], path + "/" + std::to_string(i), drop);
    return;
  }
  if (!v.is_dict()) return;
  Dict& d = v.dict();
  Dict out = like(d);
  for (auto& [k, child] : d) {
    const std::string p = child_path(path, k);
    if (drop.matches(p)) continue;
    drop_matching(child, p, drop);
    out.set(k, std::move(child));
  }
  d = std::move(out);
}

// Casts whole storages once, so that views keep sharing and their layout.
class Caster {
 public:
  explicit Caster(const std::vector<std::pair<DType, DType>>& casts) : casts_(casts) {}

  void apply(Value& v) {
    if (v.is_tensor()) {
      Tensor& t = v.tensor();
      for (const auto& [from, to] : casts_)
        if (t.defined() && t.dtype() == from && from != to) {
          t = cast_view(t, to);
          break;
        }
    } else if (v.is_list() || v.is_tuple()) {
      for (auto& item : v.items()) apply(item);
    } else if (v.is_dict()) {
      for (auto& [k, child] : v.dict()) apply(child);
    }
  }

 private:
  Tensor cast_view(const Tensor& t, DType to) {
    const auto& storage = t.storage();
    std::shared_ptr<Storage>& done = cast_[{storage.get(), to}];
    if (!done) {
      const auto n = static_cast<std::int64_t>(storage->nbytes() / t.itemsize());
      done = cast(Tensor::view_of(storage, t.dtype(), 0, {n}, {1}), to).storage();
    }
    return Tensor::view_of(done, to, t.storage_offset(), t.shape(), t.strides());
  }

  const std::vector<std::pair<DType, DType>>& casts_;
  std::map<std::pair<const Storage*, DType>, std::shared_ptr<Storage>> cast_;
};

}  // namespace detail

inline Value edit(Value root, const EditOptions& o) {
  if (!o.select.empty()) {
    const Value* v = &root;
    std::string seen;
    for (std::size_t start = 0; start <= o.select.size();) {
      std::size_t end = o.select.find('/', start);
      if (end == std::string::npos) end = o.select.size();
      const std::string part = o.select.substr(start, end - start);
      v = v->is_dict() ? detail::find_key(v->dict(), part) : nullptr;
      if (!v)
        throw Error("--select '" + o.select + "': no key '" + part + "'" +
                    (seen.empty() ? "" : " under '" + seen + "'"));
      seen = seen.empty() ? part : seen + "/" + part;
      start = end + 1;
    }
    Value picked = *v;
    root = std::move(picked);
  }
  if (!o.keep.empty()) {
    detail::PatternSet keep{o.keep};
    detail::keep_matching(root, "", keep);
    keep.require_all_used("--key");
  }
  if (!o.drop.empty()) {
    detail::PatternSet drop{o.drop};
    detail::drop_matching(root, "", drop);
    drop.require_all_used("--drop");
  }
  if (!o.casts.empty()) detail::Caster(o.casts).apply(root);
  return root;
}

}  // namespace sgckpt::tool
