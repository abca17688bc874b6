// safetensors: load() recognizes the format by content, save() writes it, and every check of
// the format refuses a lying file with the reason and where (tests/python/test_safetensors.py
// checks both directions against the real safetensors package).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using sgckpt::test::as_string;
using sgckpt::test::contains;
using sgckpt::test::error_of;

namespace {

// A file from a header text and data bytes, as a hostile author would write it.
std::vector<std::byte> file_of(const std::string& header, const std::string& data,
                               std::uint64_t claimed = 0) {
  std::vector<std::byte> out(8);
  const std::uint64_t n = claimed != 0 ? claimed : header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
  for (char c : header + data) out.push_back(static_cast<std::byte>(c));
  return out;
}

Error refusal(const std::vector<std::byte>& bytes) {
  return error_of([&] { (void)load(std::span<const std::byte>(bytes), {}, "hostile.safetensors"); });
}

Tensor floats(std::initializer_list<float> v, Shape shape) {
  return Tensor::from_values<float>(DType::Float32, std::move(shape),
                                    std::span<const float>(v.begin(), v.size()));
}

}  // namespace

TEST_SUITE("io/safetensors") {
  TEST_CASE("a state dict round-trips, with its metadata, and is recognized by content") {
    Value sd = Value::make_dict();
    sd["fc.weight"] = floats({1, 2, 3, 4, 5, 6}, {2, 3});
    sd["fc.bias"] = floats({7, 8}, {2});
    sd["steps"] = Tensor::zeros(DType::Int64, {});
    Value meta = Value::make_dict();
    meta["format"] = "pt";
    sd.dict().set_attribute("__metadata__", meta);

    const auto bytes = save_to_memory(sd, {.format = SaveFormat::Safetensors});
    CHECK(as_string(std::span(bytes).subspan(8, 15)) == "{\"__metadata__\"");
    CHECK((bytes.size() - 8) % 8 == 0);  // header padded: the data starts 8-byte aligned

    const Value back = load(std::span<const std::byte>(bytes));
    REQUIRE(back.is_dict());
    CHECK(back.size() == 3);
    CHECK(back.dict().items()[0].first.str() == "fc.bias");  // name order, as safe_open lists
    CHECK(back.at("fc.weight").tensor().equal(sd.at("fc.weight").tensor()));
    CHECK(back.at("fc.weight").tensor().shape() == Shape{2, 3});
    CHECK(back.at("steps").tensor().dtype() == DType::Int64);
    REQUIRE(back.dict().attribute("__metadata__") != nullptr);
    CHECK(back.dict().attribute("__metadata__")->at("format").as_str() == "pt");
  }

  TEST_CASE("tensors are laid out as safetensors does: wider dtypes first, then by name") {
    Value sd = Value::make_dict();
    sd["b"] = Tensor::zeros(DType::UInt8, {3});
    sd["a"] = Tensor::zeros(DType::Float64, {1});
    sd["c"] = Tensor::zeros(DType::Float64, {1});
    const auto bytes = save_to_memory(sd, {.format = SaveFormat::Safetensors});
    const std::string header = as_string(std::span(bytes).subspan(8, static_cast<std::size_t>(bytes[0])));
    CHECK(contains(header,
                   "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                   "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}"));
  }

  TEST_CASE("a mapped load views the file; a strided tensor is written as its elements") {
    Value sd = Value::make_dict();
    const Tensor t = floats({1, 2, 3, 4, 5, 6}, {2, 3});
    sd["t"] = Tensor::view_of(t.storage(), DType::Float32, 0, {3, 2}, {1, 3});  // the transpose
    const sgckpt::test::TempDir dir;
    const auto path = dir / "sd.safetensors";
    save(sd, path);  // the extension chooses the format
    const Value back = load(path, {.mmap = true});
    const Tensor& u = back.at("t").tensor();
    CHECK(u.storage()->read_only());
    CHECK(u.equal(sd.at("t").tensor()));
    CHECK(u.data<float>()[1] == 4.0f);
  }

  TEST_CASE("what safetensors cannot hold is refused, saying what to do") {
    Value ck = Value::make_dict();
    ck["net"]["fc.weight"] = floats({1}, {1});
    const Error nested = error_of([&] { (void)save_to_memory(ck, {.format = SaveFormat::Safetensors}); });
    CHECK(nested.kind() == ErrorKind::Schema);
    CHECK(nested.context().key_path == "net");
    CHECK(contains(nested.message(), "flatten"));

    const Value flat = load(
        std::span<const std::byte>(save_to_memory(ck, {.format = SaveFormat::Safetensors, .flatten = true})));
    CHECK(flat.contains("net.fc.weight"));

    Value scalar = Value::make_dict();
    scalar["epoch"] = 3;
    CHECK(error_of([&] { (void)save_to_memory(scalar, {.format = SaveFormat::Safetensors}); }).kind() ==
          ErrorKind::Schema);
    Value complex = Value::make_dict();
    complex["z"] = Tensor::zeros(DType::Complex64, {1});
    CHECK(contains(
        error_of([&] { (void)save_to_memory(complex, {.format = SaveFormat::Safetensors}); }).message(),
        "convert it"));
  }

  TEST_CASE("a hostile header is refused with its kind and byte offset") {
    const std::string f4 = "\"dtype\":\"F32\",\"shape\":[1],";
    struct Case {
      const char* what;
      std::vector<std::byte> bytes;
      ErrorKind kind;
      const char* phrase;
    };
    const Case cases[] = {
        {"header claiming terabytes", file_of("{}", "", std::uint64_t{1} << 40), ErrorKind::Limit,
         "more than the format"},
        {"header past the end", file_of("{}", "", 100), ErrorKind::Truncated, "claims 100 bytes"},
        {"bad JSON", file_of("{\"a\":{" + f4 + "\"data_offsets\":[0,4]}", "abcd"), ErrorKind::Corrupt,
         "invalid JSON"},
        {"duplicate name",
         file_of("{\"a\":{" + f4 + "\"data_offsets\":[0,4]},\"a\":{" + f4 + "\"data_offsets\":[4,8]}}",
                 "abcdefgh"),
         ErrorKind::Corrupt, "appears twice"},
        {"overlap",
         file_of("{\"a\":{" + f4 + "\"data_offsets\":[0,4]},\"b\":{" + f4 + "\"data_offsets\":[2,6]}}",
                 "abcdef"),
         ErrorKind::Corrupt, "overlaps"},
        {"gap", file_of("{\"a\":{" + f4 + "\"data_offsets\":[4,8]}}", "abcdefgh"), ErrorKind::Corrupt, "gap"},
        {"out of range", file_of("{\"a\":{" + f4 + "\"data_offsets\":[0,4]}}", "ab"), ErrorKind::Truncated,
         "past the data area"},
        {"shape lies", file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd"),
         ErrorKind::Corrupt, "need 8"},
        {"bytes left over", file_of("{\"a\":{" + f4 + "\"data_offsets\":[0,4]}}", "abcdefgh"),
         ErrorKind::Corrupt, "cover 4 of the 8"},
        {"unknown dtype", file_of("{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", "a"),
         ErrorKind::Refused, "dtype 'Q7'"},
        {"huge shape",
         file_of("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}",
                 "abcdefgh"),
         ErrorKind::Corrupt, "tensor 'a'"},
        {"lone surrogate", file_of("{\"\\udc00\":{" + f4 + "\"data_offsets\":[0,4]}}", "abcd"),
         ErrorKind::Corrupt, "surrogate"},
        {"missing field", file_of("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", ""), ErrorKind::Corrupt,
         "lacks data_offsets"},
        {"deep nesting", file_of("{\"a\":{\"x\":" + std::string(100, '[') + std::string(100, ']') + "}}", ""),
         ErrorKind::Corrupt, "nesting deeper"},
    };
    for (const Case& c : cases) {
      const std::string what = c.what;
      CAPTURE(what);
      const Error e = refusal(c.bytes);
      CHECK(e.kind() == c.kind);
      CHECK(contains(e.what(), c.phrase));
      CHECK(e.context().file == "hostile.safetensors");
      CHECK(e.context().offset.has_value());
    }
  }
}
