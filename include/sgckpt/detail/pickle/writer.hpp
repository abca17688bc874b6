// sgckpt/detail/pickle/writer.hpp: writes a value tree as the pickle torch.save would write.
//
// Only the opcodes and globals that torch.load(weights_only=True) accepts in every torch
// since 1.6 are emitted (protocol 2; strings as BINUNICODE; floats as BINFLOAT, which torch
// 1.13's weights_only loader lacks but every 2.x has), plus GLOBAL collections.Counter only
// for Counter values and GLOBAL _codecs.encode only for bytes values (as Python writes them;
// torch >= 2.5 weights_only accepts it). Tensors become _rebuild_tensor_v2 calls on storage persistent ids
// (_rebuild_tensor_v3 on an UntypedStorage for the dtypes torch 2.x added, see core/dtype.hpp);
// each distinct storage gets one key ("0", "1", ... in first-pickled order) and is written
// whole, so views and sharing survive the round trip, as with torch.save.
//
// torch.dtype, torch.device and torch.Size values are written as torch writes them (every
// torch 2.x weights_only loader accepts them; torch 1.13's refuses torch.device). numpy scalars
// and arrays as numpy 1.x pickles them (numpy.core.multiarray.scalar / _reconstruct, which
// numpy 2 also reads; torch's weights_only loader needs them allowlisted, see
// docs/pth-format.md).
//
// A str or bytes value of kMemoMinBytes or more that occurs again is written once and then
// referenced through the memo (BINPUT, BINGET), as Python's pickler does for the object it
// shares: the value tree holds a copy per reference, and writing each copy in full turned a
// 1 KB file holding one 16 KB str 3000 times into a 49 MB one. Shorter strings are written
// in place, so ordinary checkpoints keep the layout they have always had.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/keyed_hash.hpp"
#include "sgckpt/detail/little_endian.hpp"
#include "sgckpt/detail/pickle/numpy.hpp"
#include "sgckpt/detail/pickle/ops.hpp"

namespace sgckpt::detail::pickle {

// A storage the pickle refers to, for the container writer.
struct StorageRecord {
  std::string key;
  std::shared_ptr<Storage> storage;
  DType dtype;
};

class Writer {
 public:
  // Pickles `v` (PROTO 2 ... STOP). Storages met on the way are listed in storages().
  std::vector<std::uint8_t> dump(const Value& v) {
    begin();
    value(v);
    return end();
  }

  const std::vector<StorageRecord>& storages() const noexcept { return storages_; }

 protected:
  // The opcodes and values below are also how DCP's .metadata is written
  // (detail/dcp/metadata_writer.hpp).
  void begin() {
    out_.clear();
    out_.reserve(4096);
    str_memo_.clear();
    bytes_memo_.clear();
    numpy_memo_.clear();
    next_slot_ = 0;
    emit(op::PROTO);
    emit(2);
  }
  std::vector<std::uint8_t> end() {
    emit(op::STOP);
    return std::move(out_);
  }

  void emit(std::uint8_t b) { out_.push_back(b); }
  void emit_le(std::uint64_t v, int n) { sgckpt::detail::append_le(out_, v, static_cast<std::size_t>(n)); }
  void emit_bytes(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }

  void str(std::string_view s) {
    if (s.size() > 0xFFFFFFFFu) throw Error(ErrorKind::Limit, "string longer than 4 GiB cannot be pickled");
    if (memo_get(str_memo_, s)) return;
    emit(op::BINUNICODE);
    emit_le(s.size(), 4);
    emit_bytes(s.data(), s.size());
    memo_put(str_memo_, s);
  }

  // ---- the memo (see the file comment) ----
  // Keys view the strings of the tree being dumped, which outlive the dump.
  using Memo = std::unordered_map<std::string_view, std::uint32_t, sgckpt::detail::KeyedHash>;
  static constexpr std::size_t kMemoMinBytes = 64;
  bool memo_get(const Memo& memo, std::string_view s) {
    if (s.size() < kMemoMinBytes) return false;
    auto it = memo.find(s);
    if (it == memo.end()) return false;
    memo_ref(it->second);
    return true;
  }
  void memo_put(Memo& memo, std::string_view s) {
    if (s.size() < kMemoMinBytes) return;
    memo.emplace(s, next_slot_);
    memo_slot();
  }
  // BINGET of a memo slot; BINPUT of the object on top of the stack into the next slot.
  void memo_ref(std::uint32_t slot) {
    if (slot < 256) {
      emit(op::BINGET);
      emit(static_cast<std::uint8_t>(slot));
    } else {
      emit(op::LONG_BINGET);
      emit_le(slot, 4);
    }
  }
  void memo_slot() {
    const std::uint32_t slot = next_slot_++;
    if (slot < 256) {
      emit(op::BINPUT);
      emit(static_cast<std::uint8_t>(slot));
    } else {
      emit(op::LONG_BINPUT);
      emit_le(slot, 4);
    }
  }
  void global(std::string_view module, std::string_view name) {
    emit(op::GLOBAL);
    emit_bytes(module.data(), module.size());
    emit('\n');
    emit_bytes(name.data(), name.size());
    emit('\n');
  }
  void integer(const Int& i) {
    if (i.fits_int64()) {
      const std::int64_t v = i.to_int64();
      if (v >= 0 && v < 256) {
        emit(op::BININT1);
        emit(static_cast<std::uint8_t>(v));
        return;
      }
      if (v >= 256 && v < 65536) {
        emit(op::BININT2);
        emit_le(static_cast<std::uint64_t>(v), 2);
        return;
      }
      if (v >= INT32_MIN && v <= INT32_MAX) {
        emit(op::BININT);
        emit_le(static_cast<std::uint64_t>(v), 4);
        return;
      }
    }
    const auto bytes = i.to_le_bytes();
    if (bytes.size() > 255)
      throw Error(ErrorKind::Limit,
                  "integer of " + std::to_string(bytes.size()) + " bytes is too large to write", at_path());
    emit(op::LONG1);
    emit(static_cast<std::uint8_t>(bytes.size()));
    emit_bytes(bytes.data(), bytes.size());
  }
  void floating(double d) {
    emit(op::BINFLOAT);
    const auto u = std::bit_cast<std::uint64_t>(d);
    for (int i = 7; i >= 0; --i) emit(static_cast<std::uint8_t>(u >> (8 * i)));
  }
  void tuple_of_ints(const Shape& s) {
    if (s.empty()) {
      emit(op::EMPTY_TUPLE);
      return;
    }
    if (s.size() > 3) emit(op::MARK);
    for (auto d : s) integer(Int(d));
    static constexpr std::uint8_t small[] = {0, op::TUPLE1, op::TUPLE2, op::TUPLE3};
    emit(s.size() <= 3 ? small[s.size()] : op::TUPLE);
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    emit(op::EMPTY_TUPLE);
    emit(op::REDUCE);
  }

  ErrorContext at_path() const { return ErrorContext::at_key(path_.str()); }

  void tensor(const TensorValue<Tensor>& tv) {
    const Tensor& t = tv.tensor;
    if (!t.defined()) throw Error("cannot save an undefined tensor", at_path());
    const DTypeInfo& di = info(t.dtype());
    const auto& storage = t.storage();
    if (storage->nbytes() % di.itemsize != 0)
      throw Error("storage of " + std::to_string(storage->nbytes()) + " bytes is not a whole number of " +
                      std::string(di.name) + " elements",
                  at_path());
    std::string key;
    if (auto it = keys_.find(storage.get()); it != keys_.end()) {
      const auto& rec = storages_[it->second];
      if (rec.dtype != t.dtype())
        throw Error(ErrorKind::Refused,
                    "cannot save tensors that view the same storage as different dtypes (" +
                        std::string(name(rec.dtype)) + " and " + std::string(di.name) + ")",
                    at_path());
      key = rec.key;
    } else {
      key = std::to_string(storages_.size());
      keys_.emplace(storage.get(), storages_.size());
      storages_.push_back({key, storage, t.dtype()});
    }

    // A dtype with a legacy storage class is written as every torch since 1.6 reads it; the
    // torch 2.x dtypes as torch 2.x writes them: an UntypedStorage counted in bytes, and
    // _rebuild_tensor_v3 with the dtype as a last argument.
    const bool typed = !di.storage_class.empty();
    if (tv.parameter) global("torch._utils", "_rebuild_parameter");
    global("torch._utils", typed ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    emit(op::MARK);
    // persistent id: ('storage', torch.<X>Storage or torch.storage.UntypedStorage, key, 'cpu', numel)
    emit(op::MARK);
    str("storage");
    if (typed) {
      global("torch", di.storage_class);
    } else {
      global("torch.storage", "UntypedStorage");  // torch's own module for it (weights_only allows only that)
    }
    str(key);
    str("cpu");
    integer(Int(static_cast<std::int64_t>(storage->nbytes() / (typed ? di.itemsize : 1))));
    emit(op::TUPLE);
    emit(op::BINPERSID);
    integer(Int(t.storage_offset()));
    tuple_of_ints(t.shape());
    tuple_of_ints(t.strides());
    // A Parameter's data is a plain tensor; requires_grad goes to _rebuild_parameter.
    emit(!tv.parameter && tv.requires_grad ? op::NEWTRUE : op::NEWFALSE);
    empty_ordered_dict();  // backward hooks
    if (!typed) global("torch", di.name);
    emit(op::TUPLE);
    emit(op::REDUCE);
    if (tv.parameter) {
      emit(tv.requires_grad ? op::NEWTRUE : op::NEWFALSE);
      empty_ordered_dict();
      emit(op::TUPLE3);
      emit(op::REDUCE);
    }
  }

  // Items in batches of at most 1000, as Python's pickler does.
  template <class Items, class F>
  void batched(const Items& items, std::uint8_t one, std::uint8_t many, F&& each) {
    const std::size_t n = items.size();
    for (std::size_t start = 0; start < n; start += 1000) {
      const std::size_t end = std::min(n, start + 1000);
      if (end - start == 1) {
        each(items[start], start);
        emit(one);
        continue;
      }
      emit(op::MARK);
      for (std::size_t i = start; i < end; ++i) each(items[i], i);
      emit(many);
    }
  }

  void dict_items(const Dict& d) {
    batched(d.items(), op::SETITEM, op::SETITEMS, [&](const Dict::Item& kv, std::size_t) {
      const Key& k = kv.first;
      if (k.is_str()) {
        str(k.str());
        auto level = path_.key(k.str());
        value(kv.second);
      } else {
        integer(Int(k.integer()));
        auto level = path_.key(k.integer());
        value(kv.second);
      }
    });
  }

  // Protocol 2 has no bytes opcode: Python writes _codecs.encode(latin1 text, 'latin1').
  // `memoize`: data lives in the tree being dumped (the memo keeps a view of it).
  void bytes(const std::string& data, bool memoize = true) {
    if (memoize && memo_get(bytes_memo_, data)) return;
    global("_codecs", "encode");
    std::string text;
    for (char c : data) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x80) {
        text.push_back(c);
      } else {
        text.push_back(static_cast<char>(0xC0 | (u >> 6)));
        text.push_back(static_cast<char>(0x80 | (u & 0x3F)));
      }
    }
    // The latin-1 text is a temporary: written in place, never memoized itself.
    emit(op::BINUNICODE);
    emit_le(text.size(), 4);
    emit_bytes(text.data(), text.size());
    str("latin1");
    emit(op::TUPLE2);
    emit(op::REDUCE);
    if (memoize) memo_put(bytes_memo_, data);
  }

  // torch.device(type[, index]).
  void device(const TorchDevice& d) {
    if (!is_torch_device_type(d.type) || (d.index && (*d.index < 0 || *d.index > kMaxDeviceIndex)))
      throw Error("torch.device '" + d.to_string() + "' is not one torch can make", at_path());
    global("torch", "device");
    str(d.type);
    if (d.index) integer(Int(*d.index));
    emit(d.index ? op::TUPLE2 : op::TUPLE1);
    emit(op::REDUCE);
  }

  // torch.Size((d0, d1, ...)).
  void torch_size(const Value& v) {
    global("torch", "Size");
    Shape dims;
    for (const auto& e : v.items()) dims.push_back(e.as_int());
    tuple_of_ints(dims);
    emit(op::TUPLE1);
    emit(op::REDUCE);
  }

  // numpy.dtype(code, False, True) and its state (3, byteorder, None, None, None, -1, -1, 0).
  void numpy_dtype(DType d) {
    const std::string_view code = numpy_code(d);
    if (code.empty())
      throw Error("numpy has no " + std::string(name(d)) + " dtype: cast the numpy value's data first",
                  at_path());
    global("numpy", "dtype");
    str(code);
    emit(op::NEWFALSE);
    emit(op::NEWTRUE);
    emit(op::TUPLE3);
    emit(op::REDUCE);
    emit(op::MARK);
    integer(Int(3));
    str(itemsize(d) == 1 ? "|" : "<");
    for (int i = 0; i < 3; ++i) emit(op::NONE);
    integer(Int(-1));
    integer(Int(-1));
    integer(Int(0));
    emit(op::TUPLE);
    emit(op::BUILD);
  }

  // A numpy scalar: scalar(dtype, bytes); an array: _reconstruct(ndarray, (0,), b'b') and its
  // state (1, shape, dtype, False, C-order bytes).
  // A value met again (copies of one read numpy object share its storage) is written once and
  // then referenced through the memo, as Python's pickler does: writing each copy in full
  // would let a small file that references one large array many times write terabytes.
  void numpy(const NumpyValue& n) {
    if (!n.data.defined()) throw Error("cannot save a numpy value without data", at_path());
    const Tensor& t = n.data;
    const NumpyKey key{t.storage().get(), t.storage_offset(), t.dtype(), t.shape(), t.strides(), n.scalar};
    if (auto it = numpy_memo_.find(key); it != numpy_memo_.end()) {
      memo_ref(it->second);
      return;
    }
    numpy_object(n);
    numpy_memo_.emplace(key, next_slot_);
    memo_slot();
  }

  void numpy_object(const NumpyValue& n) {
    const Tensor data = n.data.contiguous();
    const std::string raw(reinterpret_cast<const char*>(data.raw_data()), data.nbytes());
    if (n.scalar) {
      if (data.dim() != 0) throw Error("a numpy scalar must be 0-dimensional", at_path());
      global("numpy.core.multiarray", "scalar");
      numpy_dtype(data.dtype());
      bytes(raw, false);
      emit(op::TUPLE2);
      emit(op::REDUCE);
      return;
    }
    global("numpy.core.multiarray", "_reconstruct");
    global("numpy", "ndarray");
    integer(Int(0));
    emit(op::TUPLE1);
    bytes("b", false);
    emit(op::TUPLE3);
    emit(op::REDUCE);
    emit(op::MARK);
    integer(Int(1));
    tuple_of_ints(data.shape());
    numpy_dtype(data.dtype());
    emit(op::NEWFALSE);
    bytes(raw, false);
    emit(op::TUPLE);
    emit(op::BUILD);
  }

  void value(const Value& v) {
    if (++depth_ > 1000)
      throw Error(ErrorKind::Limit, "containers nested deeper than 1000 levels", at_path());
    switch (v.kind()) {
      case Kind::None:
        emit(op::NONE);
        break;
      case Kind::Bool:
        emit(v.as_bool() ? op::NEWTRUE : op::NEWFALSE);
        break;
      case Kind::Int:
        integer(v.as_big_int());
        break;
      case Kind::Float:
        floating(v.as_float());
        break;
      case Kind::Str:
        str(v.as_str());
        break;
      case Kind::Bytes:
        bytes(v.as_bytes().data);
        break;
      case Kind::DType:
        global("torch", name(v.as_dtype()));
        break;
      case Kind::Device:
        device(v.as_device());
        break;
      case Kind::Numpy:
        numpy(v.numpy());
        break;
      case Kind::Tensor:
        tensor(v.tensor_value());
        break;
      case Kind::List:
        emit(op::EMPTY_LIST);
        batched(v.items(), op::APPEND, op::APPENDS, [&](const Value& e, std::size_t i) {
          auto level = path_.index(i);
          value(e);
        });
        break;
      case Kind::Tuple: {
        if (v.is_torch_size()) {
          torch_size(v);
          break;
        }
        const auto& items = v.items();
        if (items.empty()) {
          emit(op::EMPTY_TUPLE);
          break;
        }
        if (items.size() > 3) emit(op::MARK);
        for (std::size_t i = 0; i < items.size(); ++i) {
          auto level = path_.index(i);
          value(items[i]);
        }
        static constexpr std::uint8_t small[] = {0, op::TUPLE1, op::TUPLE2, op::TUPLE3};
        emit(items.size() <= 3 ? small[items.size()] : op::TUPLE);
        break;
      }
      case Kind::Dict: {
        const Dict& d = v.dict();
        switch (d.kind()) {
          case DictKind::Dict:
            emit(op::EMPTY_DICT);
            dict_items(d);
            break;
          case DictKind::OrderedDict:
            empty_ordered_dict();
            dict_items(d);
            if (!d.attributes().empty()) {
              emit(op::EMPTY_DICT);
              for (const auto& [name, attr] : d.attributes()) {
                str(name);
                auto level = path_.attribute(name);
                value(attr);
                emit(op::SETITEM);
              }
              emit(op::BUILD);
            }
            break;
          case DictKind::Counter:
            // Counter.__reduce__ is (Counter, (dict(self),)).
            global("collections", "Counter");
            emit(op::EMPTY_DICT);
            dict_items(d);
            emit(op::TUPLE1);
            emit(op::REDUCE);
            break;
        }
        break;
      }
    }
    --depth_;
  }

  std::vector<std::uint8_t> out_;
  std::vector<StorageRecord> storages_;
  std::unordered_map<const Storage*, std::size_t> keys_;
  int depth_ = 0;
  KeyPath path_;  // key path of the value being written, for errors
  Memo str_memo_, bytes_memo_;
  // A numpy value by its data and layout (storage, offset, dtype, shape, strides, scalar).
  using NumpyKey = std::tuple<const Storage*, std::int64_t, DType, Shape, Shape, bool>;
  std::map<NumpyKey, std::uint32_t> numpy_memo_;
  std::uint32_t next_slot_ = 0;
};

}  // namespace sgckpt::detail::pickle
