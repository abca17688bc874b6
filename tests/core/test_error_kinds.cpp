// Every sgckpt::Error has a kind (docs/errors.md): the stable part of an error that callers
// switch on, while the message may be reworded. One failure of each kind, from each layer.
#include <doctest/doctest.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../test_support.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/sgckpt.hpp"

using namespace sgckpt;
namespace pickle = sgckpt::detail::pickle;  // the pickle machine alone
namespace fs = std::filesystem;

namespace {

template <class F>
ErrorKind kind_of(F&& f) {
  return test::error_of(std::forward<F>(f)).kind();
}

std::vector<std::byte> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) out[i] = static_cast<std::byte>(chars[i]);
  return out;
}

Value read_pickle(const std::string& bytes, Limits limits = {}) {
  pickle::ReaderConfig cfg;
  cfg.limits = limits;
  auto no_storage = [](const pickle::StorageRequest&) -> std::shared_ptr<Storage> {
    throw Error("no storages here");
  };
  return pickle::read(std::as_bytes(std::span(bytes.data(), bytes.size())), no_storage, cfg);
}

Value tensor_dict(const char* key) {
  Value d = Value::make_ordered_dict();
  d[key] = Value(Tensor::zeros(DType::Float32, {2}));
  return d;
}

}  // namespace

TEST_SUITE("core/error_kinds") {
  TEST_CASE("an Error built without a kind is a usage error; added context keeps the kind") {
    CHECK(Error("bad argument").kind() == ErrorKind::Usage);
    const Error e = Error(ErrorKind::Corrupt, "bad bytes", ErrorContext::at_offset(3))
                        .with_file("a.pth")
                        .with_key_path("net");
    CHECK(e.kind() == ErrorKind::Corrupt);
    CHECK(std::string(e.what()) == "bad bytes (file 'a.pth', byte offset 3, key path 'net')");
    CHECK(std::string(kind_name(ErrorKind::Mismatch)) == "mismatch");
    CHECK(std::string(kind_name(ErrorKind::Timeout)) == "timeout");
  }

  TEST_CASE("reading a file: io, refused, truncated, corrupt, limit") {
    test::TempDir dir;
    CHECK(kind_of([&] { load(dir.path() / "missing.pth"); }) == ErrorKind::Io);
    CHECK(kind_of([&] { load(dir.path()); }) == ErrorKind::Refused);  // a directory, not a file

    save(tensor_dict("w"), dir.path() / "ok.pth");
    const std::vector<std::byte> ok = file_bytes(dir.path() / "ok.pth");
    auto load_bytes = [](std::span<const std::byte> b, LoadOptions o = {}) { return load(b, o, "mem.pth"); };
    CHECK(kind_of([&] { load_bytes({}); }) == ErrorKind::Truncated);  // an empty file
    const std::vector<std::byte> junk(100, std::byte{0x41});
    CHECK(kind_of([&] { load_bytes(junk); }) == ErrorKind::Corrupt);  // neither zip nor legacy torch
    std::vector<std::byte> flipped = ok;
    flipped[0] ^= std::byte{0xFF};  // the first record's signature
    CHECK(kind_of([&] { load_bytes(flipped); }) == ErrorKind::Corrupt);
    LoadOptions one_record;
    one_record.limits.max_zip_entries = 1;
    CHECK(kind_of([&] { load_bytes(ok, one_record); }) == ErrorKind::Limit);
  }

  TEST_CASE("reading a pickle: truncated, corrupt, refused, limit") {
    CHECK(kind_of([] { read_pickle("\x80\x02"); }) == ErrorKind::Truncated);  // no STOP
    CHECK(kind_of([] { read_pickle("\x80\x02."); }) == ErrorKind::Corrupt);   // STOP, nothing to return
    CHECK(kind_of([] {
            read_pickle(
                "\x80\x02"
                "cos\nsystem\n.");
          }) == ErrorKind::Refused);  // a global
    Limits few;
    few.max_values = 2;
    CHECK(kind_of([&] { read_pickle("\x80\x02]]]]e.", few); }) == ErrorKind::Limit);
  }

  TEST_CASE("using what was read: schema and mismatch") {
    const Value empty = Value::make_dict();
    CHECK(kind_of([&] { (void)empty.at("net"); }) == ErrorKind::Schema);
    CHECK(kind_of([] { (void)Value(1).dict(); }) == ErrorKind::Schema);

    Value model = tensor_dict("w");
    Value checkpoint = Value::make_dict();
    checkpoint["net"] = tensor_dict("v");
    CHECK(kind_of([&] { load_checkpoint_to_model(model, checkpoint); }) == ErrorKind::Mismatch);
  }
}
