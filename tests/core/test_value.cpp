// The value tree: Python's types stay distinct, dicts keep order and kind, references stay valid.
#include <doctest/doctest.h>

#include "sgckpt/core/state.hpp"

using namespace sgckpt;

TEST_SUITE("value") {
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
    CHECK_THROWS_AS(l[2], Error);
  }

  TEST_CASE("big ints are kept exactly and printed in decimal") {
    const std::uint8_t two_to_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0};
    CHECK(Int::from_le_bytes(two_to_70, sizeof two_to_70).to_string() == "1180591620717411303424");
    const std::uint8_t minus_two_to_70[] = {0, 0, 0, 0, 0, 0, 0, 0, 0xC0};
    CHECK(Int::from_le_bytes(minus_two_to_70, sizeof minus_two_to_70).to_string() == "-1180591620717411303424");
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
}
