// Values besides tensors that real checkpoints hold: torch.dtype, torch.device, torch.Size,
// numpy scalars and arrays (docs/pth-format.md, "Values besides tensors"), read through a
// restricted rebuild and written back as torch and numpy write them.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "pickle_builder.hpp"
#include "sgckpt/core/identical.hpp"
#include "sgckpt/io/pth.hpp"

using namespace sgckpt;
using namespace sgckpt::test;

namespace {

// numpy's own pickles, opcode by opcode, as numpy 1.x writes them under protocol 2 (bytes as
// SHORT_BINBYTES here: the reader takes either).
struct NumpyPickle : P {
  // P's steps, returning this type so that chains can go on with numpy's.
  NumpyPickle& raw(std::initializer_list<std::uint8_t> x) {
    P::raw(x);
    return *this;
  }
  NumpyPickle& str(const std::string& s) {
    P::str(s);
    return *this;
  }
  NumpyPickle& global(const std::string& m, const std::string& n) {
    P::global(m, n);
    return *this;
  }
  NumpyPickle& i1(std::uint8_t v) {
    P::i1(v);
    return *this;
  }
  NumpyPickle& bin(const std::string& data) {
    b.push_back(op::SHORT_BINBYTES);
    b.push_back(static_cast<std::uint8_t>(data.size()));
    b.insert(b.end(), data.begin(), data.end());
    return *this;
  }
  NumpyPickle& minus_one() {
    raw({op::BININT, 0xFF, 0xFF, 0xFF, 0xFF});
    return *this;
  }
  // numpy.dtype(code, False, True) with the state (3, order, None, None, None, -1, -1, 0).
  NumpyPickle& dtype(const std::string& code, const std::string& order) {
    global("numpy", "dtype").str(code).raw({op::NEWFALSE, op::NEWTRUE, op::TUPLE3, op::REDUCE, op::MARK});
    i1(3).str(order).raw({op::NONE, op::NONE, op::NONE});
    minus_one().minus_one().i1(0).raw({op::TUPLE, op::BUILD});
    return *this;
  }
  NumpyPickle& scalar(const std::string& code, const std::string& order, const std::string& data) {
    global("numpy.core.multiarray", "scalar");
    dtype(code, order).bin(data).raw({op::TUPLE2, op::REDUCE});
    return *this;
  }
  // _reconstruct(ndarray, (0,), b'b') and BUILD (1, shape, dtype, fortran, data).
  NumpyPickle& array_head(const std::string& module = "numpy.core.multiarray") {
    global(module, "_reconstruct").global("numpy", "ndarray").i1(0).raw({op::TUPLE1});
    bin("b").raw({op::TUPLE3, op::REDUCE});
    return *this;
  }
  NumpyPickle& array(const std::string& code, const std::string& order, std::vector<std::uint8_t> shape,
                     bool fortran, const std::string& data) {
    array_head().raw({op::MARK}).i1(1).raw({op::MARK});
    for (auto d : shape) i1(d);
    raw({op::TUPLE});
    dtype(code, order).raw({fortran ? op::NEWTRUE : op::NEWFALSE});
    bin(data).raw({op::TUPLE, op::BUILD});
    return *this;
  }
};

std::string le32(std::initializer_list<std::int32_t> v) {
  std::string out;
  for (auto x : v)
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(static_cast<std::uint32_t>(x) >> (8 * i)));
  return out;
}

std::vector<std::int32_t> ints_of(const Tensor& t) {
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < t.numel(); ++i)
    out.push_back(static_cast<std::int32_t>(t.element_as_double(i)));
  return out;
}

}  // namespace

TEST_SUITE("values besides tensors") {
  TEST_CASE("torch.dtype, torch.device, torch.Size and numpy values survive save and load") {
    Value v = Value::make_dict();
    v["dtype"] = DType::BFloat16;
    v["cuda1"] = TorchDevice{"cuda", 1};
    v["cpu"] = TorchDevice{"cpu", std::nullopt};
    v["size"] = Value::make_torch_size({2, 3});
    v["plain_tuple"] = Value::make_tuple({Value(2), Value(3)});
    v["lr"] = NumpyValue{Tensor::from_values<double>(DType::Float64, {}, std::vector<double>{0.25}), true};
    v["snapshots_metric"] = NumpyValue{
        Tensor::from_values<double>(DType::Float64, {3}, std::vector<double>{0.5, 0.75, 1.0}), false};
    v["mask"] = NumpyValue{
        Tensor::from_values<std::uint8_t>(DType::Bool, {2}, std::vector<std::uint8_t>{1, 0}), false};

    const Value back = load(save_to_memory(v));
    const auto diff = first_difference(v, back);
    INFO((diff ? diff->path + ": " + diff->what : std::string()));
    CHECK_FALSE(diff);
    CHECK(back["dtype"].as_dtype() == DType::BFloat16);
    CHECK(back["cuda1"].as_device().to_string() == "cuda:1");
    CHECK(back["cpu"].as_device().to_string() == "cpu");
    CHECK(back["size"].is_torch_size());
    CHECK(back["size"].is_tuple());  // a torch.Size is a tuple, as in Python
    CHECK_FALSE(back["plain_tuple"].is_torch_size());
    CHECK(back["lr"].numpy().scalar);
    CHECK(back["lr"].as_number() == 0.25);  // a numpy scalar metric reads as a number
    CHECK(back["snapshots_metric"].numpy().data.shape() == Shape{3});
  }

  TEST_CASE("numpy arrays read as numpy wrote them: C and Fortran order, big-endian, 0-d") {
    NumpyPickle p;
    p.raw({op::EMPTY_DICT});
    p.str("c");
    p.array("i4", "<", {2, 3}, false, le32({0, 1, 2, 3, 4, 5})).raw({op::SETITEM});
    p.str("f");
    p.array("i4", "<", {2, 3}, true, le32({0, 3, 1, 4, 2, 5})).raw({op::SETITEM});
    p.str("be").array("i4", ">", {2}, false, std::string("\0\0\0\1\0\0\0\2", 8)).raw({op::SETITEM});
    p.str("d0");
    p.array("i4", "<", {}, false, le32({7})).raw({op::SETITEM});
    p.str("s").scalar("i8", "<", std::string("\xfd\xff\xff\xff\xff\xff\xff\xff", 8)).raw({op::SETITEM});
    p.stop();
    const Value v = read(p);
    CHECK(ints_of(v["c"].numpy().data) == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5});
    CHECK(ints_of(v["f"].numpy().data) == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5});
    CHECK(v["f"].numpy().data.is_contiguous());
    CHECK(ints_of(v["be"].numpy().data) == std::vector<std::int32_t>{1, 2});
    CHECK(v["d0"].numpy().data.dim() == 0);
    CHECK_FALSE(v["d0"].numpy().scalar);
    CHECK(v["s"].numpy().scalar);
    CHECK(v["s"].as_number() == -3);
  }

  TEST_CASE("numpy 2's module name is read too") {
    NumpyPickle p;
    p.array_head("numpy._core.multiarray").raw({op::MARK}).i1(1).raw({op::MARK}).i1(1).raw({op::TUPLE});
    p.dtype("f4", "<")
        .raw({op::NEWFALSE})
        .bin(std::string("\0\0\x80\x3f", 4))
        .raw({op::TUPLE, op::BUILD})
        .stop();
    CHECK(read(p).numpy().data.element_as_double(0) == 1.0);
  }

  TEST_CASE("numpy values outside plain numeric arrays are refused, naming why") {
    auto refused = [](NumpyPickle& p) { return refusal(p.stop()); };
    NumpyPickle object;
    object.array("O8", "|", {1}, false, "x");
    CHECK(contains(refused(object), "object arrays can hold any Python object"));
    NumpyPickle text;
    text.array("U3", "<", {1}, false, "abc");
    CHECK(contains(refused(text), "only bool, int, uint, float and complex"));
    NumpyPickle lie;  // 3 int32 elements in 8 bytes
    lie.array("i4", "<", {3}, false, le32({1, 2}));
    CHECK(contains(refused(lie), "data of 8 bytes for 3 int32 elements"));
    NumpyPickle wrong_class;
    wrong_class.global("numpy.core.multiarray", "_reconstruct").global("collections", "OrderedDict").i1(0);
    wrong_class.raw({op::TUPLE1}).bin("b").raw({op::TUPLE3, op::REDUCE});
    CHECK(contains(refused(wrong_class), "class other than numpy.ndarray"));
    NumpyPickle unbuilt;
    unbuilt.array_head();
    CHECK(contains(refused(unbuilt), "without its state"));
    NumpyPickle twice;  // BUILD on a finished array would replace its data
    twice.array("i4", "<", {1}, false, le32({1}))
        .raw({op::MARK})
        .i1(1)
        .raw({op::MARK})
        .i1(1)
        .raw({op::TUPLE});
    twice.dtype("i4", "<").raw({op::NEWFALSE}).bin(le32({2})).raw({op::TUPLE, op::BUILD});
    CHECK(contains(refused(twice), "BUILD applied twice"));
    NumpyPickle structured;
    structured.global("numpy", "dtype").str("f8").raw({op::NEWFALSE, op::NEWTRUE, op::TUPLE3, op::REDUCE});
    structured.raw({op::MARK}).i1(3).str("<").raw({op::NONE}).raw({op::EMPTY_TUPLE}).raw({op::NONE});
    structured.minus_one().minus_one().i1(0).raw({op::TUPLE, op::BUILD});
    CHECK(contains(refused(structured), "structured dtypes are not read"));
    NumpyPickle bare_dtype;
    bare_dtype.dtype("f8", "<");
    CHECK(contains(refused(bare_dtype), "bare numpy.dtype"));
  }

  TEST_CASE("numpy values are refused altogether when LoadOptions::numpy is false") {
    Value v = Value::make_dict();
    v["metric"] = NumpyValue{Tensor::from_values<double>(DType::Float64, {}, std::vector<double>{1.0}), true};
    const auto image = save_to_memory(v);
    LoadOptions opt;
    opt.numpy = false;
    try {
      load(image, opt);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Refused);
      CHECK(contains(e.what(), "numpy values are switched off"));
    }
  }

  TEST_CASE("torch.device: only the device types torch knows, indices 0..127") {
    auto device = [](const std::string& type, int index) {
      P p;
      p.global("torch", "device").str(type);
      if (index >= 0)
        p.raw({op::BININT, static_cast<std::uint8_t>(index), static_cast<std::uint8_t>(index >> 8), 0, 0});
      p.raw({index >= 0 ? op::TUPLE2 : op::TUPLE1, op::REDUCE}).stop();
      return p;
    };
    CHECK(read(device("cuda", 3)).as_device().to_string() == "cuda:3");
    CHECK(read(device("cuda:2", -1)).as_device().to_string() == "cuda:2");
    CHECK(read(device("meta", -1)).as_device().to_string() == "meta");
    CHECK(contains(refusal(device("os.system", -1)), "not one torch knows"));
    CHECK(contains(refusal(device("cuda", 300)), "outside 0..127"));
    CHECK(contains(refusal(device("cuda:x", -1)), "no valid index"));
  }

  TEST_CASE("first_difference names the key path and what differs") {
    Value a = Value::make_dict();
    a["net"]["w"] = Tensor::zeros(DType::Float32, {2});
    a["shape"] = Value::make_torch_size({2});
    a["lr"] = 0.1;
    Value b = a;
    CHECK(identical(a, b));
    b["shape"] = Value::make_tuple({Value(2)});
    auto d = first_difference(a, b);
    REQUIRE(d);
    CHECK(d->path == "shape");
    CHECK(d->what == "torch.Size vs tuple");
    b = a;
    b["net"]["w"] = Tensor::zeros(DType::Float32, {3});
    CHECK(first_difference(a, b)->path == "net/w");
    b = a;
    b["lr"] = -0.0;
    a["lr"] = 0.0;
    CHECK(first_difference(a, b)->what == "float differs");  // bit for bit: 0.0 is not -0.0
  }

  TEST_CASE("numpy shapes numpy itself refuses are refused: too many dimensions, sizes past int64") {
    auto array_with_dims = [](const std::vector<std::uint64_t>& dims, bool fortran) {
      NumpyPickle p;
      p.array_head().raw({op::MARK}).i1(1).raw({op::MARK});
      for (auto d : dims) {
        p.b.push_back(op::LONG1);
        p.b.push_back(8);
        for (int i = 0; i < 8; ++i) p.b.push_back(static_cast<std::uint8_t>(d >> (8 * i)));
      }
      p.raw({op::TUPLE});
      p.dtype("u1", "|").raw({fortran ? op::NEWTRUE : op::NEWFALSE}).bin("").raw({op::TUPLE, op::BUILD});
      return p;
    };
    // 65 dimensions of 1 and a 0: no element, but numpy's 64-dimension limit (a Fortran copy
    // of 10^6 dimensions would take elements x dimensions steps).
    NumpyPickle deep = array_with_dims(std::vector<std::uint64_t>(65, 0), true);
    CHECK(contains(refusal(deep.stop()), "numpy array of 65 dimensions (numpy allows 64)"));
    // An empty array whose other dimensions overflow int64 however they are ordered.
    for (auto dims :
         {std::vector<std::uint64_t>{0, 4, 1ull << 62}, std::vector<std::uint64_t>{1ull << 62, 4, 0}}) {
      NumpyPickle huge = array_with_dims(dims, false);
      CHECK(contains(refusal(huge.stop()), "is too large (numpy refuses it)"));
    }
  }

  TEST_CASE("the writer references a numpy value met again instead of writing it again") {
    const NumpyValue big{Tensor::zeros(DType::UInt8, {1 << 20}), false};
    Value v = Value::make_list();
    for (int i = 0; i < 50; ++i) v.items().push_back(big);
    const auto image = save_to_memory(v);
    CHECK(image.size() < (3u << 20));  // one copy (latin-1 text of zeros: 1 MiB), not 50
    CHECK(identical(load(image), v));
  }

  TEST_CASE("the writer refuses numpy and device values no reader could take back") {
    Value scalar_1d = NumpyValue{Tensor::zeros(DType::Float64, {1}), true};
    CHECK(contains(test::error_message([&] { save_to_memory(scalar_1d); }), "must be 0-dimensional"));
    Value no_data = NumpyValue{};
    CHECK(contains(test::error_message([&] { save_to_memory(no_data); }), "without data"));
    Value bad_device = TorchDevice{"os.system", std::nullopt};
    CHECK(contains(test::error_message([&] { save_to_memory(bad_device); }), "is not one torch can make"));
  }
}
