// A consumer of the installed (or add_subdirectory'd) library: builds a small State and
// checks what it holds. Exit status 0 on success.
#if __has_include(<sgckpt/sgckpt.hpp>)
#include <sgckpt/sgckpt.hpp>
#else
#include <sgckpt/core/state.hpp>
#endif

#include <array>
#include <cstdio>
#include <span>

int main() {
  try {
    sgckpt::State<> state;
    const std::array<float, 6> w{0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
    state["weight"] =
        sgckpt::Tensor::from_values<float>(sgckpt::DType::Float32, {2, 3}, std::span<const float>(w));
    state["epoch"] = 12;
    state["name"] = "resnet18";

    const auto& t = state.at("weight").tensor();
    const bool ok = t.numel() == 6 && t.at<float>({1, 2}) == 5.5f && state.at("epoch").as_int() == 12 &&
                    state.at("name").as_str() == "resnet18";
    std::printf("sgckpt consumer: %s\n", ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sgckpt consumer: %s\n", e.what());
    return 1;
  }
}
