// tools/sgckpt/cmd_diff.cpp: `sgckpt diff A B [--select PATH] [--top N] [--mmap]`: what
// differs between two checkpoints, the question a resume that went wrong raises.
//
// Both files are flattened to their leaves by key path ("net/fc.weight", "epoch",
// "optimizer_state_dict/param_groups/0/lr"; containers are walked, OrderedDict attributes
// are not). Printed, in this order:
//   only in A / only in B         key paths one file lacks
//   kind, dtype or shape changes  a leaf whose kind differs, a tensor whose dtype or shape does
//   changed values                scalars (int, float, str, bool, None, bytes) that differ
//   tensor differences            for tensors of equal dtype and shape, the --top N (default 10)
//                                 by largest absolute difference, with the relative difference
//                                 (max |a - b| / max |a|) and how many elements differ
// and a last line counting each ("no differences (N leaves)" when there are none). Exit status
// 0 whether or not they differ, 1 when a file cannot be read, 2 on a usage error. --select
// compares the value at PATH in both (e.g. net). NaNs at the same place count as equal.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli_common.hpp"
#include "commands.hpp"
#include "load_any.hpp"
#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/float_text.hpp"
#include "sgckpt/core/identical.hpp"
#include "sgckpt/io/pth.hpp"
#include "state_edit.hpp"

namespace sgckpt::tool {

namespace {

struct DiffOptions {
  std::string a, b;
  std::string select;
  std::size_t top = 10;
  LoadOptions load;
};

using Leaves = std::map<std::string, const Value*>;

void flatten(const Value& v, const std::string& path, Leaves& out, std::uint32_t depth = 0) {
  if (depth > 1000)
    throw Error(ErrorKind::Limit, "nesting deeper than 1000 levels", ErrorContext::at_key(path));
  if (v.is_dict()) {
    for (const auto& [k, child] : v.dict()) flatten(child, detail::child_path(path, k), out, depth + 1);
  } else if (v.is_list() || v.is_tuple()) {
    for (std::size_t i = 0; i < v.items().size(); ++i)
      flatten(v.items()[i], detail::child_path(path, Key(static_cast<std::int64_t>(i))), out, depth + 1);
  } else {
    out.emplace(path.empty() ? "<root>" : path, &v);
  }
}

std::string scalar_text(const Value& v) {
  switch (v.kind()) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return v.as_bool() ? "True" : "False";
    case Kind::Int:
      return v.as_big_int().to_string();
    case Kind::Float:
      return float_text(v.as_float());
    case Kind::Str:
      return "'" + v.as_str().substr(0, 200) + (v.as_str().size() > 200 ? "...'" : "'");
    case Kind::Bytes:
      return "bytes of " + std::to_string(v.as_bytes().data.size());
    case Kind::DType:
      return "torch." + std::string(name(v.as_dtype()));
    case Kind::Device:
      return "device '" + v.as_device().to_string() + "'";
    case Kind::Numpy:
      return std::string("numpy ") + (v.numpy().scalar ? "scalar " : "array ") +
             std::string(name(v.numpy().data.dtype())) + " " + shape_text(v.numpy().data.shape());
    default:
      return kind_name(v.kind());
  }
}

struct TensorDiff {
  std::string path;
  double max_abs = 0, max_ref = 0;
  std::uint64_t differing = 0, numel = 0;
};

// Both tensors as float64 (complex and other dtypes without a cast to float64 compare bytes).
TensorDiff compare(const std::string& path, const Tensor& a, const Tensor& b) {
  TensorDiff d{path, 0, 0, 0, a.numel()};
  if (!can_cast(a.dtype(), DType::Float64)) {
    d.differing = a.equal(b) ? 0 : 1;
    d.max_abs = d.differing ? std::nan("") : 0;
    return d;
  }
  const Tensor x = cast(a, DType::Float64), y = cast(b, DType::Float64);
  const double* p = x.data<double>();
  const double* q = y.data<double>();
  for (std::uint64_t i = 0; i < d.numel; ++i) {
    d.max_ref = std::max(d.max_ref, std::abs(p[i]));
    if (p[i] == q[i] || (std::isnan(p[i]) && std::isnan(q[i]))) continue;
    ++d.differing;
    const double diff = std::abs(p[i] - q[i]);
    d.max_abs = std::isnan(diff) || std::isnan(d.max_abs) ? std::nan("") : std::max(d.max_abs, diff);
  }
  return d;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void run_diff(const DiffOptions& o) {
  Value a = load_any(o.a, o.load), b = load_any(o.b, o.load);
  if (!o.select.empty()) {
    a = edit(std::move(a), {.select = o.select, .keep = {}, .drop = {}, .casts = {}});
    b = edit(std::move(b), {.select = o.select, .keep = {}, .drop = {}, .casts = {}});
  }
  Leaves la, lb;
  flatten(a, "", la);
  flatten(b, "", lb);
  std::string out;
  std::size_t only_a = 0, only_b = 0, changed_kind = 0, changed_value = 0;
  std::vector<TensorDiff> tensors;
  for (const auto& [path, va] : la) {
    const auto it = lb.find(path);
    if (it == lb.end()) {
      out += "only in A: " + path + "\n";
      ++only_a;
      continue;
    }
    const Value& vb = *it->second;
    if (va->is_tensor() && vb.is_tensor()) {
      const Tensor &ta = va->tensor(), &tb = vb.tensor();
      if (ta.dtype() != tb.dtype() || ta.shape() != tb.shape()) {
        out += "changed: " + path + ": " + std::string(name(ta.dtype())) + " " + shape_text(ta.shape()) +
               " -> " + std::string(name(tb.dtype())) + " " + shape_text(tb.shape()) + "\n";
        ++changed_kind;
      } else if (TensorDiff d = compare(path, ta, tb); d.differing) {
        tensors.push_back(d);
      }
    } else if (va->kind() != vb.kind()) {
      out += "changed: " + path + ": a " + kind_name(va->kind()) + " -> a " + kind_name(vb.kind()) + "\n";
      ++changed_kind;
    } else if (!identical(*va, vb)) {
      out += "value: " + path + ": " + scalar_text(*va) + " -> " + scalar_text(vb) + "\n";
      ++changed_value;
    }
  }
  for (const auto& [path, vb] : lb)
    if (!la.count(path)) {
      out += "only in B: " + path + "\n";
      ++only_b;
    }
  std::sort(tensors.begin(), tensors.end(), [](const TensorDiff& x, const TensorDiff& y) {
    return std::isnan(x.max_abs) != std::isnan(y.max_abs) ? std::isnan(x.max_abs) : x.max_abs > y.max_abs;
  });
  for (std::size_t i = 0; i < tensors.size() && i < o.top; ++i) {
    const TensorDiff& d = tensors[i];
    out += "tensor: " + d.path + ": max |a-b| " + fmt(d.max_abs) + ", relative " +
           fmt(d.max_ref > 0 ? d.max_abs / d.max_ref : d.max_abs) + ", " + std::to_string(d.differing) +
           " of " + std::to_string(d.numel) + " elements differ\n";
  }
  if (tensors.size() > o.top) out += "(" + std::to_string(tensors.size() - o.top) + " more tensors differ)\n";
  const bool same = only_a + only_b + changed_kind + changed_value + tensors.size() == 0;
  out += same ? "no differences (" + std::to_string(la.size()) + " leaves)\n"
              : std::to_string(only_a) + " only in A, " + std::to_string(only_b) + " only in B, " +
                    std::to_string(changed_kind) + " changed kind/dtype/shape, " +
                    std::to_string(changed_value) + " changed values, " + std::to_string(tensors.size()) +
                    " tensors with different elements\n";
  write_stdout(out);
}

}  // namespace

void register_diff(CLI::App& app) {
  auto opts = std::make_shared<DiffOptions>();
  CLI::App* cmd = app.add_subcommand(
      "diff",
      "Compare two checkpoints: keys only in one, dtype/shape changes, changed values, largest differences");
  cmd->add_option("A", opts->a, "The first checkpoint")->required();
  cmd->add_option("B", opts->b, "The second checkpoint")->required();
  cmd->add_option("--select", opts->select, "Compare only the value at this key path in both (e.g. net)");
  cmd->add_option("--top", opts->top,
                  "How many differing tensors to list, largest difference first (default 10)");
  add_load_options(*cmd, opts->load, /*with_crc_flag=*/true);
  cmd->callback([opts] { run_diff(*opts); });
}

}  // namespace sgckpt::tool
