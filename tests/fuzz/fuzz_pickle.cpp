// libFuzzer target: the restricted pickle machine alone (sgckpt::detail::pickle::read), with a
// resolver handing out zeroed storages up to 1 MiB (fuzz_targets.hpp), and a
// structure-aware mutator that works on whole opcodes (pickle_mutator.hpp).
#include "fuzz_targets.hpp"
#include "pickle_mutator.hpp"

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sgckpt_fuzz::pickle_one(data, size);
}

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  const std::size_t n = sgckpt_fuzz::mutate_pickle(data, size, max_size, seed);
  return n != 0 ? n : LLVMFuzzerMutate(data, size, max_size);
}
