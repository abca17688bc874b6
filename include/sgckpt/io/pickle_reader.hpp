// sgckpt/io/pickle_reader.hpp: a restricted pickle machine for checkpoint data.
//
// It runs the pickle opcodes of protocols 2 to 5 that describe data (containers, scalars,
// strings, memo, persistent ids) and nothing else. A GLOBAL is only a name looked up in a
// fixed allowlist (tensor rebuild functions, storage classes, dtypes, OrderedDict, Counter,
// torch.Size); no Python object is ever created from a name, so nothing can execute.
// Everything else is refused with the opcode's byte offset. Container operations are
// type-checked (SETITEM only on dicts, APPEND only on lists: CVE-2026-24747), storage sizes
// and tensor views are checked against the records, and every resource is bounded by
// Limits: opcodes, memo, nodes, string bytes, nesting depth. Cycles are refused.
//
// The machine builds a graph of shared nodes (a memo reference yields the same object, as
// in Python), then converts it once into a sgckpt::Value tree.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/keyed_hash.hpp"
#include "sgckpt/detail/little_endian.hpp"
#include "sgckpt/detail/utf8.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pickle_ops.hpp"

namespace sgckpt::pickle {

// A storage named by a persistent id, to be supplied by the container (zip or legacy).
struct StorageRequest {
  std::string key;             // opaque; the zip record is data/<key>
  std::optional<DType> dtype;  // nullopt for torch.storage.UntypedStorage (numel counts bytes)
  std::uint64_t numel = 0;     // elements of dtype in the whole storage
  std::uint64_t nbytes = 0;    // numel * itemsize, overflow-checked
  std::string location;        // "cpu", "cuda:0", ...: ignored, everything loads to host
};

// Returns a storage of exactly request.nbytes bytes or throws sgckpt::Error.
using StorageResolver = std::function<std::shared_ptr<Storage>(const StorageRequest&)>;

struct ReaderConfig {
  Limits limits;
  // Pre-1.6 legacy stream: storage persistent ids are 6-tuples with view metadata.
  bool legacy = false;
  // Size of the whole input (the file) that the memory budget scales with; 0: the pickle's.
  std::uint64_t input_bytes = 0;
};

namespace detail {

enum class G : std::uint8_t {
  OrderedDict,
  Counter,
  RebuildTensor,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  RebuildParameterWithState,
  RebuildFromTypeV2,
  TorchSize,
  TensorClass,
  ParameterClass,
  StorageClass,    // a typed storage class; dtype says which
  UntypedStorage,  // torch.storage.UntypedStorage
  DTypeObject,     // torch.float32 etc.; dtype says which
  CodecsEncode,    // _codecs.encode(str, 'latin1'): how protocol 2 pickles bytes
  BytesClass,      // builtins.bytes(): empty bytes
};

struct Global {
  G id;
  DType dtype = DType::Float32;
  std::string name;  // "module.name", for messages
};

struct Node;
// Nodes live in the machine's arena (NodeArena) and point at each other with raw pointers:
// freeing the graph is freeing the arena's blocks, so no destructor ever walks it (a deep
// chain cannot overflow the stack, a cycle cannot leak, teardown never allocates), and a
// node costs 48 bytes instead of a shared_ptr control block plus every alternative inline
// (~360 bytes: a 5 KB deflated file of EMPTY_DICTs took 1.8 GB).
using NodeP = Node*;

struct ListObj {
  std::vector<NodeP> items;
};
struct TupleObj {
  std::vector<NodeP> items;
};
struct DictObj {
  DictKind kind = DictKind::Dict;
  std::vector<std::pair<Key, NodeP>> items;
  std::unordered_map<Key, std::size_t, KeyHash> index;
  std::vector<std::pair<std::string, NodeP>> attrs;
  std::unordered_map<std::string, std::size_t, sgckpt::detail::KeyedHash>
      attr_index;  // name -> position in attrs
};
struct TensorObj {
  Tensor tensor;
  bool requires_grad = false;
  bool parameter = false;
};
struct StorageObj {
  std::shared_ptr<Storage> storage;
  std::optional<DType> dtype;
  std::uint64_t numel = 0;
  std::string key;
};

// The alternatives of a node, in the order of Node::v.
enum class NodeKind : std::uint8_t {
  None,
  Bool,
  Int,
  Float,
  Str,
  List,
  Tuple,
  Dict,
  Tensor,
  Global,
  Storage,
  Bytes
};

// The large, rare alternatives are boxed so that every node stays small.
template <class X>
inline constexpr bool kBoxed = std::is_same_v<X, DictObj> || std::is_same_v<X, TensorObj> ||
                               std::is_same_v<X, Global> || std::is_same_v<X, StorageObj>;

struct Node {
  std::variant<std::monostate, bool, Int, double, std::string, ListObj, TupleObj, std::unique_ptr<DictObj>,
               std::unique_ptr<TensorObj>, std::unique_ptr<Global>, std::unique_ptr<StorageObj>, Bytes>
      v;
  bool on_path = false;    // cycle detection during conversion
  bool copied = false;     // its data was copied once already (as a key, Counter() source, ...)
  bool converted = false;  // converted into the value tree once already

  NodeKind kind() const noexcept { return static_cast<NodeKind>(v.index()); }
};

// Typed access: the alternative X of `n`, or nullptr.
template <class X>
X* as(NodeP n) {
  if constexpr (kBoxed<X>) {
    auto* b = std::get_if<std::unique_ptr<X>>(&n->v);
    return b ? b->get() : nullptr;
  } else {
    return std::get_if<X>(&n->v);
  }
}

// Owns every node of one pickle, in blocks.
class NodeArena {
 public:
  NodeP make() {
    if (used_ == kBlock) {
      blocks_.push_back(std::make_unique<Node[]>(kBlock));
      used_ = 0;
    }
    return &blocks_.back()[used_++];
  }

 private:
  static constexpr std::size_t kBlock = 1024;
  std::vector<std::unique_ptr<Node[]>> blocks_;
  std::size_t used_ = kBlock;
};

inline const char* node_kind(const Node& n) {
  switch (n.kind()) {
    case NodeKind::None:
      return "None";
    case NodeKind::Bool:
      return "bool";
    case NodeKind::Int:
      return "int";
    case NodeKind::Float:
      return "float";
    case NodeKind::Str:
      return "str";
    case NodeKind::List:
      return "list";
    case NodeKind::Tuple:
      return "tuple";
    case NodeKind::Dict:
      return "dict";
    case NodeKind::Tensor:
      return "tensor";
    case NodeKind::Global:
      return "global";
    case NodeKind::Storage:
      return "storage";
    case NodeKind::Bytes:
      return "bytes";
  }
  return "?";
}

// The allowlist. Returns nullopt for anything not listed.
inline std::optional<Global> lookup_global(std::string module, const std::string& name) {
  // Python 2 and old-torch module names, as torch's loaders map them.
  if (module == "__builtin__") module = "builtins";
  if (module == "torch.tensor") module = "torch._tensor";
  const std::string full = module + "." + name;
  auto g = [&](G id, DType d = DType::Float32) { return Global{id, d, full}; };
  if (module == "collections") {
    if (name == "OrderedDict") return g(G::OrderedDict);
    if (name == "Counter") return g(G::Counter);
    return std::nullopt;
  }
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor") return g(G::RebuildTensor);
    if (name == "_rebuild_tensor_v2") return g(G::RebuildTensorV2);
    if (name == "_rebuild_tensor_v3") return g(G::RebuildTensorV3);
    if (name == "_rebuild_parameter") return g(G::RebuildParameter);
    if (name == "_rebuild_parameter_with_state") return g(G::RebuildParameterWithState);
    return std::nullopt;
  }
  if (module == "_codecs" && name == "encode") return g(G::CodecsEncode);
  if (module == "builtins" && name == "bytes") return g(G::BytesClass);
  if (module == "torch._tensor" && name == "_rebuild_from_type_v2") return g(G::RebuildFromTypeV2);
  if (module == "torch.nn.parameter" && name == "Parameter") return g(G::ParameterClass);
  if (module == "torch.storage" && name == "UntypedStorage") return g(G::UntypedStorage);
  if (module == "torch" || module == "torch.cuda") {
    if (auto d = dtype_from_storage_class(name)) return g(G::StorageClass, *d);
    if (module == "torch") {
      if (name == "Size") return g(G::TorchSize);
      if (name == "Tensor") return g(G::TensorClass);
      for (const auto& i : kDTypes)
        if (i.name == name) return g(G::DTypeObject, i.dtype);
    }
  }
  return std::nullopt;
}

class Machine {
 public:
  Machine(std::span<const std::byte> data, const StorageResolver& resolver, const ReaderConfig& config)
      : p_(reinterpret_cast<const std::uint8_t*>(data.data())),
        n_(data.size()),
        resolver_(resolver),
        cfg_(config),
        lim_(config.limits),
        memory_budget_(budget(config.limits, config.input_bytes ? config.input_bytes : data.size())) {}

  Value run() {
    if (n_ > lim_.max_pickle_bytes)
      throw Error(ErrorKind::Limit, "pickle of " + std::to_string(n_) + " bytes exceeds the limit of " +
                                        std::to_string(lim_.max_pickle_bytes) + " bytes");
    execute();
    if (stack_.size() != 1 || !marks_.empty())
      throw Error(ErrorKind::Corrupt,
                  "malformed pickle: STOP with " + std::to_string(stack_.size()) + " values and " +
                      std::to_string(marks_.size()) + " open marks on the stack (expected exactly one value)",
                  ErrorContext::at_offset(op_start_));
    NodeP root = stack_.back();
    return convert(*root, 0);
  }

  // Bytes consumed up to and including STOP (legacy streams hold several pickles back to back).
  std::size_t consumed() const noexcept { return pos_; }

 private:
  // ---- errors and input ------------------------------------------------------------------
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const {
    throw Error(kind, msg, ErrorContext::at_offset(op_start_));
  }

  void need(std::size_t k) const {
    if (n_ - pos_ < k)
      fail(ErrorKind::Truncated, "truncated pickle: opcode needs " + std::to_string(k) +
                                     " more bytes but only " + std::to_string(n_ - pos_) + " remain");
  }
  std::uint8_t u8() {
    need(1);
    return p_[pos_++];
  }
  std::uint64_t uint_le(std::size_t k) {
    need(k);
    const std::uint64_t v = sgckpt::detail::load_le(p_ + pos_, k);
    pos_ += k;
    return v;
  }
  std::string_view bytes(std::uint64_t k) {
    if (k > n_ - pos_)
      fail(ErrorKind::Truncated, "truncated pickle: a length of " + std::to_string(k) +
                                     " bytes runs past the end (" + std::to_string(n_ - pos_) +
                                     " bytes remain)");
    std::string_view s(reinterpret_cast<const char*>(p_ + pos_), static_cast<std::size_t>(k));
    pos_ += static_cast<std::size_t>(k);
    return s;
  }
  std::string_view line() {
    const std::size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') {
      if (pos_ - start > 1024) fail(ErrorKind::Limit, "GLOBAL name longer than 1024 bytes");
      ++pos_;
    }
    if (pos_ >= n_) fail(ErrorKind::Truncated, "truncated pickle: GLOBAL name without a newline");
    std::string_view s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  // ---- nodes ---------------------------------------------------------------------------
  template <class X>
  NodeP make(X x) {
    if (++nodes_ + charged_ > lim_.max_values)
      fail(ErrorKind::Limit,
           "pickle creates more than " + std::to_string(lim_.max_values) + " objects (limit)");
    account(sizeof(Node) + (kBoxed<X> ? sizeof(X) : 0));
    NodeP n = arena_.make();
    if constexpr (kBoxed<X>)
      n->v = std::make_unique<X>(std::move(x));
    else
      n->v = std::move(x);
    return n;
  }
  // Memory. Counting objects bounds neither their size nor what a small file can ask for:
  // a deflated data.pkl or a memo reference (2 bytes) can stand for megabytes. So the bytes
  // of nodes, container slots and strings are summed, and may not exceed memory_allowance
  // plus memory_per_input_byte times the size of the file (see Limits).
  void account(std::uint64_t bytes) {
    memory_ += bytes;
    if (memory_ > memory_budget_)
      fail(ErrorKind::Limit, "pickle needs more than " + std::to_string(memory_budget_) +
                                 " bytes of memory for its objects (" +
                                 std::to_string(lim_.memory_per_input_byte) + " per byte of the " +
                                 std::to_string(cfg_.input_bytes) + "-byte input plus " +
                                 std::to_string(lim_.memory_allowance) + "; a memory amplification attack?)");
  }
  static std::uint64_t budget(const Limits& lim, std::uint64_t input_bytes) {
    std::uint64_t per_input;
    if (sgckpt::detail::mul_overflows(lim.memory_per_input_byte, input_bytes, per_input)) return UINT64_MAX;
    return lim.memory_allowance > UINT64_MAX - per_input ? UINT64_MAX : lim.memory_allowance + per_input;
  }
  // A container slot: a pointer, twice for a vector's growth.
  static constexpr std::uint64_t kSlotBytes = 2 * sizeof(NodeP);
  // A dict item: the key, the slot, and its index entry.
  static constexpr std::uint64_t kItemBytes = 2 * sizeof(std::pair<Key, NodeP>) + 48;

  // Amplification. A memo reference (BINGET: 2 input bytes) can make the machine copy
  // megabytes: a memoized str used as a key or converted at every reference, a dict passed
  // to Counter() again and again, a shared container copied into the value tree each time it
  // is reached (the billion laughs). Counting objects alone let files of a few hundred bytes
  // or KB allocate tens of GB or run for minutes (tests/hostile/bomb_*). So:
  //  * every repeated copy is charged: one value per kBytesPerValue bytes of str/bytes/key/
  //    big int, one per element of a copied container, shape or stride (the first copy of a
  //    node's data is free: it is bounded by the input, and a large honest str must load);
  //  * charges count toward max_values, and, with the value tree (convert, which also
  //    charges every key path by length), may not exceed kCopyFactor times the objects the
  //    pickle really created plus kCopyAllowance.
  // Real checkpoints share little and copy short strings: they stay far below the bound.
  static constexpr std::uint64_t kBytesPerValue = 16;
  static constexpr std::uint64_t kCopyFactor = 16;
  static constexpr std::uint64_t kCopyAllowance = 100'000;
  std::uint64_t copy_budget() const { return kCopyAllowance + kCopyFactor * nodes_; }
  // Charges `values` if `n`'s data was copied before (see above), and marks it copied.
  void charge_reuse(Node& n, std::uint64_t values) {
    if (n.copied) charge(values);
    n.copied = true;
  }
  void charge(std::uint64_t values) {
    charged_ += values;
    if (nodes_ + charged_ > lim_.max_values)
      fail(ErrorKind::Limit, "pickle creates more than " + std::to_string(lim_.max_values) +
                                 " objects (limit; copies of strings, keys and shapes count by size)");
    if (charged_ > copy_budget())
      fail(ErrorKind::Limit, "pickle copies memoized data worth " + std::to_string(charged_) +
                                 " values, more than " + std::to_string(kCopyFactor) + " times the " +
                                 std::to_string(nodes_) + " objects it creates (an amplification attack?)");
  }
  void push(NodeP n) {
    account(kSlotBytes);
    stack_.push_back(n);
  }
  NodeP pop() {
    if (stack_.size() <= floor())
      fail(ErrorKind::Corrupt,
           marks_.empty() ? "pickle stack underflow" : "pickle stack underflow: value expected above a MARK");
    NodeP n = std::move(stack_.back());
    stack_.pop_back();
    return n;
  }
  NodeP& top() {
    if (stack_.size() <= floor()) fail(ErrorKind::Corrupt, "pickle stack underflow");
    return stack_.back();
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<NodeP> pop_mark() {
    if (marks_.empty()) fail(ErrorKind::Corrupt, "opcode needs a MARK but none is open");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<NodeP> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  template <class X>
  static X* as(NodeP n) {
    return detail::as<X>(n);
  }
  Key key_of(const NodeP& k) {
    if (auto* s = as<std::string>(k)) {
      charge_reuse(*k, s->size() / kBytesPerValue);  // the key is copied (a memoized key may be huge)
      return Key(*s);
    }
    if (auto* i = as<Int>(k)) {
      if (!i->fits_int64())
        fail(ErrorKind::Refused, "dict key " + i->to_string() + " does not fit in 64 bits");
      return Key(i->to_int64());
    }
    fail(ErrorKind::Refused, std::string("unsupported dict key of type ") + node_kind(*k) +
                                 " (only str and int keys are supported)");
  }
  std::int64_t int_of(const NodeP& n, const char* what) {
    auto* i = as<Int>(n);
    if (!i) fail(ErrorKind::Corrupt, std::string(what) + " must be an int, found a " + node_kind(*n));
    if (!i->fits_int64())
      fail(ErrorKind::Corrupt, std::string(what) + " " + i->to_string() + " does not fit in 64 bits");
    return i->to_int64();
  }
  bool bool_of(const NodeP& n, const char* what) {
    if (auto* b = as<bool>(n)) return *b;
    if (auto* i = as<Int>(n)) return i->fits_int64() && i->to_int64() != 0;  // old pickles used ints
    fail(ErrorKind::Corrupt, std::string(what) + " must be a bool, found a " + node_kind(*n));
  }
  Shape int_tuple(const NodeP& n, const char* what) {
    auto* t = as<TupleObj>(n);
    if (!t)
      fail(ErrorKind::Corrupt, std::string(what) + " must be a tuple of ints, found a " + node_kind(*n));
    charge(t->items.size());  // copied into a Shape, once per (memoized, reusable) tuple use
    Shape out;
    out.reserve(t->items.size());
    for (auto& e : t->items) out.push_back(int_of(e, what));
    return out;
  }

  void set_item(DictObj& d, NodeP k, NodeP v) {
    Key key = key_of(k);
    account(kItemBytes + (key.is_str() ? 2 * key.str().size() : 0));
    auto it = d.index.find(key);
    if (it != d.index.end()) {
      d.items[it->second].second = std::move(v);
      return;
    }
    d.index.emplace(key, d.items.size());
    d.items.emplace_back(std::move(key), std::move(v));
  }

  // ---- the opcode loop -------------------------------------------------------------------
  void execute() {
    std::uint64_t ops = 0;
    while (true) {
      op_start_ = pos_;
      if (pos_ >= n_) fail(ErrorKind::Truncated, "truncated pickle: no STOP opcode");
      if (++ops > lim_.max_opcodes)
        fail(ErrorKind::Limit, "pickle executes more than " + std::to_string(lim_.max_opcodes) + " opcodes");
      const std::uint8_t code = p_[pos_++];
      switch (code) {
        case op::PROTO: {
          const auto v = u8();
          if (v < 2 || v > 5)
            fail(ErrorKind::Refused,
                 "unsupported pickle protocol " + std::to_string(v) + " (2 to 5 are supported)");
          break;
        }
        case op::FRAME:
          uint_le(8);
          break;  // framing is only a read-ahead hint
        case op::STOP:
          return;
        case op::MARK:
          marks_.push_back(stack_.size());
          break;
        case op::POP:
          pop();
          break;
        case op::POP_MARK:
          pop_mark();
          break;
        case op::NONE:
          push(make(std::monostate{}));
          break;
        case op::NEWTRUE:
          push(make(true));
          break;
        case op::NEWFALSE:
          push(make(false));
          break;
        case op::BININT:
          push(make(Int(static_cast<std::int32_t>(static_cast<std::uint32_t>(uint_le(4))))));
          break;
        case op::BININT1:
          push(make(Int(static_cast<std::int64_t>(uint_le(1)))));
          break;
        case op::BININT2:
          push(make(Int(static_cast<std::int64_t>(uint_le(2)))));
          break;
        case op::LONG1:
        case op::LONG4: {
          const std::uint64_t len = code == op::LONG1 ? uint_le(1) : uint_le(4);
          if (len > 4096)
            fail(ErrorKind::Limit,
                 "integer of " + std::to_string(len) + " bytes exceeds the limit of 4096 bytes");
          auto b = bytes(len);
          account(len);
          push(make(Int::from_le_bytes(reinterpret_cast<const std::uint8_t*>(b.data()), b.size())));
          break;
        }
        case op::BINFLOAT: {
          const auto b = bytes(8);
          std::uint64_t u = 0;
          for (int i = 0; i < 8; ++i)
            u = (u << 8) | static_cast<std::uint8_t>(b[static_cast<std::size_t>(i)]);
          double d;
          std::memcpy(&d, &u, 8);
          push(make(d));
          break;
        }
        case op::SHORT_BINUNICODE:
          push_str(uint_le(1), false);
          break;
        case op::BINUNICODE:
          push_str(uint_le(4), false);
          break;
        case op::BINUNICODE8:
          push_str(uint_le(8), false);
          break;
        case op::SHORT_BINSTRING:
          push_str(uint_le(1), true);
          break;
        case op::BINSTRING:
          push_str(uint_le(4), true);
          break;
        case op::SHORT_BINBYTES:
          push_bytes(uint_le(1));
          break;
        case op::BINBYTES:
          push_bytes(uint_le(4));
          break;
        case op::BINBYTES8:
          push_bytes(uint_le(8));
          break;
        case op::EMPTY_LIST:
          push(make(ListObj{}));
          break;
        case op::EMPTY_DICT:
          push(make(DictObj{}));
          break;
        case op::EMPTY_TUPLE:
          push(make(TupleObj{}));
          break;
        case op::TUPLE: {
          auto items = pop_mark();
          account(kSlotBytes * items.size());
          push(make(TupleObj{std::move(items)}));
          break;
        }
        case op::TUPLE1: {
          auto a = pop();
          push(make(TupleObj{{std::move(a)}}));
          break;
        }
        case op::TUPLE2: {
          auto b = pop();
          auto a = pop();
          push(make(TupleObj{{std::move(a), std::move(b)}}));
          break;
        }
        case op::TUPLE3: {
          auto c = pop();
          auto b = pop();
          auto a = pop();
          push(make(TupleObj{{std::move(a), std::move(b), std::move(c)}}));
          break;
        }
        case op::APPEND: {
          auto v = pop();
          auto* l = as<ListObj>(top());
          if (!l)
            fail(ErrorKind::Corrupt,
                 std::string("APPEND onto a ") + node_kind(*top()) + " (only lists accept APPEND)");
          account(kSlotBytes);
          l->items.push_back(v);
          break;
        }
        case op::APPENDS: {
          auto items = pop_mark();
          auto* l = as<ListObj>(top());
          if (!l)
            fail(ErrorKind::Corrupt,
                 std::string("APPENDS onto a ") + node_kind(*top()) + " (only lists accept APPENDS)");
          account(kSlotBytes * items.size());
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case op::SETITEM: {
          auto v = pop();
          auto k = pop();
          auto* d = as<DictObj>(top());
          if (!d)
            fail(ErrorKind::Corrupt,
                 std::string("SETITEM on a ") + node_kind(*top()) + " (only dicts accept SETITEM)");
          set_item(*d, k, v);
          break;
        }
        case op::SETITEMS: {
          auto items = pop_mark();
          if (items.size() % 2) fail(ErrorKind::Corrupt, "SETITEMS with an odd number of stack items");
          auto* d = as<DictObj>(top());
          if (!d)
            fail(ErrorKind::Corrupt,
                 std::string("SETITEMS on a ") + node_kind(*top()) + " (only dicts accept SETITEMS)");
          for (std::size_t i = 0; i < items.size(); i += 2) set_item(*d, items[i], items[i + 1]);
          break;
        }
        case op::BINPUT:
          memo_put(uint_le(1));
          break;
        case op::LONG_BINPUT:
          memo_put(uint_le(4));
          break;
        case op::MEMOIZE:
          memo_put(memo_.size());
          break;
        case op::BINGET:
          memo_get(uint_le(1));
          break;
        case op::LONG_BINGET:
          memo_get(uint_le(4));
          break;
        case op::GLOBAL: {
          const std::string module(line());
          const std::string name(line());
          push_global(module, name);
          break;
        }
        case op::STACK_GLOBAL: {
          auto name = pop();
          auto module = pop();
          auto* m = as<std::string>(module);
          auto* n = as<std::string>(name);
          if (!m || !n) fail(ErrorKind::Corrupt, "STACK_GLOBAL needs two str operands");
          push_global(*m, *n);
          break;
        }
        case op::REDUCE: {
          auto args = pop();
          auto callable = pop();
          push(reduce(callable, args));
          break;
        }
        case op::NEWOBJ: {
          auto args = pop();
          auto cls = pop();
          auto* g = as<Global>(cls);
          if (!g || g->id != G::ParameterClass)
            fail(ErrorKind::Refused, "NEWOBJ is only allowed for torch.nn.Parameter, found " +
                                         (g ? "'" + g->name + "'" : std::string("a ") + node_kind(*cls)));
          auto* t = as<TupleObj>(args);
          if (!t || t->items.empty() || t->items.size() > 2 || !as<TensorObj>(t->items[0]))
            fail(ErrorKind::Corrupt, "torch.nn.Parameter(...) needs (tensor[, requires_grad]) arguments");
          charge(2 * as<TensorObj>(t->items[0])->tensor.dim());  // shape and strides are copied
          TensorObj p = *as<TensorObj>(t->items[0]);
          p.parameter = true;
          p.requires_grad = t->items.size() == 2 ? bool_of(t->items[1], "requires_grad") : true;
          push(make(std::move(p)));
          break;
        }
        case op::BUILD: {
          auto state = pop();
          build(top(), state);
          break;
        }
        case op::BINPERSID: {
          auto pid = pop();
          push(persistent(pid));
          break;
        }
        default:
          refuse_opcode(code);
      }
    }
  }

  [[noreturn]] void refuse_opcode(std::uint8_t code) const {
    std::string what;
    switch (code) {
      case op::INST:
        what = "INST (object construction)";
        break;
      case op::OBJ:
        what = "OBJ (object construction)";
        break;
      case op::NEWOBJ_EX:
        what = "NEWOBJ_EX (object construction)";
        break;
      case op::EXT1:
      case op::EXT2:
      case op::EXT4:
        what = "EXT (extension registry)";
        break;
      case op::BYTEARRAY8:
        what = "bytearray value";
        break;
      case op::EMPTY_SET:
      case op::ADDITEMS:
      case op::FROZENSET:
        what = "set value";
        break;
      case op::PERSID:
        what = "text PERSID";
        break;
      case op::NEXT_BUFFER:
      case op::READONLY_BUFFER:
        what = "out-of-band buffer";
        break;
      case op::DUP:
        what = "DUP";
        break;
      default:
        break;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", code);
    fail(ErrorKind::Refused, std::string("refused pickle opcode ") + hex + (what.empty() ? "" : " " + what) +
                                 ": not part of the checkpoint data subset");
  }

  // BINUNICODE is decoded as pickle does (UTF-8, surrogatepass); BINSTRING as torch.load
  // asks (encoding="utf-8", strict). Bytes Python refuses are refused: decoded any other
  // way, two spellings of one key would be two keys here and one in torch.
  void push_str(std::uint64_t len, bool binstring) {
    if (len > lim_.max_string_bytes)
      fail(ErrorKind::Limit, "string of " + std::to_string(len) + " bytes exceeds the limit of " +
                                 std::to_string(lim_.max_string_bytes) + " bytes");
    const auto b = bytes(len);
    if (const auto bad = sgckpt::detail::utf8_first_invalid(b, !binstring); bad != std::string_view::npos)
      fail(binstring ? ErrorKind::Refused : ErrorKind::Corrupt,
           std::string(binstring ? "BINSTRING" : "BINUNICODE") + " text is not valid UTF-8 (byte " +
               std::to_string(bad) + " of " + std::to_string(len) + "); torch refuses it");
    account(len);
    push(make(std::string(b)));
  }

  void push_bytes(std::uint64_t len) {
    if (len > lim_.max_string_bytes)
      fail(ErrorKind::Limit, "bytes of length " + std::to_string(len) + " exceed the limit of " +
                                 std::to_string(lim_.max_string_bytes));
    account(len);
    push(make(Bytes{std::string(bytes(len))}));
  }

  void memo_put(std::uint64_t idx) {
    NodeP v = top();
    auto it = memo_.find(idx);
    if (it == memo_.end()) {
      if (memo_.size() >= lim_.max_memo)
        fail(ErrorKind::Limit, "pickle memo exceeds " + std::to_string(lim_.max_memo) + " entries");
      account(64);  // a hash table node
    }
    memo_[idx] = v;
  }
  void memo_get(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end())
      fail(ErrorKind::Corrupt, "memo index " + std::to_string(idx) + " read before it was written");
    push(it->second);
  }

  void push_global(const std::string& module, const std::string& name) {
    auto g = lookup_global(module, name);
    if (!g)
      fail(ErrorKind::Refused,
           "refused global '" + module + "." + name +
               "': only tensor, storage and container globals are allowed in checkpoint data");
    push(make(std::move(*g)));
  }

  // ---- calls ---------------------------------------------------------------------------
  NodeP reduce(const NodeP& callable, const NodeP& args_node) {
    auto* g = as<Global>(callable);
    if (!g)
      fail(ErrorKind::Refused,
           std::string("REDUCE of a ") + node_kind(*callable) + " (only allowed globals can be called)");
    auto* t = as<TupleObj>(args_node);
    if (!t)
      fail(ErrorKind::Corrupt,
           "REDUCE arguments for '" + g->name + "' must be a tuple, found a " + node_kind(*args_node));
    auto& a = t->items;
    auto argc = [&](std::size_t lo, std::size_t hi) { check_argc(*g, a, lo, hi); };
    switch (g->id) {
      case G::OrderedDict: {
        argc(0, 0);
        DictObj d;
        d.kind = DictKind::OrderedDict;
        return make(std::move(d));
      }
      case G::Counter: {
        argc(0, 1);
        return counter(a);
      }
      case G::CodecsEncode: {
        argc(2, 2);
        auto* text = as<std::string>(a[0]);
        auto* enc = as<std::string>(a[1]);
        if (!text || !enc) fail(ErrorKind::Corrupt, "_codecs.encode needs (str, str) arguments");
        if (*enc != "latin1" && *enc != "latin-1" && *enc != "iso-8859-1")
          fail(ErrorKind::Refused,
               "_codecs.encode with encoding '" + *enc + "' (only latin1 is used for bytes)");
        charge_reuse(*a[0], text->size() / kBytesPerValue);  // a new bytes object per call
        return make(Bytes{utf8_to_latin1(*text)});
      }
      case G::BytesClass: {
        argc(0, 0);
        return make(Bytes{});
      }
      case G::TorchSize: {
        argc(0, 1);
        if (a.empty()) return make(TupleObj{});
        int_tuple(a[0], "torch.Size dimension");  // charges the copy
        return make(TupleObj{as<TupleObj>(a[0])->items});
      }
      case G::RebuildTensor: {
        argc(4, 4);
        return rebuild_tensor(a[0], a[1], a[2], a[3], std::nullopt, false);
      }
      case G::RebuildTensorV2: {
        argc(6, 7);
        if (a.size() == 7) check_metadata(a[6]);
        return rebuild_tensor(a[0], a[1], a[2], a[3], std::nullopt, bool_of(a[4], "requires_grad"));
      }
      case G::RebuildTensorV3: {
        argc(7, 8);
        auto* d = as<Global>(a[6]);
        if (!d || d->id != G::DTypeObject)
          fail(ErrorKind::Corrupt, "_rebuild_tensor_v3 needs a dtype as its 7th argument");
        if (a.size() == 8) check_metadata(a[7]);
        return rebuild_tensor(a[0], a[1], a[2], a[3], d->dtype, bool_of(a[4], "requires_grad"));
      }
      case G::RebuildParameter:
        argc(3, 3);
        return rebuild_parameter(*g, a);
      case G::RebuildParameterWithState:
        argc(4, 4);
        return rebuild_parameter(*g, a);
      case G::RebuildFromTypeV2:
        argc(4, 4);
        return rebuild_from_type(a);
      default:
        fail(ErrorKind::Refused, "'" + g->name + "' cannot be called");
    }
  }

  void check_argc(const Global& g, const std::vector<NodeP>& a, std::size_t lo, std::size_t hi) {
    if (a.size() < lo || a.size() > hi)
      fail(ErrorKind::Corrupt, "'" + g.name + "' called with " + std::to_string(a.size()) +
                                   " arguments (expects " + std::to_string(lo) +
                                   (hi != lo ? " to " + std::to_string(hi) : "") + ")");
  }

  // collections.Counter() or Counter(dict): a copy of the dict.
  NodeP counter(const std::vector<NodeP>& a) {
    DictObj d;
    if (a.size() == 1) {
      auto* src = as<DictObj>(a[0]);
      if (!src)
        fail(ErrorKind::Corrupt,
             "collections.Counter(...) argument must be a dict, found a " + std::string(node_kind(*a[0])));
      std::uint64_t key_bytes = 0;
      for (auto& kv : src->items) key_bytes += kv.first.is_str() ? kv.first.str().size() : 0;
      charge_reuse(*a[0], src->items.size() + 2 * key_bytes / kBytesPerValue);  // a full copy (items + index)
      account(src->items.size() * kItemBytes + 2 * key_bytes);
      d = *src;
      d.attr_index.clear();
      d.attrs.clear();
    }
    d.kind = DictKind::Counter;
    return make(std::move(d));
  }

  // torch._utils._rebuild_parameter(data, requires_grad, hooks) and
  // _rebuild_parameter_with_state(..., state): the tensor as a Parameter (state must be empty).
  NodeP rebuild_parameter(const Global& g, const std::vector<NodeP>& a) {
    auto* data = as<TensorObj>(a[0]);
    if (!data)
      fail(ErrorKind::Corrupt, "'" + g.name + "' needs a tensor, found a " + std::string(node_kind(*a[0])));
    if (a.size() == 4) require_empty_state(a[3], g.name);
    charge(2 * data->tensor.dim());  // shape and strides are copied
    TensorObj p = *data;
    p.parameter = true;
    p.requires_grad = bool_of(a[1], "requires_grad");
    return make(std::move(p));
  }

  // torch._tensor._rebuild_from_type_v2(func, cls, args, state).
  // torch: ret = func(*args); ret.as_subclass(cls); _set_obj_state(ret, state). func must be
  // a plain tensor rebuild: anything else (another _rebuild_from_type_v2, thousands deep,
  // overflowed the stack; OrderedDict yielded a dict where torch expects a tensor) is
  // refused, and so is a state, which torch applies with setattr (state {"data": t}
  // replaces the weights).
  NodeP rebuild_from_type(const std::vector<NodeP>& a) {
    auto* fn = as<Global>(a[0]);
    auto* cls = as<Global>(a[1]);
    if (!fn || !cls) fail(ErrorKind::Corrupt, "_rebuild_from_type_v2 needs a function and a class");
    if (fn->id != G::RebuildTensor && fn->id != G::RebuildTensorV2 && fn->id != G::RebuildTensorV3)
      fail(
          ErrorKind::Refused,
          "_rebuild_from_type_v2 must call a tensor rebuild function (torch._utils._rebuild_tensor*), not '" +
              fn->name + "'");
    if (cls->id != G::TensorClass && cls->id != G::ParameterClass)
      fail(ErrorKind::Refused,
           "_rebuild_from_type_v2 of class '" + cls->name + "' (only torch.Tensor and torch.nn.Parameter)");
    require_empty_state(a[3], "_rebuild_from_type_v2");
    NodeP r = reduce(a[0], a[2]);
    if (cls->id == G::ParameterClass) as<TensorObj>(r)->parameter = true;
    return r;
  }

  // The text of a latin1-encoded bytes object: every code point must be below 256.
  std::string utf8_to_latin1(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else if ((c == 0xC2 || c == 0xC3) && i + 1 < s.size() &&
                 (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) {
        out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F)));
        ++i;
      } else {
        fail(ErrorKind::Corrupt, "_codecs.encode text is not latin1");
      }
    }
    return out;
  }

  // torch applies a rebuilt tensor's state with setattr (torch._utils._set_obj_state): a
  // non-empty state can replace its data. Empty means None, {} or a (dict, slots) pair of
  // those, which torch leaves alone.
  void require_empty_state(NodeP state, const std::string& who) {
    auto empty = [&](NodeP x) {
      if (as<std::monostate>(x)) return true;
      auto* d = as<DictObj>(x);
      return d && d->items.empty() && d->attrs.empty();
    };
    if (empty(state)) return;
    if (auto* t = as<TupleObj>(state); t && t->items.size() == 2 && empty(t->items[0]) && empty(t->items[1]))
      return;
    fail(ErrorKind::Refused,
         "'" + who +
             "' with a non-empty state (torch would set it as attributes of the tensor, which can replace "
             "its data): refused");
  }

  void check_metadata(const NodeP& m) {
    if (as<std::monostate>(m)) return;
    auto* d = as<DictObj>(m);
    if (!d) fail(ErrorKind::Corrupt, "tensor metadata must be a dict");
    for (auto& [k, v] : d->items) {
      auto* b = as<bool>(v);
      if (b && !*b) continue;
      fail(ErrorKind::Refused,
           "tensor metadata '" + k.to_string() + "' (conjugate/negative views) is not supported");
    }
  }

  NodeP rebuild_tensor(const NodeP& storage, const NodeP& offset, const NodeP& size, const NodeP& stride,
                       std::optional<DType> dtype, bool requires_grad) {
    auto* s = as<StorageObj>(storage);
    if (!s)
      fail(ErrorKind::Corrupt, std::string("tensor rebuild needs a storage, found a ") + node_kind(*storage));
    if (!dtype) {
      if (!s->dtype)
        fail(ErrorKind::Corrupt,
             "tensor rebuild from an UntypedStorage needs _rebuild_tensor_v3 and a dtype");
      dtype = s->dtype;
    }
    const std::int64_t off = int_of(offset, "storage offset");
    Shape sz = int_tuple(size, "tensor size");
    Shape st = int_tuple(stride, "tensor stride");
    try {
      TensorObj t{Tensor::view_of(s->storage, *dtype, off, std::move(sz), std::move(st)), requires_grad,
                  false};
      return make(std::move(t));
    } catch (const Error& e) {
      fail(e.kind() == ErrorKind::Usage ? ErrorKind::Corrupt : e.kind(),
           e.message() + " (storage '" + s->key + "')");
    }
  }

  void build(const NodeP& target, const NodeP& state) {
    if (auto* d = as<DictObj>(target)) {
      if (d->kind != DictKind::OrderedDict) fail(ErrorKind::Refused, "BUILD on a plain dict is not allowed");
      auto* st = as<DictObj>(state);
      if (!st)
        fail(ErrorKind::Corrupt,
             std::string("BUILD state for an OrderedDict must be a dict, found a ") + node_kind(*state));
      // Indexed by name: a linear search per item made one BUILD of n attributes O(n^2)
      // (100k names in a 1.2 MB file ran for minutes). Each BUILD is charged its items, as a
      // memoized state dict can be BUILT again and again for 2 bytes each.
      charge_reuse(*state, st->items.size());
      for (auto& [k, v] : st->items) {
        if (!k.is_str()) fail(ErrorKind::Corrupt, "OrderedDict attribute names must be str");
        auto [it, inserted] = d->attr_index.try_emplace(k.str(), d->attrs.size());
        if (inserted) {
          charge(2 * k.str().size() / kBytesPerValue);
          account(kItemBytes + 2 * k.str().size());
          d->attrs.emplace_back(k.str(), v);
        } else {
          d->attrs[it->second].second = v;
        }
      }
      return;
    }
    if (as<TensorObj>(target))
      // torch's loaders call tensor.set_(*state) or Parameter.__setstate__(state), which replace
      // the data: this reader would keep other weights than torch shows. torch itself never
      // writes it (tensors and Parameters rebuild through torch._utils).
      fail(ErrorKind::Refused, "BUILD on a tensor (torch would replace its data with the state): refused");
    fail(ErrorKind::Refused, std::string("BUILD on a ") + node_kind(*target) + " is not allowed");
  }

  NodeP persistent(const NodeP& pid) {
    auto* t = as<TupleObj>(pid);
    if (!t)
      fail(ErrorKind::Corrupt, std::string("persistent id must be a tuple, found a ") + node_kind(*pid));
    auto& a = t->items;
    const std::size_t arity = cfg_.legacy ? 6 : 5;
    if (a.empty() || !as<std::string>(a[0]) || *as<std::string>(a[0]) != "storage") {
      if (!a.empty() && as<std::string>(a[0]) && *as<std::string>(a[0]) == "module")
        fail(ErrorKind::Refused,
             "the checkpoint pickles a whole nn.Module (persistent id 'module'); only state_dicts can be "
             "read");
      fail(ErrorKind::Corrupt, "persistent id is not a ('storage', ...) tuple");
    }
    if (a.size() != arity)
      fail(ErrorKind::Corrupt, "storage persistent id has " + std::to_string(a.size()) +
                                   " fields (expected " + std::to_string(arity) + ")");
    auto* cls = as<Global>(a[1]);
    if (!cls || (cls->id != G::StorageClass && cls->id != G::UntypedStorage))
      fail(ErrorKind::Corrupt, "storage persistent id names no storage class");
    auto* key = as<std::string>(a[2]);
    if (!key) {
      if (auto* ik = as<Int>(a[2])) {  // tolerate int keys: treat them as their decimal text
        a[2] = make(ik->to_string());
        key = as<std::string>(a[2]);
      } else {
        fail(ErrorKind::Corrupt, "storage key must be a str");
      }
    }
    auto* loc = as<std::string>(a[3]);
    if (!loc) fail(ErrorKind::Corrupt, "storage location must be a str");
    const std::int64_t numel = int_of(a[4], "storage size");
    if (numel < 0) fail(ErrorKind::Corrupt, "negative storage size " + std::to_string(numel));
    std::optional<DType> dtype;
    if (cls->id == G::StorageClass) dtype = cls->dtype;
    const std::size_t isz = dtype ? itemsize(*dtype) : 1;
    std::uint64_t nbytes;
    if (sgckpt::detail::mul_overflows(static_cast<std::uint64_t>(numel), isz, nbytes))
      fail(ErrorKind::Limit, "storage '" + *key + "' size overflows 64 bits");

    NodeP base;
    if (auto it = storages_.find(*key); it != storages_.end()) {
      auto& s = *as<StorageObj>(it->second);
      if (s.dtype != dtype || s.numel != static_cast<std::uint64_t>(numel))
        fail(ErrorKind::Refused, "storage '" + *key + "' is declared twice with different types or sizes (" +
                                     describe(s.dtype, s.numel) + " and " +
                                     describe(dtype, static_cast<std::uint64_t>(numel)) + ")");
      base = it->second;
    } else {
      StorageRequest req{*key, dtype, static_cast<std::uint64_t>(numel), nbytes, *loc};
      std::shared_ptr<Storage> st;
      try {
        st = resolver_(req);
      } catch (const Error& e) {
        throw Error(e.kind(), e.message(), ErrorContext::at_offset(op_start_))
            .with_record(e.context().record);
      }
      if (!st || st->nbytes() != nbytes)
        fail(ErrorKind::Corrupt, "storage '" + *key + "' has the wrong size");
      base = make(StorageObj{std::move(st), dtype, static_cast<std::uint64_t>(numel), *key});
      storages_.emplace(*key, base);
    }
    if (!cfg_.legacy || as<std::monostate>(a[5])) return base;

    // Legacy view metadata: (view_key, offset, size) selects a slice of the storage.
    auto* vm = as<TupleObj>(a[5]);
    if (!vm || vm->items.size() != 3 || !as<std::string>(vm->items[0]))
      fail(ErrorKind::Corrupt, "legacy storage view metadata must be (str, int, int)");
    const std::string& vkey = *as<std::string>(vm->items[0]);
    const std::int64_t voff = int_of(vm->items[1], "storage view offset");
    const std::int64_t vsize = int_of(vm->items[2], "storage view size");
    if (auto it = storages_.find(vkey); it != storages_.end()) return it->second;
    auto& bs = *as<StorageObj>(base);
    if (voff < 0 || vsize < 0 || static_cast<std::uint64_t>(voff) > bs.numel ||
        static_cast<std::uint64_t>(vsize) > bs.numel - static_cast<std::uint64_t>(voff))
      fail(ErrorKind::Corrupt, "legacy storage view [" + std::to_string(voff) + ", +" +
                                   std::to_string(vsize) + ") lies outside storage '" + *key + "' of " +
                                   std::to_string(bs.numel) + " elements");
    auto view = Storage::view(bs.storage, bs.storage->data() + static_cast<std::size_t>(voff) * isz,
                              static_cast<std::size_t>(vsize) * isz);
    NodeP vn = make(StorageObj{std::move(view), dtype, static_cast<std::uint64_t>(vsize), vkey});
    storages_.emplace(vkey, vn);
    return vn;
  }

  static std::string describe(std::optional<DType> d, std::uint64_t numel) {
    return (d ? std::string(info(*d).storage_class) : std::string("UntypedStorage")) + " of " +
           std::to_string(numel);
  }

  // ---- graph -> Value ------------------------------------------------------------------
  // The key path of the node being converted lives in path_ (one buffer for the walk).
  KeyPath::Level path_level(const Key& k) { return k.is_str() ? path_.key(k.str()) : path_.key(k.integer()); }

  Value convert(Node& n, std::uint32_t depth) {
    const std::string& path = path_.str();
    if (depth > lim_.max_depth)
      throw Error(ErrorKind::Limit,
                  "containers nested deeper than " + std::to_string(lim_.max_depth) + " levels",
                  ErrorContext::at_key(path));
    // A shared node is converted each time it is reached. Every value, and its key path by
    // length, counts toward max_values. Copies count toward the amplification budget
    // (copy_budget): a shared container reached again copies its whole subtree (the billion
    // laughs), and a leaf reached again copies its str/bytes/big int/shape, charged by size
    // as in charge(). Reaching a small leaf again (torch memoizes a repeated str: 300k
    // references to one str are legitimate) costs no more than any other value.
    const bool again = n.converted;
    n.converted = true;
    const NodeKind kind = n.kind();
    const bool container = kind == NodeKind::List || kind == NodeKind::Tuple || kind == NodeKind::Dict;
    const std::uint64_t base = 1 + path.size() / kBytesPerValue;
    const std::uint64_t size_cost = again ? copy_cost(n) : 0;
    out_values_ += base + size_cost;
    if (out_values_ > lim_.max_values)
      throw Error(ErrorKind::Limit,
                  "checkpoint expands to more than " + std::to_string(lim_.max_values) +
                      " values (limit; shared containers are copied, strings count by size)",
                  ErrorContext::at_key(path));
    const bool copy_starts = again && container;
    copies_ += size_cost + (in_copy_ > 0 || copy_starts ? base : 0);
    if (copies_ > copy_budget())
      throw Error(ErrorKind::Limit,
                  "checkpoint expands to " + std::to_string(out_values_) + " values, " +
                      std::to_string(copies_) + " of them copies of shared data, from only " +
                      std::to_string(nodes_) + " pickled objects (a billion-laughs amplification attack?)",
                  ErrorContext::at_key(path));
    if (n.on_path)
      throw Error(ErrorKind::Refused, "the object contains itself (reference cycle)",
                  ErrorContext::at_key(path));
    struct Guard {
      Node& n;
      std::uint32_t& in_copy;
      bool copy;
      Guard(Node& x, std::uint32_t& c, bool cp) : n(x), in_copy(c), copy(cp) {
        n.on_path = true;
        if (copy) ++in_copy;
      }
      ~Guard() {
        n.on_path = false;
        if (copy) --in_copy;
      }
    } guard(n, in_copy_, copy_starts);
    account(sizeof(Value) + leaf_bytes(n));
    switch (kind) {
      case NodeKind::None:
        return Value();
      case NodeKind::Bool:
        return Value(*as<bool>(&n));
      case NodeKind::Int:
        return Value(*as<Int>(&n));
      case NodeKind::Float:
        return Value(*as<double>(&n));
      case NodeKind::Str:
        return Value(*as<std::string>(&n));
      case NodeKind::Bytes:
        return Value(*as<Bytes>(&n));
      case NodeKind::List:
      case NodeKind::Tuple:
      case NodeKind::Dict:
        return convert_container(n, kind, depth);
      case NodeKind::Tensor: {
        auto& t = *as<TensorObj>(&n);
        return Value(TensorValue<Tensor>{t.tensor, t.requires_grad, t.parameter});
      }
      case NodeKind::Storage: {
        // A bare storage (torch.save(tensor.storage())) reads as a 1-D tensor over all of it.
        auto& s = *as<StorageObj>(&n);
        const DType d = s.dtype.value_or(DType::UInt8);
        return Value(Tensor::view_of(s.storage, d, 0, {static_cast<std::int64_t>(s.numel)}, {1}));
      }
      case NodeKind::Global:
        break;
    }
    throw Error(ErrorKind::Refused,
                "a bare global '" + as<Global>(&n)->name + "' cannot be represented as checkpoint data",
                ErrorContext::at_key(path));
  }

  // What converting a node again copies, in values: its str / bytes / big int by size, a
  // tensor's shape and strides, a dict's key and attribute names.
  static std::uint64_t copy_cost(Node& n) {
    std::uint64_t cost = 0;
    if (auto* s = as<std::string>(&n)) cost += s->size() / kBytesPerValue;
    if (auto* b = as<Bytes>(&n)) cost += b->data.size() / kBytesPerValue;
    if (auto* i = as<Int>(&n); i && !i->fits_int64()) cost += 4096 / kBytesPerValue;  // LONG: <= 4096 bytes
    if (auto* t = as<TensorObj>(&n)) cost += 2 * t->tensor.dim();
    if (auto* d = as<DictObj>(&n)) {
      for (auto& kv : d->items) cost += kv.first.is_str() ? kv.first.str().size() / kBytesPerValue : 0;
      for (auto& kv : d->attrs) cost += kv.first.size() / kBytesPerValue;
    }
    return cost;
  }

  // A list, tuple or dict and everything below it.
  Value convert_container(Node& n, NodeKind kind, std::uint32_t depth) {
    if (kind == NodeKind::Dict) {
      auto& d = *as<DictObj>(&n);
      Dict out(d.kind);
      for (auto& [k, v] : d.items) {
        auto level = path_level(k);
        out.set(k, convert(*v, depth + 1));
      }
      // Names are unique (BUILD indexes them): append directly, as set_attribute's linear
      // search per name would make this loop quadratic in the number of attributes.
      for (auto& [k, v] : d.attrs) {
        auto level = path_.attribute(k);
        out.attributes().emplace_back(k, convert(*v, depth + 1));
      }
      return Value(std::move(out));
    }
    auto& items = kind == NodeKind::List ? as<ListObj>(&n)->items : as<TupleObj>(&n)->items;
    Value::List out;
    out.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      auto level = path_.index(i);
      out.push_back(convert(*items[i], depth + 1));
    }
    return kind == NodeKind::List ? Value::make_list(std::move(out)) : Value::make_tuple(std::move(out));
  }

  // Bytes a converted leaf copies (its str, bytes or big int).
  static std::uint64_t leaf_bytes(Node& n) {
    if (auto* s = as<std::string>(&n)) return s->size();
    if (auto* b = as<Bytes>(&n)) return b->data.size();
    if (auto* i = as<Int>(&n); i && !i->fits_int64()) return 4096;
    return 0;
  }

  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::size_t op_start_ = 0;
  const StorageResolver& resolver_;
  const ReaderConfig& cfg_;
  const Limits& lim_;
  std::uint64_t memory_budget_;
  std::uint64_t memory_ = 0;  // bytes of nodes, slots and strings (see account)
  NodeArena arena_;           // owns every node; declared before the containers that point into it
  std::vector<NodeP> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, NodeP, sgckpt::detail::KeyedHash> memo_;
  std::unordered_map<std::string, NodeP, sgckpt::detail::KeyedHash> storages_;
  std::uint64_t nodes_ = 0;    // objects created (make)
  std::uint64_t charged_ = 0;  // copies charged (charge)
  std::uint64_t out_values_ = 0;
  std::uint64_t copies_ = 0;   // values converted as copies of shared data (see convert)
  std::uint32_t in_copy_ = 0;  // > 0 while converting a shared container reached again
  KeyPath path_;               // key path of the node convert() is at
};

}  // namespace detail

// Runs one pickle (up to its STOP) and returns its value. `consumed`, if given, receives
// the number of bytes read, for streams that hold several pickles back to back.
inline Value read(std::span<const std::byte> data, const StorageResolver& resolver,
                  const ReaderConfig& config = {}, std::size_t* consumed = nullptr) {
  detail::Machine m(data, resolver, config);
  Value v = m.run();
  if (consumed) *consumed = m.consumed();
  return v;
}

}  // namespace sgckpt::pickle
