// resnet18_init: writes the state_dict of a freshly initialized engine ResNet18 (CIFAR).
//
//   resnet18_init WIDTH CLASSES CHANNELS SEED OUT
//
// WIDTH is SuperGradients' width multiplier (1.0: 64/128/256/512 channels), CLASSES the
// number of classes, CHANNELS the input channels, SEED the engine generator's seed. OUT
// loads into the torch module with load_state_dict(strict=True).
#include <sgckpt/engine/engine.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: resnet18_init WIDTH CLASSES CHANNELS SEED OUT\n");
    return 2;
  }
  try {
    using namespace sgckpt::engine;
    const double width = std::stod(argv[1]);
    const auto classes = std::stoll(argv[2]);
    const auto channels = std::stoll(argv[3]);
    const auto seed = std::stoull(argv[4]);
    nn::ResNet18 model(nn::ResNet18Config::cifar(classes, width, channels), seed);
    sgckpt::save(model.state_dict(), argv[5]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet18_init: error: %s\n", e.what());
    return 1;
  }
}
