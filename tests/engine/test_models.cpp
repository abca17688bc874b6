// engine::models::get, SuperGradients' models.get for the engine's ResNet18: the architecture
// from the checkpoint, EMA weights preferred, strict modes, fine-tuning on another number of
// classes (checkpoint_num_classes) and backbone-only loading.
#include <doctest/doctest.h>

#include <sgckpt/engine/models.hpp>

#include <string>

#include "../test_support.hpp"

using namespace sgckpt;
using namespace sgckpt::engine;

namespace {

// A checkpoint of two different small ResNets as `net` and `ema_net` (width 1/8, 10 classes).
struct Checkpoint {
  sgckpt::test::TempDir dir;
  std::filesystem::path path = dir / "ckpt_best.pth";
  nn::ResNet18 net{nn::ResNet18Config::cifar(10, 0.125), 1};
  nn::ResNet18 ema{nn::ResNet18Config::cifar(10, 0.125), 2};
  explicit Checkpoint(bool with_ema = true, const char* extra_key = nullptr) {
    Value ck = Value::make_dict();
    ck["net"] = net.state_dict();
    if (with_ema) ck["ema_net"] = ema.state_dict();
    if (extra_key) ck["net"][extra_key] = sgckpt::Tensor::zeros(DType::Float32, {1});
    ck["acc"] = 0.5;
    save(ck, path);
  }
};

bool same(const engine::Tensor& a, const engine::Tensor& b) {
  return a.host_view().equal(b.host_view());
}

}  // namespace

TEST_SUITE("engine/models") {
  TEST_CASE("models.get builds the checkpoint's architecture and loads its EMA weights when it has them") {
    Checkpoint ck;
    auto m = models::get("resnet18_cifar", {.num_classes = 10, .checkpoint_path = ck.path});
    CHECK(m->config.planes[0] == 8);  // width from the file, not the options' 1.0
    CHECK(same(m->conv1.weight, ck.ema.conv1.weight));
    CHECK(same(m->linear.weight, ck.ema.linear.weight));
    auto n = models::get("resnet18_cifar",
                         {.num_classes = 10, .checkpoint_path = ck.path, .weights = Weights::Net});
    CHECK(same(n->conv1.weight, ck.net.conv1.weight));
    Checkpoint no_ema(false);
    CHECK(same(models::get("resnet18_cifar", {.checkpoint_path = no_ema.path})->conv1.weight,
               no_ema.net.conv1.weight));
  }

  TEST_CASE("fine-tuning: checkpoint_num_classes loads the file's head, then a new one replaces it") {
    Checkpoint ck;
    const std::string msg = test::error_message(
        [&] { models::get("resnet18_cifar", {.num_classes = 3, .checkpoint_path = ck.path}); });
    CHECK(test::contains(msg, "pass checkpoint_num_classes = 10"));
    CHECK(test::contains(msg, ck.path.string()));
    auto m = models::get("resnet18_cifar",
                         {.num_classes = 3, .checkpoint_path = ck.path, .checkpoint_num_classes = 10});
    CHECK(m->linear.weight.shape() == Shape{3, 64});
    CHECK(same(m->layer4.blocks[1].conv2.weight, ck.ema.layer4.blocks[1].conv2.weight));
  }

  TEST_CASE("load_backbone loads every layer but the classifier, whatever its classes") {
    Checkpoint ck;
    auto m =
        models::get("resnet18_cifar", {.num_classes = 5, .checkpoint_path = ck.path, .load_backbone = true});
    CHECK(m->linear.weight.shape() == Shape{5, 64});
    CHECK(same(m->conv1.weight, ck.ema.conv1.weight));
    CHECK(same(m->layer3.blocks[0].conv1.weight, ck.ema.layer3.blocks[0].conv1.weight));
  }

  TEST_CASE("strict modes are the library's; an unknown model is a usage error") {
    Checkpoint ck(false, "extra.weight");
    CHECK(test::contains(
        test::error_message([&] { models::get("resnet18_cifar", {.checkpoint_path = ck.path}); }),
        "extra.weight"));
    auto m = models::get("resnet18_cifar", {.checkpoint_path = ck.path, .strict = StrictLoad::Off});
    CHECK(same(m->conv1.weight, ck.net.conv1.weight));
    CHECK(test::error_of([] { models::get("yolo_nas_s"); }).kind() == ErrorKind::Usage);
  }
}
