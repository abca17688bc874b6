// Tests of tools/sgckpt/json_writer.hpp: the JSON mirror of `sgckpt inspect --json`.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../../tools/sgckpt/json_writer.hpp"

using sgckpt::DictKind;
using sgckpt::DType;
using sgckpt::Int;
using sgckpt::Tensor;
using sgckpt::Value;
namespace json = sgckpt::tool::json;

namespace {

std::string str_json(std::string_view s) {
  std::string out;
  json::append_string(out, s);
  return out;
}

std::string double_json(double d) {
  std::string out;
  json::append_double(out, d);
  return out;
}

// 2**70 and -(2**70) as pickle would give them (LONG1 little-endian two's complement).
Int two_pow_70(bool negative) {
  std::uint8_t b[9] = {0, 0, 0, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(negative ? 0xC0 : 0x40)};
  return Int::from_le_bytes(b, 9);
}

Tensor iota_f32(sgckpt::Shape shape) {
  Tensor t = Tensor::empty(DType::Float32, std::move(shape));
  auto* p = t.mutable_data<float>();
  for (std::size_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i);
  return t;
}

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace

TEST_CASE("json: floats are the shortest round-trip text, always with '.' or an exponent") {
  CHECK(json::format_double(0.1) == "0.1");
  CHECK(json::format_double(1e300) == "1e+300");
  CHECK(json::format_double(-0.0) == "-0.0");
  CHECK(json::format_double(0.0) == "0.0");
  CHECK(json::format_double(5e-324) == "5e-324");
  CHECK(json::format_double(1.0) == "1.0");
  CHECK(json::format_double(-2.0) == "-2.0");
  CHECK(json::format_double(100.0) == "100.0");
  CHECK(json::format_double(1e16) == "1e+16");
  CHECK(json::format_double(1.5) == "1.5");
  CHECK(json::format_double(0.30000000000000004) == "0.30000000000000004");
  CHECK(json::format_double(std::numeric_limits<double>::max()) == "1.7976931348623157e+308");
  CHECK(json::format_double(2.5e-8) == "2.5e-08");

  // Round trip, bit for bit, over many random doubles (all finite bit patterns).
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    const double d = std::bit_cast<double>(rng());
    if (!std::isfinite(d)) continue;
    const std::string s = json::format_double(d);
    REQUIRE(s.find_first_of(".e") != std::string::npos);
    CHECK(std::bit_cast<std::uint64_t>(std::strtod(s.c_str(), nullptr)) == std::bit_cast<std::uint64_t>(d));
  }
}

TEST_CASE("json: NaN and infinities are the strings \"nan\", \"inf\", \"-inf\"") {
  CHECK(double_json(std::numeric_limits<double>::quiet_NaN()) == "\"nan\"");
  CHECK(double_json(-std::numeric_limits<double>::quiet_NaN()) == "\"nan\"");
  CHECK(double_json(std::numeric_limits<double>::infinity()) == "\"inf\"");
  CHECK(double_json(-std::numeric_limits<double>::infinity()) == "\"-inf\"");
  CHECK(double_json(1e16) == "1e+16");
  CHECK(json::to_json(Value(std::nan(""))) == "\"nan\"");
}

TEST_CASE("json: ints are exact at any size") {
  CHECK(json::to_json(Value(0)) == "0");
  CHECK(json::to_json(Value(-7)) == "-7");
  CHECK(json::to_json(Value(Int(std::numeric_limits<std::int64_t>::min()))) == "-9223372036854775808");
  CHECK(json::to_json(Value(Int(std::numeric_limits<std::int64_t>::max()))) == "9223372036854775807");
  CHECK(json::to_json(Value(two_pow_70(false))) == "1180591620717411303424");
  CHECK(json::to_json(Value(two_pow_70(true))) == "-1180591620717411303424");
  const std::uint8_t two_pow_64[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  CHECK(json::to_json(Value(Int::from_le_bytes(two_pow_64, 9))) == "18446744073709551616");
  // bool stays bool, float stays float.
  CHECK(json::to_json(Value(true)) == "true");
  CHECK(json::to_json(Value(false)) == "false");
  CHECK(json::to_json(Value(2.0)) == "2.0");
  CHECK(json::to_json(Value()) == "null");
}

TEST_CASE("json: string escaping (RFC 8259)") {
  CHECK(str_json("") == "\"\"");
  CHECK(str_json("plain text / ok") == "\"plain text / ok\"");
  CHECK(str_json("q\"b\\s") == "\"q\\\"b\\\\s\"");
  CHECK(str_json("\b\f\n\r\t") == "\"\\b\\f\\n\\r\\t\"");
  CHECK(str_json(std::string("\x00\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
  // Valid UTF-8 is written as is (2-, 3- and 4-byte sequences, U+D7FF, U+E000, U+10FFFF).
  const std::string utf8 =
      "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 \xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF";
  CHECK(str_json(utf8) == "\"" + utf8 + "\"");
}

TEST_CASE("json: bytes that are not UTF-8 never make invalid JSON") {
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(str_json("a\xFF"
                 "b") == "\"a" + fffd + "b\"");                                    // never a UTF-8 byte
  CHECK(str_json("\x80") == "\"" + fffd + "\"");                                   // lone continuation
  CHECK(str_json("\xE2\x82") == "\"" + fffd + "\"");                               // truncated: one U+FFFD
  CHECK(str_json("\xE2\x82x") == "\"" + fffd + "x\"");                             // cut short by ASCII
  CHECK(str_json("\xC0\xAF") == "\"" + fffd + fffd + "\"");                        // overlong
  CHECK(str_json("\xE0\x80\x80") == "\"" + fffd + fffd + fffd + "\"");             // overlong 3-byte
  CHECK(str_json("\xF4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  // Encoded surrogates (Python's pickle writes lone surrogates with 'surrogatepass'):
  // escaped as Python's json.dumps escapes them.
  CHECK(str_json("\xED\xA0\x80") == "\"\\ud800\"");
  CHECK(str_json("x\xED\xBF\xBFy") == "\"x\\udfffy\"");
  CHECK(str_json("\xED\xA0\xBD\xED\xB8\x80") == "\"\\ud83d\\ude00\"");
  CHECK(str_json("\xED\xA0") == "\"" + fffd + "\"");  // truncated surrogate
}

TEST_CASE("json: nested structures keep file order; every dict kind is an object") {
  Value root = Value::make_dict();
  root["none"] = nullptr;
  root["flags"] = Value::make_list({true, false});
  root["nums"] = Value::make_tuple({1, -2, 0.5, std::numeric_limits<double>::infinity(), two_pow_70(false)});
  Value by_int = Value::make_dict();
  by_int.dict().set(sgckpt::Key(3), "three");
  by_int.dict().set(sgckpt::Key(-1), Value::make_list());
  by_int.dict().set(sgckpt::Key(0), Value::make_dict());
  root["by_int"] = by_int;
  Value od = Value::make_ordered_dict();
  od["z"] = 1;
  od["a"] = 2;
  Value meta = Value::make_ordered_dict();
  meta[""] = Value::make_dict();
  meta[""]["version"] = 1;
  od.dict().set_attribute("_metadata", meta);  // not part of the JSON
  root["od"] = od;
  Value counter = Value::make_dict(DictKind::Counter);
  counter.dict().set(sgckpt::Key(30), 1);
  counter.dict().set(sgckpt::Key(10), 2);
  root["milestones"] = counter;
  root["tuple"] = Value::make_tuple();
  root["key \"quoted\"\n"] = "v\xC3\xA9";
  CHECK(json::to_json(root) ==
        "{\"none\": null, \"flags\": [true, false], \"nums\": [1, -2, 0.5, \"inf\", 1180591620717411303424], "
        "\"by_int\": {\"3\": \"three\", \"-1\": [], \"0\": {}}, \"od\": {\"z\": 1, \"a\": 2}, "
        "\"milestones\": {\"30\": 1, \"10\": 2}, \"tuple\": [], \"key \\\"quoted\\\"\\n\": \"v\xC3\xA9\"}");
  CHECK(json::to_json(Value::make_dict()) == "{}");
  CHECK(json::to_json(Value::make_list({Value::make_list({Value::make_list()})})) == "[[[]]]");
}

TEST_CASE("json: tensors and Parameters mirror as {\"$tensor\": {dtype, shape, sha256}}") {
  const Tensor base = iota_f32({3, 4});
  const Tensor t = Tensor::view_of(base.storage(), DType::Float32, 0, {4, 3}, {1, 4});  // base.t()
  Value root = Value::make_ordered_dict();
  root["base"] = base;
  root["t"] = Value::make_parameter(t, true);
  root["scalar"] = sgckpt::TensorValue<Tensor>{Tensor::zeros(DType::Float32, {}), true, false};
  root["empty"] = Tensor::empty(DType::Int64, {0, 3});
  const std::uint8_t b[] = {1, 0, 1};
  root["mask"] = Tensor::from_values<std::uint8_t>(DType::Bool, {3}, std::span<const std::uint8_t>(b, 3));
  const std::uint16_t bf[] = {0x3F80, 0x4000, 0xC040};
  root["bf"] =
      Tensor::from_values<std::uint16_t>(DType::BFloat16, {1, 3}, std::span<const std::uint16_t>(bf, 3));

  const std::string base_sha = sgckpt::tool::tensor_sha256(base);
  CHECK(json::to_json(root) ==
        "{\"base\": {\"$tensor\": {\"dtype\": \"float32\", \"shape\": [3, 4], \"sha256\": \"" + base_sha +
            "\"}}, "
            "\"t\": {\"$tensor\": {\"dtype\": \"float32\", \"shape\": [4, 3], \"sha256\": "
            "\"5ad8a91ce86568a3d934ee2a80909d4292384e7ca8f5b721ce930a7d377cd709\"}}, "
            "\"scalar\": {\"$tensor\": {\"dtype\": \"float32\", \"shape\": [], \"sha256\": "
            "\"df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119\"}}, "
            "\"empty\": {\"$tensor\": {\"dtype\": \"int64\", \"shape\": [0, 3], \"sha256\": \"" +
            kEmptySha +
            "\"}}, "
            "\"mask\": {\"$tensor\": {\"dtype\": \"bool\", \"shape\": [3], \"sha256\": "
            "\"85f90dfea1d8027e1463e5ca971a250110a20df0119d204a74220bc63516d15b\"}}, "
            "\"bf\": {\"$tensor\": {\"dtype\": \"bfloat16\", \"shape\": [1, 3], \"sha256\": "
            "\"f01074d507bea64ffc5529e335999671d3a68d871929e9794753718732772eff\"}}}");
}

TEST_CASE("json: an error inside the tree names its key path") {
  Value root = Value::make_dict();
  root["a"] = Value::make_list({1, Tensor()});
  try {
    (void)json::to_json(root);
    FAIL("expected an error");
  } catch (const sgckpt::Error& e) {
    CHECK(e.context().key_path == "a/1");
  }
}

TEST_CASE("json: a bytes value has no mirror and is refused with its key path") {
  Value root = Value::make_dict();
  root["blob"] = Value::make_list({sgckpt::Bytes{"\x00\x01"}});
  try {
    (void)json::to_json(root);
    FAIL("expected an error");
  } catch (const sgckpt::Error& e) {
    CHECK(e.context().key_path == "blob/0");
  }
  CHECK_THROWS_AS(json::to_json(Value(sgckpt::Bytes{"x"})), sgckpt::Error);
}

TEST_CASE("json: torch.dtype, torch.device, torch.Size and numpy values (docs/pth-format.md)") {
  Value v = Value::make_dict();
  v["dtype"] = DType::BFloat16;
  v["device"] = sgckpt::TorchDevice{"cuda", 1};
  v["size"] = Value::make_torch_size({2, 3});
  v["metric"] = sgckpt::NumpyValue{Tensor::zeros(DType::Float64, {}), true};
  v["array"] = sgckpt::NumpyValue{Tensor::zeros(DType::Int32, {0}), false};
  CHECK(json::to_json(v) ==
        "{\"dtype\": {\"$dtype\": \"bfloat16\"}, \"device\": {\"$device\": \"cuda:1\"}, \"size\": [2, 3], "
        "\"metric\": {\"$numpy\": {\"dtype\": \"float64\", \"shape\": [], \"scalar\": true, \"sha256\": "
        "\"af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc\"}}, "
        "\"array\": {\"$numpy\": {\"dtype\": \"int32\", \"shape\": [0], \"scalar\": false, \"sha256\": "
        "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}}}");
}
