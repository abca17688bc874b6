// sgckpt/detail/dcp/flatten.hpp: the flat keys of a nested state dict, exactly as torch's DCP
// makes them (flatten_state_dict / traverse_state_dict), and the way back (set_element).
//
// Dicts are walked with every key written as its str ("state.0.momentum_buffer"); a list is
// walked by index when it holds a dict, a tensor or a list that is walked in turn, and is
// otherwise one value, as is every tuple and every other leaf. torch saves each leaf that is not
// a tensor as one torch.save image (a "bytes" entry).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/io/dcp/metadata.hpp"

namespace sgckpt::detail::dcp {

using namespace sgckpt::dcp;

struct FlatItem {
  std::string fqn;
  std::vector<PathElement> path;
  const Value* value = nullptr;  // into the flattened tree
};

inline std::string join_path(const std::vector<PathElement>& path) {
  std::string out;
  for (const auto& e : path) {
    if (!out.empty()) out += '.';
    out += std::holds_alternative<std::string>(e) ? std::get<std::string>(e)
                                                  : std::to_string(std::get<std::int64_t>(e));
  }
  return out;
}

// torch's _is_terminal: a list is one value unless something in it is walked.
inline bool is_terminal(const Value& v) {
  if (v.is_dict()) return false;
  if (!v.is_list()) return true;
  for (const Value& e : v.items()) {
    if ((e.is_dict() || e.is_list()) && !is_terminal(e)) return false;
    if (e.is_tensor()) return false;
  }
  return true;
}

class Flattener {
 public:
  std::vector<FlatItem> operator()(const Value& root) {
    if (!root.is_dict())
      throw Error("a DCP checkpoint's root must be a dict, not a " + std::string(kind_name(root.kind())));
    for (const auto& [k, v] : root.dict()) {
      path_.assign(1, k.to_string());
      walk(v);
    }
    return std::move(items_);
  }

 private:
  void walk(const Value& v) {
    if (path_.size() > 1000)
      throw Error(ErrorKind::Limit, "containers nested deeper than 1000 levels",
                  ErrorContext::at_key(join_path(path_)));
    if (v.is_dict()) {
      for (const auto& [k, e] : v.dict()) {
        path_.emplace_back(k.to_string());
        walk(e);
        path_.pop_back();
      }
    } else if (is_terminal(v)) {
      std::string fqn = join_path(path_);
      if (!seen_.insert(fqn).second)
        throw Error(ErrorKind::Usage, "two values flatten to the same key '" + fqn + "'",
                    ErrorContext::at_key(fqn));
      items_.push_back({std::move(fqn), path_, &v});
    } else {
      for (std::size_t i = 0; i < v.items().size(); ++i) {
        path_.emplace_back(static_cast<std::int64_t>(i));
        walk(v.items()[i]);
        path_.pop_back();
      }
    }
  }

  std::vector<PathElement> path_;
  std::vector<FlatItem> items_;
  std::unordered_set<std::string> seen_;
};

inline std::vector<FlatItem> flatten(const Value& root) {
  return Flattener()(root);
}

// torch's set_element: puts `value` at `path` under the dict `root`, making dicts for str steps
// and lists (padded with None) for index steps. A step that meets a value of the other kind is
// a conflict between two entries: Corrupt.
// `padding` counts the list slots made so far; more than `max_padding` (the number of entries:
// every slot of an honest list holds at least one) is refused, so indices cannot make a small
// file build huge lists.
inline void set_element(Value& root, const std::vector<PathElement>& path, Value value,
                        const std::string& fqn, std::uint64_t& padding, std::uint64_t max_padding) {
  Value* cur = &root;
  for (std::size_t i = 0; i < path.size(); ++i) {
    const bool last = i + 1 == path.size();
    auto fresh = [&] {
      if (last) return std::move(value);
      return std::holds_alternative<std::string>(path[i + 1]) ? Value::make_dict() : Value::make_list();
    };
    Value* next = nullptr;
    if (const auto* key = std::get_if<std::string>(&path[i])) {
      if (!cur->is_dict())
        throw Error(ErrorKind::Corrupt, "planner_data paths conflict at '" + *key + "'",
                    ErrorContext::at_key(fqn));
      next = cur->dict().find(Key(*key));
      if (!next || last) next = &cur->dict().set(Key(*key), fresh());
    } else {
      const auto idx = static_cast<std::size_t>(std::get<std::int64_t>(path[i]));
      if (!cur->is_list())
        throw Error(ErrorKind::Corrupt, "planner_data paths conflict at index " + std::to_string(idx),
                    ErrorContext::at_key(fqn));
      auto& items = cur->items();
      if (items.size() <= idx) {
        padding += idx + 1 - items.size();
        if (padding > max_padding)
          throw Error(ErrorKind::Corrupt,
                      "planner_data list indices make more list slots than there are entries",
                      ErrorContext::at_key(fqn));
        items.resize(idx + 1);
      }
      if (items[idx].is_none() || last) items[idx] = fresh();
      next = &items[idx];
    }
    cur = next;
  }
}

}  // namespace sgckpt::detail::dcp
