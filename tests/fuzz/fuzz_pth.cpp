// libFuzzer target: the whole reader (sgckpt::load on the input bytes). See fuzz_targets.hpp.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sgckpt_fuzz::pth_one(data, size);
}
