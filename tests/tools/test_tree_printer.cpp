// Tests of tools/sgckpt/tree_printer.hpp: the readable tree of `sgckpt inspect`.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "../../tools/sgckpt/tree_printer.hpp"

using sgckpt::DictKind;
using sgckpt::DType;
using sgckpt::Tensor;
using sgckpt::Value;
using sgckpt::tool::render_tree;
using sgckpt::tool::TreeOptions;

TEST_CASE("tree: a training checkpoint with views, Parameters and scalars") {
  Tensor base = Tensor::zeros(DType::Float32, {3, 4});
  Value root = Value::make_dict();
  root["epoch"] = 5;
  Value model = Value::make_ordered_dict();
  model["fc.weight"] = Value::make_parameter(base, true);
  model["fc.t"] = Tensor::view_of(base.storage(), DType::Float32, 0, {4, 3}, {1, 4});
  model["fc.part"] = Tensor::view_of(base.storage(), DType::Float32, 5, {2, 2}, {4, 1});
  model["bn.num_batches_tracked"] = Tensor::zeros(DType::Int64, {});
  model.dict().set_attribute("_metadata", Value::make_ordered_dict());
  root["model"] = model;
  Value state = Value::make_dict();
  Value s0 = Value::make_dict();
  s0["momentum_buffer"] =
      sgckpt::TensorValue<Tensor>{Tensor::zeros(DType::BFloat16, {1024, 1024}), true, false};
  state.dict().set(sgckpt::Key(0), s0);
  Value opt = Value::make_dict();
  opt["state"] = state;
  opt["param_groups"] = Value::make_list({Value::make_dict()});
  opt["param_groups"][std::size_t{0}]["lr"] = 0.1;
  opt["param_groups"][std::size_t{0}]["nesterov"] = false;
  opt["param_groups"][std::size_t{0}]["betas"] = Value::make_tuple({0.9, 0.999});
  root["optimizer_state_dict"] = opt;
  Value counter = Value::make_dict(DictKind::Counter);
  counter.dict().set(sgckpt::Key(30), 1);
  root["milestones"] = counter;
  root["note"] = "line\nbreak \"q\"";
  root["none"] = nullptr;
  root["inf"] = std::numeric_limits<double>::infinity();

  CHECK(
      render_tree(root) ==
      "<root>: dict, 7 items\n"
      "  epoch: int 5\n"
      "  model: OrderedDict, 4 items, attributes: _metadata\n"
      "    model/fc.weight: Parameter float32 [3, 4], 48 bytes, requires_grad\n"
      "    model/fc.t: tensor float32 [4, 3] strides [1, 4], 48 bytes, shares storage with model/fc.weight\n"
      "    model/fc.part: tensor float32 [2, 2] strides [4, 1] offset 5, 16 bytes, shares storage with "
      "model/fc.weight\n"
      "    model/bn.num_batches_tracked: tensor int64 [], 8 bytes\n"
      "  optimizer_state_dict: dict, 2 items\n"
      "    optimizer_state_dict/state: dict, 1 item\n"
      "      optimizer_state_dict/state/0: dict, 1 item\n"
      "        optimizer_state_dict/state/0/momentum_buffer: tensor bfloat16 [1024, 1024], 2097152 bytes "
      "(2.00 MiB), requires_grad\n"
      "    optimizer_state_dict/param_groups: list, 1 item\n"
      "      optimizer_state_dict/param_groups/0: dict, 3 items\n"
      "        optimizer_state_dict/param_groups/0/lr: float 0.1\n"
      "        optimizer_state_dict/param_groups/0/nesterov: bool False\n"
      "        optimizer_state_dict/param_groups/0/betas: tuple, 2 items\n"
      "          optimizer_state_dict/param_groups/0/betas/0: float 0.9\n"
      "          optimizer_state_dict/param_groups/0/betas/1: float 0.999\n"
      "  milestones: Counter, 1 item\n"
      "    milestones/30: int 1\n"
      "  note: str \"line\\nbreak \\\"q\\\"\"\n"
      "  none: None\n"
      "  inf: float inf\n"
      "total: 5 tensors, 3 storages, 2097272 tensor bytes, 2097208 storage bytes\n"
      "state dicts: model 4 tensors, 29 elements\n");
}

TEST_CASE("tree: a bare tensor, long strings and odd keys") {
  CHECK(render_tree(Value(Tensor::zeros(DType::Float64, {2}))) ==
        "<root>: tensor float64 [2], 16 bytes\n"
        "total: 1 tensor, 1 storage, 16 tensor bytes, 16 storage bytes\n");
  CHECK(render_tree(Value::make_list()) ==
        "<root>: list, 0 items\ntotal: 0 tensors, 0 storages, 0 tensor bytes, 0 storage bytes\n");

  TreeOptions o;
  o.max_string_bytes = 5;
  // Cut at a character boundary: "ab" + "é" (2 bytes) fits in 5 bytes, "日" (3 bytes) does not.
  CHECK(render_tree(Value("ab\xC3\xA9\xE6\x97\xA5z"), o) ==
        "<root>: str \"ab\xC3\xA9\"... (8 bytes)\n"
        "total: 0 tensors, 0 storages, 0 tensor bytes, 0 storage bytes\n");
  CHECK(render_tree(Value("12345"), o).starts_with("<root>: str \"12345\"\n"));

  Value d = Value::make_dict();
  d["tab\there"] = std::string("\xFF\x01", 2);
  d.dict().set(sgckpt::Key(-3), sgckpt::Int(std::numeric_limits<std::int64_t>::min()));
  d["seps"] =
      "a\xC2\x85"
      "b\xE2\x80\xA8"
      "c\xED\xA0\x80"
      "d\x7F";  // NEL, U+2028, a surrogate, DEL
  CHECK(render_tree(d) ==
        "<root>: dict, 3 items\n"
        "  tab\\there: str \"\\xff\\x01\"\n"
        "  -3: int -9223372036854775808\n"
        "  seps: str \"a\\u0085b\\u2028c\\ud800d\\x7f\"\n"
        "total: 0 tensors, 0 storages, 0 tensor bytes, 0 storage bytes\n");
}

TEST_CASE("tree: byte sizes") {
  using sgckpt::tool::text::byte_size;
  CHECK(byte_size(0) == "0 bytes");
  CHECK(byte_size(1) == "1 byte");
  CHECK(byte_size(1023) == "1023 bytes");
  CHECK(byte_size(1536) == "1536 bytes (1.50 KiB)");
  CHECK(byte_size(std::uint64_t{5} << 30) == "5368709120 bytes (5.00 GiB)");
}

TEST_CASE("tree: bytes values in Python's b\"\" spelling") {
  Value d = Value::make_dict();
  d["b"] = sgckpt::Bytes{std::string("ab\"\\\n\x00\xff", 7)};
  TreeOptions o;
  o.max_string_bytes = 3;
  d["cut"] = sgckpt::Bytes{"abcdef"};
  CHECK(render_tree(d) ==
        "<root>: dict, 2 items\n"
        "  b: bytes b\"ab\\\"\\\\\\n\\x00\\xff\"\n"
        "  cut: bytes b\"abcdef\"\n"
        "total: 0 tensors, 0 storages, 0 tensor bytes, 0 storage bytes\n");
  CHECK(render_tree(d, o).find("  cut: bytes b\"abc\"... (6 bytes)\n") != std::string::npos);
}

TEST_CASE("tree: torch.dtype, torch.device, torch.Size and numpy values") {
  Value v = Value::make_dict();
  v["dtype"] = DType::Float16;
  v["device"] = sgckpt::TorchDevice{"cuda", 1};
  v["size"] = Value::make_torch_size({2, 3});
  v["acc"] =
      sgckpt::NumpyValue{Tensor::from_values<double>(DType::Float64, {}, std::vector<double>{0.5}), true};
  v["big"] = sgckpt::NumpyValue{
      Tensor::from_values<std::uint64_t>(DType::UInt64, {}, std::vector<std::uint64_t>{~0ull}), true};
  v["metrics"] = sgckpt::NumpyValue{Tensor::zeros(DType::Float64, {3}), false};
  CHECK(render_tree(v) ==
        "<root>: dict, 6 items\n"
        "  dtype: dtype torch.float16\n"
        "  device: device cuda:1\n"
        "  size: torch.Size [2, 3]\n"
        "  acc: numpy scalar float64 0.5\n"
        "  big: numpy scalar uint64 18446744073709551615\n"
        "  metrics: numpy array float64 [3], 24 bytes\n"
        "total: 0 tensors, 0 storages, 0 tensor bytes, 0 storage bytes\n");
}

TEST_CASE("tree: --depth shows the first levels, the totals count everything") {
  Value root = Value::make_dict();
  root["net"]["w"] = Tensor::zeros(DType::Float32, {2, 3});
  root["net"]["b"] = Tensor::zeros(DType::Float32, {3});
  TreeOptions o;
  o.max_depth = 1;
  CHECK(render_tree(root, o) ==
        "<root>: dict, 1 item\n"
        "  net: dict, 2 items\n"
        "total: 2 tensors, 2 storages, 36 tensor bytes, 36 storage bytes\n"
        "state dicts: net 2 tensors, 9 elements\n");
}
