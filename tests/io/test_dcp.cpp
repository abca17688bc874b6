// torch.distributed.checkpoint directories: what one process or a group of ranks saves loads
// back whole, in the blocks of another world size, and as torch's own planner would nest it;
// a save is published whole or not at all; a hostile .metadata is refused with the reason and
// where. (tests/python/test_dcp.py checks both directions against torch 2.x's dcp.save/load.)
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/engine/dist/dcp_group.hpp"
#include "sgckpt/engine/dist/threads.hpp"
#include "sgckpt/io/dcp.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
using namespace std::chrono_literals;
using sgckpt::test::contains;
using sgckpt::test::error_of;
using sgckpt::test::TempDir;
namespace dist = sgckpt::engine::dist;

namespace {

Tensor iota(DType d, Shape shape, float start = 0.0f) {
  std::size_t n = 1;
  for (auto s : shape) n *= static_cast<std::size_t>(s);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<float>(i);
  return cast(Tensor::from_values(DType::Float32, shape, std::span<const float>(v)), d);
}

// Rows [begin, end) of a 2-D float tensor, as a rank of a row-sharded tensor holds them.
Tensor rows(const Tensor& t, std::int64_t begin, std::int64_t end) {
  const auto cols = t.shape()[1];
  std::vector<float> all(t.data<float>(), t.data<float>() + t.numel());
  std::vector<float> part(all.begin() + begin * cols, all.begin() + end * cols);
  return Tensor::from_values(DType::Float32, {end - begin, cols}, std::span<const float>(part));
}

// Runs f(rank, collective) on `n` threads; returns each rank's error text ("" when none).
template <class F>
std::vector<std::string> on_ranks(int n, F f) {
  auto ranks = dist::ThreadGroup::create(n, 20s);
  std::vector<std::string> errors(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        f(r, *ranks[static_cast<std::size_t>(r)]);
      } catch (const Error& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

Value sample_state() {
  Value s = Value::make_dict();
  s["model"]["fc.weight"] = iota(DType::Float32, {3, 4});
  s["model"]["fc.bias"] = iota(DType::BFloat16, {3}, 1.0f);
  s["model"]["steps"] = iota(DType::Int64, {});
  s["model"]["empty"] = Tensor::empty(DType::Float32, {0, 5});
  Value state = Value::make_dict();
  state[0]["momentum_buffer"] = iota(DType::Float32, {3, 4}, 100.0f);
  s["optimizer"]["state"] = state;
  Value group = Value::make_dict();
  group["lr"] = 0.1;
  group["params"] = Value::make_list({Value(0), Value(1)});
  s["optimizer"]["param_groups"] = Value::make_list({group});
  s["epoch"] = 7;
  s["name"] = "run";
  s["views"] = Value::make_list({Value(iota(DType::Float32, {2})), Value(iota(DType::Float32, {1}, 5.0f))});
  return s;
}

}  // namespace

TEST_SUITE("dcp") {
  TEST_CASE("one process: what is saved loads back whole, with torch's flat keys and nesting") {
    TempDir tmp;
    const auto dir = tmp / "ckpt";
    dcp::save(sample_state(), dir);
    CHECK(std::filesystem::exists(dir / ".metadata"));
    CHECK(std::filesystem::exists(dir / "__0_0.distcp"));

    const auto md = dcp::read_metadata(dir);
    REQUIRE(md.find("model.fc.weight"));
    CHECK(md.find("model.fc.weight")->tensor->size == Shape{3, 4});
    REQUIRE(md.find("optimizer.state.0.momentum_buffer"));
    CHECK(md.find("optimizer.param_groups.0.lr"));
    CHECK_FALSE(md.find("optimizer.param_groups.0.lr")->tensor);
    CHECK(md.find("views.1"));  // a list holding tensors is walked by index

    const Value back = dcp::load(dir);
    CHECK(back["model"]["fc.weight"].tensor().equal(iota(DType::Float32, {3, 4})));
    CHECK(back["model"]["fc.bias"].tensor().equal(iota(DType::BFloat16, {3}, 1.0f)));
    CHECK(back["model"]["steps"].tensor().dim() == 0);
    CHECK(back["model"]["empty"].tensor().shape() == Shape{0, 5});
    // Every dict key comes back as its str, as torch's planner_data records it.
    CHECK(back["optimizer"]["state"]["0"]["momentum_buffer"].tensor().equal(
        iota(DType::Float32, {3, 4}, 100.0f)));
    CHECK(back["optimizer"]["param_groups"].is_list());
    CHECK(back["optimizer"]["param_groups"][0]["lr"].as_float() == 0.1);
    CHECK(back["optimizer"]["param_groups"][0]["params"].items().size() == 2);
    CHECK(back["epoch"].as_int() == 7);
    CHECK(back["name"].as_str() == "run");
    CHECK(back["views"][1].tensor().equal(iota(DType::Float32, {1}, 5.0f)));
  }

  TEST_CASE("two ranks save one row-sharded tensor; it loads whole, and in the blocks of three ranks") {
    TempDir tmp;
    const auto dir = tmp / "ckpt";
    const Tensor w = iota(DType::Float32, {6, 4});
    const auto errors = on_ranks(2, [&](int r, dist::Collective& c) {
      Value s = Value::make_dict();
      s["w"] = rows(w, 3 * r, 3 * r + 3);
      s["b"] = iota(DType::Float32, {4}, 50.0f);  // replicated: written by one rank only
      s["step"] = 11;
      dcp::save(s, dir, dist::dcp_group(c), {{"w", {{6, 4}, {3 * r, 0}}}});
    });
    CHECK(errors == std::vector<std::string>(2));
    CHECK(std::filesystem::exists(dir / "__0_0.distcp"));
    CHECK(std::filesystem::exists(dir / "__1_0.distcp"));
    const auto md = dcp::read_metadata(dir);
    CHECK(md.find("w")->tensor->chunks.size() == 2);
    CHECK(md.find("b")->tensor->chunks.size() == 1);

    CHECK(dcp::load(dir)["w"].tensor().equal(w));
    for (int r = 0; r < 3; ++r) {  // another world size: rows 2r, 2r+1
      Value target = Value::make_dict();
      target["w"] = Tensor::zeros(DType::Float32, {2, 4});
      target["b"] = Tensor::zeros(DType::Float32, {4});
      target["step"] = 0;
      dcp::load_into(target, dir, {{"w", {{6, 4}, {2 * r, 0}}}});
      CHECK(target["w"].tensor().equal(rows(w, 2 * r, 2 * r + 2)));
      CHECK(target["b"].tensor().equal(iota(DType::Float32, {4}, 50.0f)));
      CHECK(target["step"].as_int() == 11);
    }
    // A region across the two saved chunks reads both.
    const Tensor mid = dcp::load_region(dir, md, "w", {{2, 1}, {2, 3}});
    CHECK(mid.at<float>({0, 0}) == 9.0f);
    CHECK(mid.at<float>({1, 2}) == 15.0f);
  }

  TEST_CASE(
      "save_split writes a whole state as N ranks would hold it, rows split as torch.chunk splits them") {
    TempDir tmp;
    const auto dir = tmp / "ckpt";
    Value s = sample_state();
    s["rows7"] = iota(DType::Float32, {7, 3});
    dcp::save_split(s, dir, 3);
    const auto md = dcp::read_metadata(dir);
    const auto& chunks = md.find("rows7")->tensor->chunks;
    REQUIRE(chunks.size() == 3);
    CHECK(chunks[0] == dcp::Chunk{{0, 0}, {3, 3}});
    CHECK(chunks[1] == dcp::Chunk{{3, 0}, {3, 3}});
    CHECK(chunks[2] == dcp::Chunk{{6, 0}, {1, 3}});
    CHECK(md.find("views.0")->tensor->chunks.size() == 3);      // 2 rows: the third rank's block is empty
    CHECK(md.find("model.steps")->tensor->chunks.size() == 1);  // 0-dim: held by all, written once
    for (int r = 0; r < 3; ++r)
      CHECK(std::filesystem::exists(dir / ("__" + std::to_string(r) + "_0.distcp")));
    const Value back = dcp::load(dir);
    CHECK(back["rows7"].tensor().equal(iota(DType::Float32, {7, 3})));
    CHECK(back["model"]["fc.weight"].tensor().equal(iota(DType::Float32, {3, 4})));
    CHECK(back["views"][0].tensor().equal(iota(DType::Float32, {2})));
  }

  TEST_CASE("a save is published whole: a failing rank fails it everywhere and the old checkpoint stays") {
    TempDir tmp;
    const auto dir = tmp / "ckpt";
    Value old = Value::make_dict();
    old["w"] = iota(DType::Float32, {2, 2});
    dcp::save(old, dir);
    const auto errors = on_ranks(2, [&](int r, dist::Collective& c) {
      Value s = Value::make_dict();
      s["w"] = iota(DType::Float32, {2, 2}, 10.0f);
      // Rank 1 claims a block that overlaps rank 0's: the save must not be published.
      dcp::save(s, dir, dist::dcp_group(c), {{"w", {{3, 2}, {r, 0}}}});
    });
    CHECK(contains(errors[0], "overlap"));
    CHECK(contains(errors[1], "overlap"));
    CHECK(dcp::load(dir)["w"].tensor().equal(iota(DType::Float32, {2, 2})));
    for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
      CHECK_MESSAGE(e.path().filename() == "ckpt", "left behind: " << e.path());

    Value next = Value::make_dict();
    next["w"] = iota(DType::Float32, {2, 2}, 20.0f);
    dcp::save(next, dir);  // replaces the checkpoint
    CHECK(dcp::load(dir)["w"].tensor().equal(iota(DType::Float32, {2, 2}, 20.0f)));
  }

  TEST_CASE("blocks that leave part of a tensor unsaved fail the save on every rank") {
    TempDir tmp;
    const auto errors = on_ranks(2, [&](int r, dist::Collective& c) {
      Value s = Value::make_dict();
      s["w"] = iota(DType::Float32, {1, 2});
      dcp::save(s, tmp / "ckpt", dist::dcp_group(c), {{"w", {{4, 2}, {2 * r, 0}}}});  // rows 0 and 2 of 4
    });
    CHECK(contains(errors[0], "cover 4 of the tensor's 8 elements"));
    CHECK(contains(errors[1], "cover 4 of the tensor's 8 elements"));
    CHECK_FALSE(std::filesystem::exists(tmp / "ckpt"));
  }

  TEST_CASE("a save never replaces a directory that is not a DCP checkpoint") {
    TempDir tmp;
    std::filesystem::create_directories(tmp / "run");
    sgckpt::test::write_file(tmp / "run" / "notes.txt", sgckpt::test::as_bytes("keep me"));
    const auto e = error_of([&] { dcp::save(sample_state(), tmp / "run"); });
    CHECK(contains(e.what(), "not a DCP checkpoint"));
    CHECK(std::filesystem::exists(tmp / "run" / "notes.txt"));
  }

  TEST_CASE("a hostile .metadata is refused with the reason, the file and the key") {
    TempDir tmp;
    const auto dir = tmp / "ckpt";
    Value s = Value::make_dict();
    s["w"] = iota(DType::Float32, {4, 2});
    dcp::save(s, dir);
    const dcp::Metadata good = dcp::read_metadata(dir);
    auto with = [&](auto edit) {
      dcp::Metadata md;
      dcp::Entry e = *good.find("w");
      edit(e);
      md.add(e);
      const auto bytes = detail::dcp::write_metadata_bytes(md);
      sgckpt::test::write_file(dir / ".metadata", std::as_bytes(std::span(bytes)));
      return error_of([&] { (void)dcp::load(dir); });
    };
    auto e = with([](dcp::Entry& x) { x.tensor->chunks[0].sizes = {5, 2}; });
    CHECK(e.kind() == ErrorKind::Corrupt);
    CHECK(contains(e.what(), "outside the tensor"));
    CHECK(e.context().key_path == "w");
    CHECK(contains(e.context().file, ".metadata"));

    e = with([](dcp::Entry& x) {
      x.tensor->chunks = {{{0, 0}, {3, 2}}, {{2, 0}, {2, 2}}};
      x.storage.push_back(x.storage[0]);
    });
    CHECK(contains(e.what(), "overlap"));

    e = with([](dcp::Entry& x) { x.storage[0].offset = 1u << 30; });
    CHECK(e.kind() == ErrorKind::Truncated);
    CHECK(contains(e.what(), "runs past the end of the file"));

    e = with([](dcp::Entry& x) {  // two chunks read from the same bytes: a small file as a large tensor
      x.tensor->chunks = {{{0, 0}, {2, 2}}, {{2, 0}, {2, 2}}};
      x.storage.push_back(x.storage[0]);
    });
    CHECK(contains(e.what(), "share bytes"));

    e = with([](dcp::Entry& x) { x.storage[0].relative_path = "../../etc/passwd"; });
    CHECK(e.kind() == ErrorKind::Refused);
    CHECK(contains(e.what(), "not a plain file name"));

    e = with([](dcp::Entry& x) {
      x.tensor->size = {1000000, 1000000};
      x.tensor->chunks[0].sizes = {1000000, 1000000};
    });
    CHECK(contains(e.what(), "claims more data than its image"));

    e = with([](dcp::Entry& x) { x.tensor->chunks[0].sizes = {2, 2}; });  // half the tensor is missing
    CHECK(contains(e.what(), "cover"));

    e = with([](dcp::Entry& x) { x.tensor->dtype = DType::Float64; });  // the image holds float32
    CHECK(contains(e.what(), "the metadata says float64"));

    // Any other global is refused by the restricted machine, before anything is made.
    const std::string evil = std::string(
                                 "\x80\x02"
                                 "cos\nsystem\n",
                                 13) +
                             "X\x02\x00\x00\x00id\x85R.";
    sgckpt::test::write_file(dir / ".metadata", sgckpt::test::as_bytes(evil));
    e = error_of([&] { (void)dcp::read_metadata(dir); });
    CHECK(e.kind() == ErrorKind::Refused);
    CHECK(contains(e.what(), "os.system"));
  }
}
