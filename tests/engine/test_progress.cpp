// The progress line train_resnet18 redraws on a terminal.
#include <doctest/doctest.h>

#include <string>

#include "sgckpt/engine/train/progress.hpp"

using namespace sgckpt::engine::train;

TEST_SUITE("engine/progress") {
  TEST_CASE("times read as m:ss, then h:mm:ss") {
    CHECK(clock_text(0) == "0:00");
    CHECK(clock_text(59.6) == "1:00");
    CHECK(clock_text(754) == "12:34");
    CHECK(clock_text(3600 * 2 + 61) == "2:01:01");
  }

  TEST_CASE("a progress line shows the epoch, a bar, counts, running metrics, speed and time left") {
    const Progress p{2, 10, 45, 100, 0.41234, 0.85119, 1234.4, 12.0};
    CHECK(progress_text(p) ==
          "epoch 2/10 [#########...........] 45/100 loss 0.4123 acc 0.8512 1234 img/s 0:12<0:15");
    const Progress done{10, 10, 100, 100, 0.1, 0.97, 2000, 60};
    CHECK(progress_text(done, 4) == "epoch 10/10 [####] 100/100 loss 0.1000 acc 0.9700 2000 img/s 1:00<0:00");
  }
}
