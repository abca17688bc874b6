// The compiled mode (sgckpt::sgckpt_compiled): this file sees only the declarations of load
// and save (io/pth_api.hpp), links their one compiled definition, and round-trips a state.
#include <sgckpt/sgckpt.hpp>

#include <cstdio>
#include <exception>

#ifndef SGCKPT_COMPILED
#error "built against sgckpt::sgckpt_compiled, which defines SGCKPT_COMPILED"
#endif
#ifdef SGCKPT_CRC32_PCLMUL  // defined by detail/zip/crc32.hpp, part of the implementation
#error "the compiled mode must not include the implementation of load and save"
#endif

constexpr float kValues[2] = {1.0f, 2.5f};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: sgckpt_compiled_smoke OUT.pth\n");
    return 2;
  }
  try {
    sgckpt::Value state = sgckpt::Value::make_dict();
    state["epoch"] = 3;
    state["w"] = sgckpt::Tensor::from_values(sgckpt::DType::Float32, {2}, std::span<const float>(kValues));
    sgckpt::save(state, argv[1]);
    const sgckpt::Value back = sgckpt::load(argv[1]);
    const bool same = back.at("epoch").as_int() == 3 && back.at("w").tensor().data<float>()[1] == 2.5f &&
                      sgckpt::load(sgckpt::save_to_memory(state)).at("epoch").as_int() == 3;
    std::printf("compiled mode: save + load %s\n", same ? "round-trip" : "DIFFER");
    return same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compiled mode: %s\n", e.what());
    return 1;
  }
}
