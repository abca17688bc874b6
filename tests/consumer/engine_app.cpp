// A consumer of the training engine through sgckpt::engine: builds a small ResNet18, saves its
// state_dict to memory and loads it into a second model. Exit status 0 on success.
#include <sgckpt/engine/engine.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cstdio>
#include <exception>

int main() {
  try {
    namespace nn = sgckpt::engine::nn;
    nn::ResNet18 a(nn::ResNet18Config::cifar(10, 0.0625), /*seed=*/1);
    nn::ResNet18 b(nn::ResNet18Config::cifar(10, 0.0625), /*seed=*/2);
    const auto bytes = sgckpt::save_to_memory(a.state_dict());
    const sgckpt::LoadReport r = b.load_state_dict(sgckpt::load(bytes));
    const bool ok = r.ok && b.conv1.weight.data<float>()[3] == a.conv1.weight.data<float>()[3];
    std::printf("sgckpt engine consumer: %s (%zu tensors)\n", ok ? "ok" : "MISMATCH", r.loaded.size());
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sgckpt engine consumer: %s\n", e.what());
    return 1;
  }
}
