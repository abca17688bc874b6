// sgckpt/detail/pickle/machine.hpp: the opcode machine: the pickle opcodes of protocols 2 to 5
// that describe data (containers, scalars, strings, memo, persistent ids), and nothing else.
//
// Everything else is refused with the opcode's byte offset. Container operations are
// type-checked (SETITEM only on dicts, APPEND only on lists: CVE-2026-24747). Globals, calls,
// BUILD and persistent ids are torch's (globals.hpp, rebuild.hpp); every
// resource is counted by the budget (budget.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/detail/keyed_hash.hpp"
#include "sgckpt/detail/little_endian.hpp"
#include "sgckpt/detail/pickle/graph.hpp"
#include "sgckpt/detail/pickle/ops.hpp"
#include "sgckpt/detail/pickle/rebuild.hpp"
#include "sgckpt/detail/utf8.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt::detail::pickle {

struct ReaderConfig {
  Limits limits;
  // Pre-1.6 legacy stream: storage persistent ids are 6-tuples with view metadata.
  bool legacy = false;
  // Size of the whole input (the file) that the memory budget scales with; 0: the pickle's.
  std::uint64_t input_bytes = 0;
  // numpy scalars and arrays are read (LoadOptions::numpy).
  bool numpy = true;
  // A DCP .metadata pickle: DCP's vocabulary instead of the .pth one (dcp_objects.hpp).
  bool dcp = false;
};

class Machine {
 public:
  Machine(std::span<const std::byte> data, const StorageResolver& resolver, const ReaderConfig& config)
      : p_(reinterpret_cast<const std::uint8_t*>(data.data())),
        n_(data.size()),
        lim_(config.limits),
        graph_(config.limits, config.input_bytes, data.size()),
        torch_(graph_, resolver, config.legacy, config.numpy, config.dcp) {}

  // Runs the opcodes up to STOP and returns the one object left on the stack. The graph
  // lives as long as the machine.
  Node& run() {
    if (n_ > lim_.max_pickle_bytes)
      throw Error(ErrorKind::Limit, "pickle of " + std::to_string(n_) + " bytes exceeds the limit of " +
                                        std::to_string(lim_.max_pickle_bytes) + " bytes");
    execute();
    if (stack_.size() != 1 || !marks_.empty())
      throw Error(ErrorKind::Corrupt,
                  "malformed pickle: STOP with " + std::to_string(stack_.size()) + " values and " +
                      std::to_string(marks_.size()) + " open marks on the stack (expected exactly one value)",
                  ErrorContext::at_offset(graph_.op_start));
    return *stack_.back();
  }

  // Bytes consumed up to and including STOP (legacy streams hold several pickles back to back).
  std::size_t consumed() const noexcept { return pos_; }

  // The budget, for the conversion into the value tree that follows.
  Budget& budget() noexcept { return graph_.budget; }

 private:
  // ---- errors and input ------------------------------------------------------------------
  [[noreturn]] void fail(ErrorKind kind, const std::string& msg) const { graph_.fail(kind, msg); }

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
  static constexpr std::uint64_t kBytesPerValue = Budget::kBytesPerValue;
  template <class X>
  NodeP make(X x) {
    return graph_.make(std::move(x));
  }
  void account(std::uint64_t bytes) { graph_.budget.account(bytes); }
  void charge_reuse(Node& n, std::uint64_t values) { graph_.charge_reuse(n, values); }

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

  void set_item(DictObj& d, NodeP k, NodeP v) {
    if (as<ObjectObj>(k)) {  // a MetadataIndex key (DCP); kept in order, checked by the DCP reader
      account(kItemBytes);
      d.object_items.emplace_back(k, v);
      return;
    }
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
    while (true) {
      graph_.op_start = pos_;
      if (pos_ >= n_) fail(ErrorKind::Truncated, "truncated pickle: no STOP opcode");
      graph_.budget.opcode();
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
          push(torch_.global(module, name));
          break;
        }
        case op::STACK_GLOBAL: {
          auto name = pop();
          auto module = pop();
          auto* m = as<std::string>(module);
          auto* n = as<std::string>(name);
          if (!m || !n) fail(ErrorKind::Corrupt, "STACK_GLOBAL needs two str operands");
          push(torch_.global(*m, *n));
          break;
        }
        case op::REDUCE: {
          auto args = pop();
          auto callable = pop();
          push(torch_.reduce(callable, args));
          break;
        }
        case op::NEWOBJ: {
          auto args = pop();
          auto cls = pop();
          push(torch_.new_object(cls, args));
          break;
        }
        case op::BUILD: {
          auto state = pop();
          torch_.build(top(), state);
          break;
        }
        case op::BINPERSID: {
          auto pid = pop();
          push(torch_.persistent(pid));
          break;
        }
        default:
          refuse_opcode(code);
      }
    }
  }

  [[noreturn]] void refuse_opcode(std::uint8_t code) const {
    const std::string what = op::refused_what(code);
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

  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const Limits& lim_;
  Graph graph_;  // owns every node; declared before the containers that point into it
  Rebuilder torch_;
  std::vector<NodeP> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, NodeP, sgckpt::detail::KeyedHash> memo_;
};

}  // namespace sgckpt::detail::pickle
