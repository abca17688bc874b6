// The restricted pickle machine and the weights_only-safe pickle writer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "pickle_builder.hpp"
#include "sgckpt/detail/pickle/reader.hpp"
#include "sgckpt/detail/pickle/writer.hpp"
#include "sgckpt/io/pth.hpp"

using namespace sgckpt;

using namespace sgckpt::test;

namespace {

// Resolver handing out zero-filled storages of the requested size, remembering requests.
struct FakeStorages {
  std::vector<pickle::StorageRequest> requests;
  pickle::StorageResolver resolver() {
    return [this](const pickle::StorageRequest& r) {
      requests.push_back(r);
      auto s = Storage::zeros(r.nbytes);
      for (std::size_t i = 0; i < r.nbytes; ++i) s->mutable_data()[i] = static_cast<std::byte>(i);
      return s;
    };
  }
};

}  // namespace

TEST_SUITE("pickle") {
  TEST_CASE("scalars keep their Python type: bool, int, float, str, None are distinct") {
    P p;
    p.raw({op::MARK, op::NEWTRUE, op::NEWFALSE}).i1(0).raw({op::NONE});
    p.raw({op::BINFLOAT, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0});       // 1.5, big-endian
    p.str("héllo").raw({op::BININT, 0xFF, 0xFF, 0xFF, 0xFF});  // -1
    p.raw({op::LONG1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1});          // 2**64
    p.raw({op::TUPLE}).stop();
    Value v = read(p);
    REQUIRE(v.is_tuple());
    CHECK(v[0].as_bool() == true);
    CHECK(v[1].as_bool() == false);
    CHECK(v[2].is_int());
    CHECK(v[2].as_int() == 0);
    CHECK(v[3].is_none());
    CHECK(v[4].as_float() == 1.5);
    CHECK(v[5].as_str() == "héllo");
    CHECK(v[6].as_int() == -1);
    CHECK(v[7].as_big_int().to_string() == "18446744073709551616");
    CHECK_THROWS_AS(v[7].as_int(), Error);
  }

  TEST_CASE("the memo yields the same object, so a dict filled after BINPUT is seen filled") {
    P p;
    p.raw({op::EMPTY_LIST, op::EMPTY_DICT, op::BINPUT, 0}).str("k").i1(7).raw({op::SETITEM, op::APPEND});
    p.raw({op::BINGET, 0, op::APPEND}).stop();
    Value v = read(p);
    REQUIRE(v.size() == 2);
    CHECK(v[0].at("k").as_int() == 7);
    CHECK(v[1].at("k").as_int() == 7);
  }

  TEST_CASE("OrderedDict with _metadata attributes, and Counter") {
    P p;
    p.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE});
    p.str("a").i1(1).raw({op::SETITEM, op::EMPTY_DICT}).str("_metadata");
    p.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE}).str("").raw({op::EMPTY_DICT});
    p.str("version").i1(2).raw({op::SETITEM, op::SETITEM, op::SETITEM, op::BUILD}).stop();
    Value v = read(p);
    CHECK(v.dict().kind() == DictKind::OrderedDict);
    CHECK(v.at("a").as_int() == 1);
    const Value* md = v.dict().attribute("_metadata");
    REQUIRE(md);
    CHECK(md->at("").at("version").as_int() == 2);

    P c;
    c.global("collections", "Counter")
        .raw({op::EMPTY_DICT})
        .i1(30)
        .i1(1)
        .raw({op::SETITEM, op::TUPLE1, op::REDUCE})
        .stop();
    Value counter = read(c);
    CHECK(counter.dict().kind() == DictKind::Counter);
    CHECK(counter.at(30).as_int() == 1);
  }

  TEST_CASE("code execution attempts are refused, naming the global and its offset") {
    P sys;
    sys.global("os", "system").str("echo pwned").raw({op::TUPLE1, op::REDUCE}).stop();
    const std::string msg = refusal(sys);
    CHECK(msg.find("os.system") != std::string::npos);
    CHECK(msg.find("byte offset 2") != std::string::npos);
    CHECK(refusal(P().global("posix", "system").stop()).find("posix.system") != std::string::npos);
    CHECK(refusal(P().global("__builtin__", "eval").stop()).find("__builtin__.eval") != std::string::npos);
    CHECK(refusal(P().global("torch", "load").stop()).find("torch.load") != std::string::npos);
    // STACK_GLOBAL goes through the same allowlist.
    CHECK(refusal(P().str("os").str("system").raw({op::STACK_GLOBAL}).stop()).find("os.system") !=
          std::string::npos);
    // Object-building opcodes are not part of the data subset at all.
    CHECK(refusal(P().raw({op::MARK, op::INST, 'o', 's', '\n', 's', '\n'}).stop()).find("INST") !=
          std::string::npos);
    CHECK(
        refusal(P().raw({op::MARK}).global("collections", "OrderedDict").raw({op::OBJ}).stop()).find("OBJ") !=
        std::string::npos);
    // Calling something that is allowed as a name but is not callable.
    CHECK(refusal(P().global("torch", "FloatStorage").raw({op::EMPTY_TUPLE, op::REDUCE}).stop())
              .find("cannot be called") != std::string::npos);
  }

  TEST_CASE("container operations are type-checked") {
    CHECK(refusal(P().raw({op::EMPTY_LIST}).str("k").i1(1).raw({op::SETITEM}).stop())
              .find("SETITEM on a list") != std::string::npos);
    CHECK(refusal(P().raw({op::EMPTY_DICT}).i1(1).raw({op::APPEND}).stop()).find("APPEND onto a dict") !=
          std::string::npos);
    CHECK(refusal(P().raw({op::EMPTY_TUPLE, op::MARK}).i1(1).raw({op::APPENDS}).stop())
              .find("APPENDS onto a tuple") != std::string::npos);
    CHECK(
        refusal(P().raw({op::EMPTY_DICT, op::EMPTY_LIST, op::EMPTY_LIST, op::SETITEM}).stop()).find("key") !=
        std::string::npos);
    CHECK(refusal(P().raw({op::EMPTY_LIST, op::EMPTY_DICT, op::BUILD}).stop()).find("BUILD on a list") !=
          std::string::npos);
  }

  TEST_CASE("malformed streams: underflow, marks, memo, truncation") {
    CHECK(refusal(P().raw({op::APPEND}).stop()).find("underflow") != std::string::npos);
    CHECK(refusal(P().raw({op::BINGET, 3}).stop()).find("memo index 3") != std::string::npos);
    CHECK(refusal(P().raw({op::TUPLE}).stop()).find("MARK") != std::string::npos);
    CHECK(refusal(P().raw({op::NONE, op::NONE}).stop()).find("exactly one") != std::string::npos);
    CHECK(refusal(P().raw({op::NONE})).find("no STOP") != std::string::npos);
    CHECK(refusal(P().raw({op::BINUNICODE, 0xFF, 0xFF, 0xFF, 0x7F})).find("exceeds the limit") !=
          std::string::npos);
    CHECK(refusal(P().raw({op::BINUNICODE, 0x10, 0, 0, 0, 'a'})).find("truncated") != std::string::npos);
    CHECK(refusal(P().raw({op::LONG4, 0, 0, 0, 0x80})).find("4096") != std::string::npos);
    CHECK(refusal(P().raw({op::PROTO, 9}).stop()).find("protocol 9") != std::string::npos);
  }

  TEST_CASE("resource bombs stay bounded: depth, self-reference, memo expansion") {
    P deep;
    for (int i = 0; i < 200000; ++i) deep.raw({op::EMPTY_LIST});
    for (int i = 0; i < 199999; ++i) deep.raw({op::APPEND});
    deep.stop();
    CHECK(refusal(deep).find("nested deeper") != std::string::npos);

    P self;
    self.raw({op::EMPTY_LIST, op::BINPUT, 0, op::BINGET, 0, op::APPEND}).stop();
    CHECK(refusal(self).find("contains itself") != std::string::npos);

    // Billion laughs: each level is a list holding the previous level ten times.
    P laughs;
    laughs.raw({op::EMPTY_LIST, op::BINPUT, 0, op::POP});
    for (std::uint8_t level = 1; level < 30; ++level) {
      laughs.raw({op::EMPTY_LIST, op::MARK});
      for (int i = 0; i < 10; ++i) laughs.raw({op::BINGET, static_cast<std::uint8_t>(level - 1)});
      laughs.raw({op::APPENDS, op::BINPUT, level, op::POP});
    }
    laughs.raw({op::BINGET, 29}).stop();
    Limits lim;
    lim.max_values = 1'000'000;
    CHECK(refusal(laughs, lim).find("values") != std::string::npos);
  }

  TEST_CASE("tensors: storage persistent ids, views, size checks") {
    FakeStorages fs;
    P p;
    p.global("torch._utils", "_rebuild_tensor_v2").raw({op::MARK, op::MARK}).str("storage");
    p.global("torch", "FloatStorage").str("0").str("cpu").i1(12).raw({op::TUPLE, op::BINPERSID});
    p.i1(5).i1(2).i1(2).raw({op::TUPLE2}).i1(4).i1(1).raw({op::TUPLE2, op::NEWFALSE});
    p.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE}).stop();
    Value v = read(p, fs.resolver());
    REQUIRE(v.is_tensor());
    const Tensor& t = v.tensor();
    CHECK(t.dtype() == DType::Float32);
    CHECK(t.shape() == Shape{2, 2});
    CHECK(t.strides() == Shape{4, 1});
    CHECK(t.storage_offset() == 5);
    CHECK(t.storage()->nbytes() == 48);
    REQUIRE(fs.requests.size() == 1);
    CHECK(fs.requests[0].key == "0");
    CHECK(fs.requests[0].nbytes == 48);

    // The same view reaching past its storage of 12 elements is refused.
    P bad;
    bad.global("torch._utils", "_rebuild_tensor_v2").raw({op::MARK, op::MARK}).str("storage");
    bad.global("torch", "FloatStorage").str("0").str("cpu").i1(12).raw({op::TUPLE, op::BINPERSID});
    bad.i1(9).i1(2).i1(2).raw({op::TUPLE2}).i1(4).i1(1).raw({op::TUPLE2, op::NEWFALSE});
    bad.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE}).stop();
    std::string msg;
    try {
      read(bad, fs.resolver());
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("outside its storage") != std::string::npos);
  }

  TEST_CASE("a storage key declared with two classes is refused") {
    FakeStorages fs;
    P p;
    p.raw({op::EMPTY_LIST, op::MARK});
    for (const char* cls : {"FloatStorage", "LongStorage"}) {
      p.raw({op::MARK})
          .str("storage")
          .global("torch", cls)
          .str("0")
          .str("cpu")
          .i1(4)
          .raw({op::TUPLE, op::BINPERSID});
    }
    p.raw({op::APPENDS}).stop();
    std::string msg;
    try {
      read(p, fs.resolver());
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK(msg.find("declared twice") != std::string::npos);
  }

  TEST_CASE("writer output reads back equal, sharing storages") {
    Tensor base = Tensor::zeros(DType::Float32, {3, 4});
    Tensor view = Tensor::view_of(base.storage(), DType::Float32, 5, {2, 2}, {4, 1});
    Value root = Value::make_ordered_dict();
    root["base"] = base;
    root["view"] = view;
    root["p"] = Value::make_parameter(Tensor::zeros(DType::Int64, {}), false);
    root["lr"] = 0.1;
    root["wd"] = 0;
    root["nesterov"] = true;
    root["big"] = Int::from_le_bytes(std::vector<std::uint8_t>{0, 0, 0, 0, 0, 0, 0, 0, 0x40}.data(), 9);
    root["neg"] = -70000;
    root["items"] = Value::make_tuple({1, "two", Value(), Value::make_list({3.0})});
    Value counter = Value::make_dict(DictKind::Counter);
    counter[30] = 2;
    root["milestones"] = counter;
    root.dict().set_attribute("_metadata", Value::make_ordered_dict());

    pickle::Writer w;
    const auto bytes = w.dump(root);
    CHECK(w.storages().size() == 2);
    std::unordered_map<std::string, std::shared_ptr<Storage>> by_key;
    for (const auto& r : w.storages()) by_key[r.key] = r.storage;
    pickle::StorageResolver resolve = [&](const pickle::StorageRequest& r) { return by_key.at(r.key); };
    Value back = pickle::read(std::as_bytes(std::span(bytes)), resolve);
    CHECK(back.dict().kind() == DictKind::OrderedDict);
    CHECK(back.at("view").tensor().storage() == back.at("base").tensor().storage());
    CHECK(back.at("view").tensor().storage_offset() == 5);
    CHECK(back.at("p").is_parameter());
    CHECK_FALSE(back.at("p").tensor_value().requires_grad);
    CHECK(back.at("lr").is_float());
    CHECK(back.at("wd").is_int());
    CHECK(back.at("nesterov").is_bool());
    CHECK(back.at("big").as_big_int() == root.at("big").as_big_int());
    CHECK(back.at("neg").as_int() == -70000);
    CHECK(back.at("items").is_tuple());
    CHECK(back.at("items")[3][0].as_float() == 3.0);
    CHECK(back.at("milestones").dict().kind() == DictKind::Counter);
    CHECK(back.dict().attribute("_metadata") != nullptr);
  }

  TEST_CASE("writer: a long str or bytes repeated is written once, then referenced through the memo") {
    const std::string text(1000, 'k');
    const std::string blob(300, '\xff');
    Value items = Value::make_list({});
    for (int i = 0; i < 300; ++i) {
      items.items().push_back(text);
      items.items().push_back(Value(Bytes{blob}));
    }
    Value root = Value::make_dict();
    root[text] = items;  // the key is the same text: one copy serves both
    pickle::Writer w;
    const auto bytes = w.dump(root);
    // One copy of each (the bytes as latin-1 text: 600 bytes), then 2..5-byte references.
    CHECK(bytes.size() < text.size() + 2 * blob.size() + 600 * 5 + 200);
    Value back = pickle::read(std::as_bytes(std::span(bytes)), no_storage);
    CHECK(back.at(text).size() == 600);
    CHECK(back.at(text)[298].as_str() == text);
    CHECK(back.at(text)[599].as_bytes().data == blob);
    // Short strings keep their place in the stream (the layout torch and older sgckpt wrote).
    Value small = Value::make_list({"cpu", "cpu"});
    const auto plain = pickle::Writer().dump(small);
    CHECK(std::count(plain.begin(), plain.end(), op::BINUNICODE) == 2);
  }

  TEST_CASE("writer refuses what torch cannot read back") {
    Tensor a = Tensor::zeros(DType::Float32, {2});
    Value root = Value::make_dict();
    root["a"] = a;
    root["b"] = Tensor::view_of(a.storage(), DType::Int32, 0, {2}, {1});
    pickle::Writer w;
    CHECK_THROWS_WITH_AS(w.dump(root), doctest::Contains("different dtypes"), Error);
  }

  TEST_CASE(
      "save: ArchiveLayout::Torch2 adds the records torch 2.x writes, in its order; Torch1 is the default") {
    Value root = Value::make_dict();
    root["w"] = Tensor::zeros(DType::Float32, {2});
    const auto names = [&](SaveOptions o) {
      const auto bytes = sgckpt::save_to_memory(root, o);
      std::vector<std::string> out;
      const detail::zip::ZipReader zip(bytes);
      for (const auto& e : zip.entries()) out.push_back(e.name);
      return out;
    };
    CHECK(names({}) == std::vector<std::string>{"archive/data.pkl", "archive/byteorder", "archive/data/0",
                                                "archive/version"});
    CHECK(names({.layout = ArchiveLayout::Torch2}) ==
          std::vector<std::string>{"archive/data.pkl", "archive/.format_version",
                                   "archive/.storage_alignment", "archive/byteorder", "archive/data/0",
                                   "archive/version", "archive/.data/serialization_id"});
    const Value back = sgckpt::load(sgckpt::save_to_memory(root, {.layout = ArchiveLayout::Torch2}));
    CHECK(back.at("w").tensor().shape() == root.at("w").tensor().shape());
    // Two saves get two serialization ids (torch's are unique per save too).
    const auto id_of = [&] {
      const auto bytes = sgckpt::save_to_memory(root, {.layout = ArchiveLayout::Torch2});
      detail::zip::ZipReader z(bytes);
      const auto rec = z.read(*z.find("archive/.data/serialization_id"), true);
      return std::string(reinterpret_cast<const char*>(rec.data()), rec.size());
    };
    const std::string a = id_of();
    CHECK(a.size() == 40);
    CHECK(std::all_of(a.begin(), a.end(), [](char c) { return c >= '0' && c <= '9'; }));
    CHECK(a != id_of());
  }

  TEST_CASE(
      "writer: torch 2.x dtypes go through UntypedStorage and _rebuild_tensor_v3, the others as before") {
    const auto contains = [](const std::string& s, std::string_view what) {
      return s.find(what) != std::string::npos;
    };
    for (const DTypeInfo& di : kDTypes) {
      CAPTURE(di.name);
      Value root = Value::make_dict();
      Tensor t = Tensor::zeros(di.dtype, {2, 3});
      auto* bytes = t.storage()->mutable_data();
      for (std::size_t i = 0; i < t.storage()->nbytes(); ++i) bytes[i] = static_cast<std::byte>(i * 37 + 1);
      root["t"] = t;
      root["p"] = Value::make_parameter(t);  // a Parameter over the same storage
      const auto dumped = pickle::Writer().dump(root);
      const std::string pickled(dumped.begin(), dumped.end());
      const bool legacy = !di.storage_class.empty();
      CHECK(contains(pickled, "_rebuild_tensor_v3") == !legacy);
      CHECK(contains(pickled, "UntypedStorage") == !legacy);
      CHECK(contains(pickled, "_rebuild_tensor_v2") == legacy);
      // And it reads back as it was, sharing included.
      const Value back = sgckpt::load(sgckpt::save_to_memory(root));
      const Tensor& bt = back.at("t").tensor();
      CHECK(bt.dtype() == di.dtype);
      CHECK(bt.shape() == t.shape());
      CHECK(std::memcmp(bt.storage()->data(), t.storage()->data(), t.storage()->nbytes()) == 0);
      CHECK(back.at("p").is_parameter());
      CHECK(back.at("p").tensor().storage() == bt.storage());
    }
  }

  // ---- What torch would read differently is refused (issue: parser differentials) ----------

  // A float32 tensor of 4 elements over storage "0": _rebuild_tensor_v2(...) left on the stack.
  P& tensor_v2(P & p, const char* key = "0") {
    p.global("torch._utils", "_rebuild_tensor_v2").raw({op::MARK, op::MARK}).str("storage");
    p.global("torch", "FloatStorage").str(key).str("cpu").i1(4).raw({op::TUPLE, op::BINPERSID});
    p.i1(0).i1(4).raw({op::TUPLE1}).i1(1).raw({op::TUPLE1, op::NEWFALSE});
    return p.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE});
  }

  std::string refusal_with(const P& p, FakeStorages& fs) {
    try {
      read(p, fs.resolver());
    } catch (const Error& e) {
      return e.what();
    }
    return "(accepted)";
  }

  TEST_CASE("BUILD on a tensor is refused: torch's loaders would call set_(*state) and swap the data") {
    FakeStorages fs;
    P p;
    tensor_v2(p).raw({op::EMPTY_DICT, op::BUILD}).stop();
    CHECK(refusal_with(p, fs).find("BUILD on a tensor") != std::string::npos);
  }

  TEST_CASE("_rebuild_from_type_v2: only a tensor rebuild inside, and only an empty state") {
    FakeStorages fs;
    auto from_type = [&](const char* fn_module, const char* fn, auto args, auto state) {
      P p;
      p.global("torch._tensor", "_rebuild_from_type_v2").raw({op::MARK});
      p.global(fn_module, fn).global("torch", "Tensor");
      args(p);
      state(p);
      p.raw({op::TUPLE, op::REDUCE}).stop();
      return p;
    };
    auto v2_args = [](P& p) {
      p.raw({op::MARK, op::MARK}).str("storage").global("torch", "FloatStorage").str("0").str("cpu").i1(4);
      p.raw({op::TUPLE, op::BINPERSID}).i1(0).i1(4).raw({op::TUPLE1}).i1(1).raw({op::TUPLE1, op::NEWFALSE});
      p.global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE, op::TUPLE});
    };
    auto no_state = [](P& p) { p.raw({op::EMPTY_DICT}); };
    // What torch writes for a tensor subclass: accepted.
    CHECK(
        read(from_type("torch._utils", "_rebuild_tensor_v2", v2_args, no_state), fs.resolver()).is_tensor());
    // A state torch would apply with setattr ({"data": ...} replaces the weights).
    auto data_state = [](P& p) { p.raw({op::EMPTY_DICT}).str("data").i1(1).raw({op::SETITEM}); };
    CHECK(refusal_with(from_type("torch._utils", "_rebuild_tensor_v2", v2_args, data_state), fs)
              .find("non-empty state") != std::string::npos);
    // A function that is not a tensor rebuild (it yields a dict), or nests another call.
    auto empty_args = [](P& p) { p.raw({op::EMPTY_TUPLE}); };
    CHECK(refusal_with(from_type("collections", "OrderedDict", empty_args, no_state), fs)
              .find("tensor rebuild function") != std::string::npos);
    CHECK(refusal_with(from_type("torch._tensor", "_rebuild_from_type_v2", empty_args, no_state), fs)
              .find("tensor rebuild function") != std::string::npos);
  }

  TEST_CASE("_rebuild_parameter_with_state refuses a non-empty state") {
    FakeStorages fs;
    auto param = [&](auto state) {
      P p;
      p.global("torch._utils", "_rebuild_parameter_with_state").raw({op::MARK});
      tensor_v2(p).raw({op::NEWTRUE}).global("collections", "OrderedDict").raw({op::EMPTY_TUPLE, op::REDUCE});
      state(p);
      p.raw({op::TUPLE, op::REDUCE}).stop();
      return p;
    };
    const Value v = read(param([](P& p) { p.raw({op::NONE}); }), fs.resolver());
    CHECK(v.is_tensor());
    CHECK(refusal_with(param([](P& p) { p.raw({op::EMPTY_DICT}).str("data").i1(1).raw({op::SETITEM}); }), fs)
              .find("non-empty state") != std::string::npos);
  }

  TEST_CASE("strings decode as Python does: one key for one text, invalid UTF-8 refused") {
    auto short_binstring = [](P& p, const std::string& s) {
      p.raw({op::SHORT_BINSTRING, static_cast<std::uint8_t>(s.size())});
      p.b.insert(p.b.end(), s.begin(), s.end());
    };
    // "é" as BINSTRING (UTF-8 bytes, as torch.load decodes them) and as BINUNICODE: one key.
    P p;
    p.raw({op::EMPTY_DICT});
    short_binstring(p, "\xc3\xa9");
    p.i1(1).raw({op::SETITEM}).str("\xc3\xa9").i1(2).raw({op::SETITEM}).stop();
    const Value v = read(p);
    CHECK(v.size() == 1);
    CHECK(v.at("\xc3\xa9").as_int() == 2);
    P bad_binstring;
    bad_binstring.raw({op::EMPTY_DICT});
    short_binstring(bad_binstring, "w\xff");
    bad_binstring.i1(1).raw({op::SETITEM}).stop();
    CHECK(refusal(bad_binstring).find("not valid UTF-8") != std::string::npos);
    P bad_unicode;
    bad_unicode.str("\xc3\x28").stop();
    CHECK(refusal(bad_unicode).find("not valid UTF-8") != std::string::npos);
    // pickle's BINUNICODE decoder passes encoded surrogates (surrogatepass); so does this one.
    P surrogate;
    surrogate.str("\xed\xa0\x80").stop();
    CHECK(read(surrogate).as_str() == "\xed\xa0\x80");
  }

  TEST_CASE("memory is bounded by the size of the input, not only by counts of objects") {
    // 200,000 empty dicts from a 200 KB pickle: fine by default, refused under a tight budget.
    P p;
    p.raw({op::EMPTY_LIST, op::MARK});
    for (int i = 0; i < 200'000; ++i) p.raw({op::EMPTY_DICT});
    p.raw({op::APPENDS}).stop();
    CHECK(read(p).size() == 200'000);
    Limits tight;
    tight.memory_allowance = 1 << 20;
    tight.memory_per_input_byte = 4;
    CHECK(refusal(p, tight).find("bytes of memory") != std::string::npos);
  }

  TEST_CASE("the per-byte memory allowance admits the densest files sgckpt and torch write") {
    // One byte per object: a list of empty dicts (sgckpt writes EMPTY_DICT without a memo
    // put), of empty lists, of None (torch writes NONE). Without the fixed allowance, only the
    // per-byte budget stands between these files and a refusal of what a writer produced.
    Limits per_byte_only;
    per_byte_only.memory_allowance = 0;
    LoadOptions opt;
    opt.limits = per_byte_only;
    for (const char* kind : {"dict", "list", "none"}) {
      CAPTURE(kind);
      Value::List items;
      for (int i = 0; i < 50'000; ++i)
        items.push_back(kind[0] == 'd' ? Value::make_dict() : kind[0] == 'l' ? Value::make_list() : Value());
      const auto image = save_to_memory(Value::make_list(std::move(items)));
      CHECK(load(std::span<const std::byte>(image), opt, "dense").size() == 50'000);
    }
  }
}
