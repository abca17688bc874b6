// TensorBoard event files: the record framing and its CRC, scalars, and the repair of a torn
// tail (tests/python/test_tensorboard.py reads the files with TensorBoard's own reader).
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "../test_support.hpp"
#include "sgckpt/engine/train/tensorboard.hpp"

using namespace sgckpt::engine;

namespace {
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_SUITE("engine/tensorboard") {
  TEST_CASE("CRC-32C has its standard check value, and TFRecord's mask rotates and offsets it") {
    CHECK(tensorboard::crc32c("123456789", 9) == 0xE3069283u);
    CHECK(tensorboard::masked_crc32c("123456789", 9) == 0xC78AB0E5u);
  }

  TEST_CASE("a record is length, masked CRC of the length, data, masked CRC of the data") {
    const std::string data = tensorboard::file_version_event(1.0);
    const std::string r = tensorboard::record(data);
    REQUIRE(r.size() == data.size() + 16);
    CHECK(static_cast<unsigned char>(r[0]) == data.size());
    CHECK(r.substr(12, data.size()) == data);
    CHECK(data.find("brain.Event:2") != std::string::npos);
    CHECK(tensorboard::valid_prefix(r) == r.size());
    CHECK(tensorboard::valid_prefix(r.substr(0, r.size() - 1)) == 0);
    std::string flipped = r;
    flipped[14] ^= 1;
    CHECK(tensorboard::valid_prefix(flipped) == 0);
  }

  TEST_CASE("a writer starts with the file version; a torn tail is cut back to the last whole record") {
    const sgckpt::test::TempDir dir;
    std::filesystem::path file;
    {
      EventWriter w(dir.path());
      file = w.path();
      CHECK(file.filename().string().rfind("events.out.tfevents.", 0) == 0);
      w.add_scalar("Train_Loss", 2.5, 0);
      w.add_scalar("Valid_Accuracy", 0.75, 0);
      w.flush();
    }
    const std::string whole = slurp(file);
    CHECK(tensorboard::valid_prefix(whole) == whole.size());
    // A process killed inside a write leaves part of a record.
    const std::string torn = tensorboard::record(tensorboard::scalar_event("Train_Loss", 1.0f, 1, 0.0));
    {
      std::ofstream out(file, std::ios::binary | std::ios::app);
      out << torn.substr(0, torn.size() / 2);
    }
    CHECK(repair_event_files(dir.path()) == torn.size() / 2);
    CHECK(slurp(file) == whole);
    CHECK(repair_event_files(dir.path()) == 0);
  }
}
