// sgckpt/detail/pickle/numpy.hpp: the restricted rebuild of numpy scalars and arrays, and of
// torch.device.
//
// numpy pickles a scalar as scalar(dtype, bytes) and an array as _reconstruct(ndarray, (0,),
// b'b') followed by BUILD (1, shape, dtype, is_fortran, bytes); a dtype is numpy.dtype(code,
// False, True) followed by BUILD (3, byteorder, None, None, None, -1, -1, flags). Only those
// exact shapes are accepted, with plain numeric dtypes: an object array ('O') would unpickle
// any Python object in numpy itself, and structured, string and datetime dtypes have no tensor
// equivalent. The element bytes must be exactly shape x itemsize; they are copied once into a
// storage (the pickle's bytes object is the budget's already) and byte-swapped to little-endian.
// docs/pth-format.md, "Values besides tensors".
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/pickle/globals.hpp"
#include "sgckpt/detail/pickle/graph.hpp"

namespace sgckpt::detail::pickle {

// The numpy type codes of the dtypes read and written, both ways.
struct NumpyCode {
  std::string_view code;
  DType dtype;
};
inline constexpr NumpyCode kNumpyCodes[] = {
    {"b1", DType::Bool},      {"i1", DType::Int8},        {"u1", DType::UInt8},   {"i2", DType::Int16},
    {"u2", DType::UInt16},    {"i4", DType::Int32},       {"u4", DType::UInt32},  {"i8", DType::Int64},
    {"u8", DType::UInt64},    {"f2", DType::Float16},     {"f4", DType::Float32}, {"f8", DType::Float64},
    {"c8", DType::Complex64}, {"c16", DType::Complex128},
};

// The dtype of a numpy type code ("f8", "<i4", "b1"), or nullopt for one not read.
inline std::optional<DType> numpy_code_dtype(std::string_view code) {
  if (!code.empty() && (code[0] == '<' || code[0] == '>' || code[0] == '=' || code[0] == '|'))
    code.remove_prefix(1);
  for (const auto& c : kNumpyCodes)
    if (c.code == code) return c.dtype;
  return std::nullopt;
}

// The code numpy writes for a dtype ("f8"), empty for a dtype numpy has no equivalent of.
inline std::string_view numpy_code(DType d) {
  for (const auto& c : kNumpyCodes)
    if (c.dtype == d) return c.code;
  return {};
}

// The device types torch.device accepts; its index is an int8_t (DeviceIndex), 0..127 here.
inline bool is_torch_device_type(std::string_view t) {
  static constexpr std::string_view types[] = {
      "cpu", "cuda", "mkldnn", "opengl", "opencl", "ideep", "hip",  "ve",  "fpga", "maia",
      "xla", "lazy", "vulkan", "mps",    "meta",   "hpu",   "mtia", "xpu", "ipu",  "privateuseone"};
  return std::find(std::begin(types), std::end(types), t) != std::end(types);
}
inline constexpr std::int64_t kMaxDeviceIndex = 127;

// numpy's own limit on dimensions (NPY_MAXDIMS: 32 in numpy 1, 64 in numpy 2).
inline constexpr std::size_t kMaxNumpyDims = 64;

class NumpyRebuilder {
 public:
  explicit NumpyRebuilder(Graph& graph) : g_(graph) {}

  // numpy.dtype(code, align, copy).
  NodeP dtype(const std::vector<NodeP>& a) {
    auto* code = as<std::string>(a[0]);
    if (!code) fail(ErrorKind::Corrupt, "numpy.dtype needs a str type code");
    const auto d = numpy_code_dtype(*code);
    if (!d) {
      const bool object = !code->empty() && (code->find('O') != std::string::npos);
      fail(ErrorKind::Refused,
           "numpy dtype '" + shown(*code) + "': " +
               (object ? "object arrays can hold any Python object"
                       : "only bool, int, uint, float and complex numpy dtypes are read"));
    }
    return g_.make(NumpyDTypeObj{*d, 0});
  }

  // BUILD on a dtype: (version, byteorder, subarray, names, fields, elsize, alignment, flags
  // [, metadata]).
  void build_dtype(NumpyDTypeObj& d, const NodeP& state) {
    if (d.byteorder) fail(ErrorKind::Refused, "BUILD applied twice to a numpy dtype");
    auto* t = as<TupleObj>(state);
    if (!t || (t->items.size() != 8 && t->items.size() != 9))
      fail(ErrorKind::Corrupt, "numpy dtype state must be a tuple of 8 or 9 items");
    auto& s = t->items;
    const std::int64_t version = int_of(s[0], "numpy dtype state version");
    if (version != 3 && version != 4)
      fail(ErrorKind::Refused,
           "numpy dtype state version " + std::to_string(version) + " (3 and 4 are read)");
    auto* order = as<std::string>(s[1]);
    if (!order || order->size() != 1 || std::string_view("<>=|").find((*order)[0]) == std::string_view::npos)
      fail(ErrorKind::Corrupt, "numpy dtype byte order must be one of '<', '>', '=', '|'");
    for (std::size_t i : {2, 3, 4})
      if (!as<std::monostate>(s[i]))
        fail(ErrorKind::Refused, "numpy dtype with a subarray or fields (structured dtypes are not read)");
    if (int_of(s[5], "numpy dtype element size") != -1 || int_of(s[6], "numpy dtype alignment") != -1)
      fail(ErrorKind::Refused,
           "numpy dtype with an explicit element size or alignment (flexible dtypes are not read)");
    int_of(s[7], "numpy dtype flags");
    if (s.size() == 9 && !as<std::monostate>(s[8]))
      fail(ErrorKind::Refused, "numpy dtype with metadata is not read");
    // '=' is the writer's native order, which numpy never pickles for a multi-byte type;
    // taken as little-endian, the order of every machine torch runs on.
    const char o = (*order)[0];
    d.byteorder = o == '=' ? '<' : o;
    if (d.byteorder == '|' && itemsize(d.dtype) != 1)
      fail(ErrorKind::Corrupt,
           "numpy dtype byte order '|' for a " + std::to_string(itemsize(d.dtype)) + "-byte type");
  }

  // numpy.core.multiarray.scalar(dtype, bytes).
  NodeP scalar(const std::vector<NodeP>& a) {
    if (a.size() != 2)
      fail(ErrorKind::Refused, "numpy scalar without its bytes (object scalars are not read)");
    const NumpyDTypeObj& d = built_dtype(a[0]);
    auto* b = as<Bytes>(a[1]);
    if (!b)
      fail(ErrorKind::Corrupt, std::string("numpy scalar data must be bytes, found a ") + node_kind(*a[1]));
    if (b->data.size() != itemsize(d.dtype))
      fail(ErrorKind::Corrupt, "numpy scalar of " + std::to_string(b->data.size()) + " bytes for a " +
                                   std::string(name(d.dtype)) + " (" + std::to_string(itemsize(d.dtype)) +
                                   " bytes)");
    return g_.make(NumpyObj{NumpyValue{elements(d, {}, false, *a[1]), true}, true});
  }

  // numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b'): an empty array that BUILD fills.
  NodeP reconstruct(const std::vector<NodeP>& a) {
    auto* cls = as<Global>(a[0]);
    auto* shape = as<TupleObj>(a[1]);
    auto* tag = as<Bytes>(a[2]);
    if (!cls || cls->id != G::NumpyNDArray)
      fail(ErrorKind::Refused, "numpy _reconstruct of a class other than numpy.ndarray");
    if (!shape || shape->items.size() != 1 || int_of(shape->items[0], "numpy _reconstruct shape") != 0 ||
        !tag || tag->data != "b")
      fail(ErrorKind::Corrupt, "numpy _reconstruct arguments must be (numpy.ndarray, (0,), b'b')");
    return g_.make(NumpyObj{});
  }

  // BUILD on an array: ([1,] shape, dtype, is_fortran, data).
  void build_array(NumpyObj& arr, const NodeP& state) {
    if (arr.built) fail(ErrorKind::Refused, "BUILD applied twice to a numpy array");
    auto* t = as<TupleObj>(state);
    if (!t || (t->items.size() != 5 && t->items.size() != 4))
      fail(ErrorKind::Corrupt,
           "numpy array state must be a tuple of 5 items (version, shape, dtype, fortran, data)");
    auto s = t->items;
    if (s.size() == 5) {
      if (int_of(s[0], "numpy array state version") != 1)
        fail(ErrorKind::Refused, "numpy array state version other than 1");
      s.erase(s.begin());
    }
    Shape shape = shape_of(s[0]);
    const NumpyDTypeObj& d = built_dtype(s[1]);
    auto* fortran = as<bool>(s[2]);
    if (!fortran) fail(ErrorKind::Corrupt, "numpy array fortran flag must be a bool");
    if (as<ListObj>(s[3]))
      fail(ErrorKind::Refused, "numpy array data as a list (object arrays are not read)");
    auto* b = as<Bytes>(s[3]);
    if (!b)
      fail(ErrorKind::Corrupt, std::string("numpy array data must be bytes, found a ") + node_kind(*s[3]));
    // As numpy: the product of the dimensions (empty ones counted as 1, so that the check does
    // not depend on their order) times the item size must fit in int64; then the strides do too.
    std::uint64_t span = itemsize(d.dtype), numel = 1, nbytes = 0;
    for (auto n : shape) {
      numel *= static_cast<std::uint64_t>(n);  // cannot overflow once span has not
      if (sgckpt::detail::mul_overflows(span, static_cast<std::uint64_t>(std::max<std::int64_t>(n, 1)),
                                        span) ||
          span > static_cast<std::uint64_t>(INT64_MAX))
        fail(ErrorKind::Corrupt,
             "numpy array shape " + shape_text(shape) + " is too large (numpy refuses it)");
    }
    if (sgckpt::detail::mul_overflows(numel, itemsize(d.dtype), nbytes) || nbytes != b->data.size())
      fail(ErrorKind::Corrupt, "numpy array data of " + std::to_string(b->data.size()) + " bytes for " +
                                   std::to_string(numel) + " " + std::string(name(d.dtype)) + " elements");
    arr.value = NumpyValue{elements(d, std::move(shape), *fortran, *s[3]), false};
    arr.built = true;
  }

  // torch.device(type[, index]) or torch.device("type:index").
  NodeP device(const std::vector<NodeP>& a) {
    auto* text = as<std::string>(a[0]);
    if (!text) fail(ErrorKind::Corrupt, "torch.device needs a str device type");
    TorchDevice dev{*text, std::nullopt};
    if (a.size() == 2 && !as<std::monostate>(a[1])) {
      dev.index = int_of(a[1], "torch.device index");
    } else if (auto colon = text->find(':'); colon != std::string::npos) {
      dev.type = text->substr(0, colon);
      const std::string digits = text->substr(colon + 1);
      if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
        fail(ErrorKind::Corrupt, "torch.device string '" + shown(*text) + "' has no valid index");
      dev.index = std::stoll(digits);
    }
    if (!is_torch_device_type(dev.type))
      fail(ErrorKind::Corrupt, "torch.device type '" + shown(dev.type) + "' is not one torch knows");
    // torch's DeviceIndex is an int8_t.
    if (dev.index && (*dev.index < 0 || *dev.index > kMaxDeviceIndex))
      fail(ErrorKind::Corrupt, "torch.device index " + std::to_string(*dev.index) + " outside 0..127");
    return g_.make(std::move(dev));
  }

 private:
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const { g_.fail(kind, msg); }

  static std::string shown(const std::string& s) { return s.size() <= 40 ? s : s.substr(0, 40) + "..."; }

  std::int64_t int_of(const NodeP& n, const char* what) {
    auto* i = as<Int>(n);
    if (!i || !i->fits_int64())
      fail(ErrorKind::Corrupt, std::string(what) + " must be a 64-bit int, found a " + node_kind(*n));
    return i->to_int64();
  }

  Shape shape_of(const NodeP& n) {
    auto* t = as<TupleObj>(n);
    if (!t)
      fail(ErrorKind::Corrupt, std::string("numpy array shape must be a tuple, found a ") + node_kind(*n));
    if (t->items.size() > kMaxNumpyDims)
      fail(ErrorKind::Corrupt, "numpy array of " + std::to_string(t->items.size()) +
                                   " dimensions (numpy allows " + std::to_string(kMaxNumpyDims) + ")");
    g_.budget.charge(t->items.size());  // copied into a Shape
    Shape out;
    for (auto& e : t->items) {
      const std::int64_t v = int_of(e, "numpy array dimension");
      if (v < 0) fail(ErrorKind::Corrupt, "negative numpy array dimension " + std::to_string(v));
      out.push_back(v);
    }
    return out;
  }

  const NumpyDTypeObj& built_dtype(const NodeP& n) {
    auto* d = as<NumpyDTypeObj>(n);
    if (!d)
      fail(ErrorKind::Corrupt, std::string("numpy value needs a numpy.dtype, found a ") + node_kind(*n));
    if (!d->byteorder) fail(ErrorKind::Corrupt, "numpy dtype used before its state (BUILD) was set");
    return *d;
  }

  // The elements as a C-order little-endian host tensor: one copy of the bytes.
  Tensor elements(const NumpyDTypeObj& d, Shape shape, bool fortran, Node& bytes_node) {
    const std::string& data = as<Bytes>(&bytes_node)->data;
    g_.charge_reuse(bytes_node, data.size() / Budget::kBytesPerValue);  // a memoized bytes copied again
    g_.budget.account(data.size());
    auto storage = Storage::copy_of(std::as_bytes(std::span(data.data(), data.size())));
    const std::size_t isz = itemsize(d.dtype);
    // Complex numbers swap each half.
    const std::size_t unit = is_complex(d.dtype) ? isz / 2 : isz;
    if (d.byteorder == '>' && unit > 1)
      for (std::byte* p = storage->mutable_data(); p < storage->mutable_data() + storage->nbytes(); p += unit)
        std::reverse(p, p + unit);
    Shape strides(shape.size());
    std::int64_t step = 1;
    if (fortran) {
      for (std::size_t i = 0; i < shape.size(); ++i)
        strides[i] = step, step *= std::max<std::int64_t>(shape[i], 1);
    } else {
      for (std::size_t i = shape.size(); i-- > 0;)
        strides[i] = step, step *= std::max<std::int64_t>(shape[i], 1);
    }
    try {
      Tensor t = Tensor::view_of(std::move(storage), d.dtype, 0, std::move(shape), std::move(strides));
      if (!fortran) return t;
      g_.budget.account(data.size());  // the C-order copy
      return t.contiguous();
    } catch (const Error& e) {
      fail(ErrorKind::Corrupt, "numpy array: " + e.message());
    }
  }

  Graph& g_;
};

}  // namespace sgckpt::detail::pickle
