// libFuzzer target: the restricted pickle machine alone (sgckpt::pickle::read), with a
// resolver handing out zeroed storages up to 1 MiB. See fuzz_targets.hpp.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sgckpt_fuzz::pickle_one(data, size);
}
