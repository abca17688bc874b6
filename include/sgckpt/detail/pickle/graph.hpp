// sgckpt/detail/pickle/graph.hpp: the objects one pickle creates, as a graph of shared nodes (a
// memo reference yields the same object, as in Python), with their arena and their budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/keyed_hash.hpp"
#include "sgckpt/detail/pickle/budget.hpp"
#include "sgckpt/detail/pickle/globals.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::pickle {

struct Node;
// Nodes live in the graph's arena (NodeArena) and point at each other with raw pointers:
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
  bool torch_size = false;  // made by torch.Size(...)
};
struct DictObj {
  DictKind kind = DictKind::Dict;
  std::vector<std::pair<Key, NodeP>> items;
  // Items keyed by an object (DCP metadata's MetadataIndex); never made from a .pth pickle,
  // whose vocabulary has no objects.
  std::vector<std::pair<NodeP, NodeP>> object_items;
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
// numpy.dtype(code, False, True): its element type once BUILD has given the byte order.
struct NumpyDTypeObj {
  DType dtype = DType::Float64;
  char byteorder = 0;  // '<', '>', '|' ('=' is stored as '<'); 0 until BUILD
};
// numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') before its BUILD (empty data), or a
// numpy scalar / array with its elements.
struct NumpyObj {
  NumpyValue value;
  bool built = false;
};
// An instance of one of DCP's metadata dataclasses (dcp_objects.hpp): its class, and the state
// BUILD gave it (a dict of fields, or TensorProperties' tuple).
struct ObjectObj {
  std::string cls;  // the class's name, e.g. "TensorStorageMetadata"
  std::vector<std::pair<std::string, NodeP>> fields;
  NodeP tuple_state = nullptr;
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
  Bytes,
  Device,
  NumpyDType,
  Numpy,
  Object
};

// The large, rare alternatives are boxed so that every node stays small.
template <class X>
inline constexpr bool kBoxed =
    std::is_same_v<X, DictObj> || std::is_same_v<X, TensorObj> || std::is_same_v<X, Global> ||
    std::is_same_v<X, StorageObj> || std::is_same_v<X, TorchDevice> || std::is_same_v<X, NumpyDTypeObj> ||
    std::is_same_v<X, NumpyObj> || std::is_same_v<X, ObjectObj>;

struct Node {
  std::variant<std::monostate, bool, Int, double, std::string, ListObj, TupleObj, std::unique_ptr<DictObj>,
               std::unique_ptr<TensorObj>, std::unique_ptr<Global>, std::unique_ptr<StorageObj>, Bytes,
               std::unique_ptr<TorchDevice>, std::unique_ptr<NumpyDTypeObj>, std::unique_ptr<NumpyObj>,
               std::unique_ptr<ObjectObj>>
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
    case NodeKind::Device:
      return "torch.device";
    case NodeKind::NumpyDType:
      return "numpy.dtype";
    case NodeKind::Numpy:
      return "numpy array";
    case NodeKind::Object:
      return "object";
  }
  return "?";
}

// What the budget counts for a container slot: a pointer, twice for a vector's growth.
inline constexpr std::uint64_t kSlotBytes = 2 * sizeof(NodeP);
// A dict item: the key, the slot, and its index entry.
inline constexpr std::uint64_t kItemBytes = 2 * sizeof(std::pair<Key, NodeP>) + 48;

// The nodes of one pickle, what they cost, and where the machine is (every error names it).
class Graph {
 public:
  Graph(const Limits& limits, std::uint64_t input_bytes, std::uint64_t pickle_bytes)
      : budget(limits, input_bytes, pickle_bytes, op_start) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  std::size_t op_start = 0;  // byte offset of the opcode being run
  Budget budget;

  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const {
    throw Error(kind, msg, ErrorContext::at_offset(op_start));
  }

  // A new node holding `x`, counted by the budget.
  template <class X>
  NodeP make(X x) {
    budget.object(sizeof(Node) + (kBoxed<X> ? sizeof(X) : 0));
    NodeP n = arena_.make();
    if constexpr (kBoxed<X>)
      n->v = std::make_unique<X>(std::move(x));
    else
      n->v = std::move(x);
    return n;
  }
  // Charges `values` if `n`'s data was copied before (see Budget), and marks it copied.
  void charge_reuse(Node& n, std::uint64_t values) {
    if (n.copied) budget.charge(values);
    n.copied = true;
  }

 private:
  NodeArena arena_;  // owns every node
};

}  // namespace sgckpt::detail::pickle
