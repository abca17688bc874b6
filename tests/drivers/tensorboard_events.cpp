// tests/drivers/tensorboard_events: writes TensorBoard event files with known scalars, for
// tests/python/test_tensorboard.py to read with TensorBoard's own EventAccumulator.
//
//   tensorboard_events DIR write FIRST LAST   epochs FIRST..LAST-1: Train_Loss = 1/(e+1),
//                                             Valid_Accuracy = e/10, LR/Param_group_0 = 0.1*0.9^e
//   tensorboard_events DIR tear               appends half a record to every event file in DIR
//                                             (what a process killed mid-write leaves)
//   tensorboard_events DIR repair             cuts torn tails (what a resume does first); prints
//                                             the bytes removed
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "sgckpt/engine/train/tensorboard.hpp"

int main(int argc, char** argv) {
  using namespace sgckpt::engine;
  try {
    if (argc < 3) throw sgckpt::Error("usage: tensorboard_events DIR write FIRST LAST | tear | repair");
    const std::filesystem::path dir = argv[1];
    const std::string what = argv[2];
    if (what == "write" && argc == 5) {
      EventWriter w(dir);
      for (int e = std::atoi(argv[3]); e < std::atoi(argv[4]); ++e) {
        w.add_scalar("Train_Loss", 1.0 / (e + 1), e);
        w.add_scalar("Valid_Accuracy", e / 10.0, e);
        w.add_scalar("LR/Param_group_0", 0.1 * std::pow(0.9, e), e);
        w.flush();
      }
      std::printf("%s\n", w.path().c_str());
    } else if (what == "tear") {
      const std::string r = tensorboard::record(tensorboard::scalar_event("Train_Loss", 9.0f, 99, 0.0));
      for (const auto& f : std::filesystem::directory_iterator(dir)) {
        std::ofstream out(f.path(), std::ios::binary | std::ios::app);
        out << r.substr(0, r.size() / 2);
      }
    } else if (what == "repair") {
      std::printf("%llu\n", static_cast<unsigned long long>(repair_event_files(dir)));
    } else {
      throw sgckpt::Error("unknown command '" + what + "'");
    }
  } catch (const sgckpt::Error& e) {
    std::fprintf(stderr, "tensorboard_events: %s\n", e.what());
    return 1;
  }
  return 0;
}
