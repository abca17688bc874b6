// sgckpt/engine/models.hpp: SuperGradients' models.get for the engine's model.
//
//   auto net = sgckpt::engine::models::get("resnet18_cifar",
//                                          {.num_classes = 10, .checkpoint_path = "ckpt_best.pth"});
//
// As SG's models.get(name, num_classes, checkpoint_path, checkpoint_num_classes, strict_load,
// load_backbone):
//   - with a checkpoint, the architecture (each layer's width, the input channels) is the
//     checkpoint's; without, the options' (width_mult, in_channels);
//   - the checkpoint's EMA weights are loaded when it has them, else its `net`, else the file as
//     a bare state dict (GetOptions::weights, SG's rule);
//   - strict is the library's StrictLoad (On, Off, NoKeyMatching, KeyMatching), as SG's
//     strict_load;
//   - checkpoint_num_classes: the checkpoint's classifier has that many classes; it is loaded,
//     then replaced by a new one of num_classes (SG's replace_head), to fine-tune;
//   - load_backbone: every layer but the classifier is loaded; the classifier is new, of
//     num_classes, whatever the checkpoint's has.
// Parameters that are not loaded are initialized from `seed` as a new model's are.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "sgckpt/engine/nn/resnet.hpp"
#include "sgckpt/lifecycle.hpp"

namespace sgckpt::engine::models {

struct GetOptions {
  std::int64_t num_classes = 10;
  std::filesystem::path checkpoint_path{};  // empty: a new model
  std::int64_t checkpoint_num_classes = 0;  // 0: the checkpoint has num_classes
  StrictLoad strict = StrictLoad::On;
  Weights weights = Weights::PreferEma;
  bool load_backbone = false;
  double width_mult = 1.0;       // a new model's width (SG's width_mult)
  std::int64_t in_channels = 3;  // a new model's input channels
  std::uint64_t seed = 42;       // initialization of everything not loaded
};

// A model by SG's name: "resnet18_cifar" (the one this engine has).
inline std::unique_ptr<nn::ResNet18> get(std::string_view name, const GetOptions& o = {}) {
  if (name != "resnet18_cifar")
    throw Error(ErrorKind::Usage,
                "models.get: no model \"" + std::string(name) + "\" (this engine has resnet18_cifar)");
  if (o.num_classes <= 0 || o.checkpoint_num_classes < 0)
    throw Error(ErrorKind::Usage, "models.get: num_classes must be positive");
  if (o.checkpoint_path.empty()) {
    if (o.checkpoint_num_classes != 0 || o.load_backbone)
      throw Error(ErrorKind::Usage,
                  "models.get: checkpoint_num_classes and load_backbone need a checkpoint_path");
    return std::make_unique<nn::ResNet18>(
        nn::ResNet18Config::cifar(o.num_classes, o.width_mult, o.in_channels), o.seed);
  }
  const std::string file = o.checkpoint_path.string();
  try {
    const Value ck = load(o.checkpoint_path, {.mmap = true});
    Value sd = checkpoint_state_dict(ck, o.weights);
    nn::ResNet18Config arch = nn::ResNet18Config::from_state_dict(sd);
    const std::int64_t file_classes = arch.num_classes;
    const std::int64_t want = o.checkpoint_num_classes ? o.checkpoint_num_classes : o.num_classes;
    if (!o.load_backbone && file_classes != want)
      throw Error(ErrorKind::Mismatch,
                  "the checkpoint's classifier has " + std::to_string(file_classes) + " classes, not " +
                      std::to_string(want) + " (to fine-tune on " + std::to_string(o.num_classes) +
                      " classes, pass checkpoint_num_classes = " + std::to_string(file_classes) + ")");
    arch.num_classes = o.load_backbone ? o.num_classes : want;
    auto net = std::make_unique<nn::ResNet18>(arch, o.seed);
    if (o.load_backbone) {
      // The classifier "loads" the new model's own values: every other key still goes through
      // the strict mode asked for.
      const Value own = net->state_dict();
      for (const char* k : {"linear.weight", "linear.bias"})
        if (sd.contains(k)) sd.dict().set(k, own.at(k));
    }
    net->load_state_dict(sd, {.strict = o.strict, .weights = Weights::Net});
    if (!o.load_backbone && o.num_classes != file_classes) {
      Generator gen(o.seed + 1);
      net->replace_head(o.num_classes, gen);
    }
    return net;
  } catch (const Error& e) {
    throw e.with_file(file);
  }
}

}  // namespace sgckpt::engine::models
