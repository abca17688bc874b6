// The value tree: Python's types stay distinct, dicts keep order and kind, references stay valid.
#include <doctest/doctest.h>

#include "sgckpt/core/state.hpp"

using namespace sgckpt;

TEST_SUITE("value") {
  TEST_CASE("a KeyPath holds the path of a walk in one buffer; long keys are abbreviated") {
    KeyPath path;
    {
      auto net = path.key("net");
      auto layer = path.key("layer1.0.weight");
      CHECK(path.str() == "net/layer1.0.weight");
      {
        auto item = path.index(3);
        auto meta = path.attribute("version");
        CHECK(path.str() == "net/layer1.0.weight/3/.version");
      }
      CHECK(path.str() == "net/layer1.0.weight");
    }
    CHECK(path.empty());
    auto state = path.key(std::int64_t{-1});
    auto big = path.key(std::string(1000, 'k'));
    CHECK(path.str() == "-1/" + std::string(48, 'k') + "...(1000 bytes)");
  }

  TEST_CASE("visit_tensors names each tensor by its key path, in order") {
    Value root = Value::make_dict();
    root["net"] = Value::make_dict();
    root["net"]["w"] = Tensor::zeros(DType::Float32, {2});
    root["state"] = Value::make_dict();
    root["state"][0] = Value::make_list({Tensor::zeros(DType::Int64, {})});
    std::vector<std::string> seen;
    root.visit_tensors([&](const std::string& p, const TensorValue<Tensor>&) { seen.push_back(p); });
    CHECK(seen == std::vector<std::string>{"net/w", "state/0/0"});
  }

  TEST_CASE("bool, int and float are distinct kinds, as torch's loaders need") {
    Value d = Value::make_dict();
    d["nesterov"] = false;
    d["weight_decay"] = 0;
    d["lr"] = 0.1;
    CHECK(d.at("nesterov").is_bool());
    CHECK(d.at("weight_decay").is_int());
    CHECK(d.at("lr").is_float());
    CHECK(d.at("weight_decay").as_number() == 0.0);
    CHECK_THROWS_AS(d.at("lr").as_int(), Error);
  }

  TEST_CASE("a dict keeps insertion order; replacing a key keeps its place") {
    Value d = Value::make_ordered_dict();
    d["b"] = 1;
    d["a"] = 2;
    d["b"] = 3;
    REQUIRE(d.size() == 2);
    CHECK(d.dict().items()[0].first.str() == "b");
    CHECK(d.at("b").as_int() == 3);
    CHECK(d.dict().erase("b"));
    CHECK(d.dict().items()[0].first.str() == "a");
    CHECK(d.at("a").as_int() == 2);
  }

  TEST_CASE("copying from one key into a new key is safe (insertion moves nothing)") {
    Value d = Value::make_dict();
    d["lr"] = 0.1;
    for (int i = 0; i < 1000; ++i) d[std::to_string(i)] = d.at("lr");
    CHECK(d.at("999").as_float() == 0.1);
  }

  TEST_CASE("int keys: v[0] is the int key 0 on a dict and element 0 on a list") {
    Value state = Value::make_dict();
    state[0] = Value::make_dict();
    state[0]["momentum_buffer"] = Value();
    CHECK(state.dict().items()[0].first.is_int());
    CHECK(state[0].at("momentum_buffer").is_none());
    Value l = Value::make_list({10, 20});
    CHECK(l[1].as_int() == 20);
    CHECK_THROWS_AS(l[2].get(), Error);
  }

  TEST_CASE("reading a missing key never inserts it: it throws a schema error naming the key path") {
    State<> state;
    state["net"]["fc.weight"] = Tensor::zeros(DType::Float32, {2});
    try {
      (void)state["ema_net"]["fc.weight"].is_tensor();
      FAIL("reading a missing key must throw");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Schema);
      CHECK(e.context().key_path == "ema_net");
      CHECK(std::string(e.what()).find("missing key 'ema_net'") != std::string::npos);
    }
    CHECK_FALSE(state["ema_net"].exists());
    CHECK_FALSE(state["net"]["fc.bias"].exists());
    CHECK(state["net"]["fc.weight"].exists());
    CHECK(state.root().size() == 1);  // nothing was inserted by the reads above
    CHECK(state["net"].size() == 1);
    const State<>& frozen = state;
    CHECK_THROWS_AS(frozen["ema_net"], Error);  // a const tree reads as at() does
  }

  TEST_CASE("assigning through a chain of keys creates the missing dicts") {
    Value v = Value::make_dict();
    v["optimizer"]["param_groups"] = Value::make_list({Value::make_dict()});
    v["optimizer"]["param_groups"][0]["lr"] = 0.1;
    CHECK(v.at("optimizer").is_dict());
    CHECK(v["optimizer"]["param_groups"][0]["lr"].as_float() == 0.1);
    Value& lr = v["optimizer"]["param_groups"][0]["lr"];  // a reference into the tree
    lr = 0.2;
    CHECK(v.at("optimizer").at("param_groups")[0].at("lr").as_float() == 0.2);
    // Lists do not grow, and a scalar has no keys: both say where.
    CHECK_THROWS_AS(v["optimizer"]["param_groups"][1] = 1, Error);
    v["epoch"] = 3;
    try {
      v["epoch"]["x"] = 1;
      FAIL("a key below an int must throw");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Schema);
      CHECK(e.context().key_path == "epoch");
    }
  }

  TEST_CASE("a kind error read through keys names the key path") {
    Value v = Value::make_dict();
    v["optimizer"]["state"][0]["step"] = 3.5;
    try {
      (void)v["optimizer"]["state"][0]["step"].as_int();
      FAIL("a float read as an int must throw");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Schema);
      CHECK(e.context().key_path == "optimizer/state/0/step");
      CHECK(std::string(e.what()).find("expected a int, found a float") != std::string::npos);
    }
  }

  TEST_CASE("assigning one place to another copies the value, also from inside what it replaces") {
    Value v = Value::make_dict();
    v["a"]["b"] = 1;
    v["c"] = v["a"];
    v["a"] = v["a"]["b"];
    CHECK(v["a"].as_int() == 1);
    CHECK(v["c"]["b"].as_int() == 1);
  }

  TEST_CASE("big ints are kept exactly and printed in decimal") {
    const std::uint8_t two_to_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0};
    CHECK(Int::from_le_bytes(two_to_70, sizeof two_to_70).to_string() == "1180591620717411303424");
    const std::uint8_t minus_two_to_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0xC0};
    CHECK(Int::from_le_bytes(minus_two_to_70, sizeof minus_two_to_70).to_string() ==
          "-1180591620717411303424");
    // 2^1000 - 1 and -(2^520) + 12345, as Python prints them.
    std::vector<std::uint8_t> ones(125, 0xFF);
    ones.push_back(0);
    CHECK(Int::from_le_bytes(ones.data(), ones.size()).to_string() ==
          "10715086071862673209484250490600018105614048117055336074437503883703510511249361224931983788156958"
          "581275946"
          "72917553146825187145285692314043598457757469857480393456777482423098542107460506237114187795418215"
          "304647"
          "4983581941267398767559165543946077062914571196477686542167660429831652624386837205668069375");
    std::vector<std::uint8_t> neg(66, 0);
    neg[0] = 0x39, neg[1] = 0x30, neg[65] = 0xFF;  // 12345 - 2^520 in two's complement
    CHECK(Int::from_le_bytes(neg.data(), neg.size()).to_string() ==
          "-3432398830065304857490950399540696608634717650071652704697231729592771591698828026061279820330727"
          "277488648"
          "155695740429018560993999858321906287014145557516231");
    CHECK(Int(-5).to_le_bytes() == std::vector<std::uint8_t>{0xFB});
    CHECK(Int(255).to_le_bytes() == std::vector<std::uint8_t>{0xFF, 0x00});
  }

  TEST_CASE("a State over a foreign tensor type converts through tensor_traits") {
    State<> s;
    s["w"] = Tensor::zeros(DType::Float32, {2, 3});
    s["epoch"] = 3;
    const Value host = s.to_host();
    CHECK(host.at("w").tensor().shape() == Shape{2, 3});
    State<> back = State<>::from_host(host);
    CHECK(back.at("epoch").as_int() == 3);
  }

  TEST_CASE("a tensor whose size in bytes does not fit in 63 bits is refused, so nbytes() never wraps") {
    auto one = Storage::zeros(4);
    // stride 0 makes any shape fit one element of storage; numel * 4 would wrap to 0.
    CHECK_THROWS_WITH_AS(Tensor::view_of(one, DType::Float32, 0, {std::int64_t{1} << 62}, {0}),
                         doctest::Contains("too large"), Error);
    CHECK_THROWS_WITH_AS(Tensor::view_of(one, DType::Float64, 0, {std::int64_t{1} << 61}, {0}),
                         doctest::Contains("too large"), Error);
    CHECK_THROWS_AS(Tensor::empty(DType::Float32, {std::int64_t{1} << 31, std::int64_t{1} << 31}), Error);
    // A broadcast view that fits is fine, and equal() walks it without materializing it.
    auto byte = Storage::zeros(1);
    const Tensor wide = Tensor::view_of(byte, DType::UInt8, 0, {std::int64_t{1} << 40}, {0});
    CHECK(wide.nbytes() == (std::size_t{1} << 40));
    const Tensor small = Tensor::view_of(byte, DType::UInt8, 0, {3, 4}, {0, 0});
    CHECK(small.equal(Tensor::zeros(DType::UInt8, {3, 4})));
    CHECK_FALSE(small.equal(Tensor::zeros(DType::UInt8, {4, 3})));
  }
}
