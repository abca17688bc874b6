// resnet18_forward: runs the engine's ResNet18 (CPU) on a batch, for comparisons with torch.
//
//   resnet18_forward WEIGHTS INPUT OUTPUT [--train] [--label-smoothing F] [--threads N]
//
// WEIGHTS  a ResNet18-CIFAR state_dict (.pth), or a SuperGradients checkpoint with one under
//          "net"; classes, input channels and widths are inferred from its shapes.
// INPUT    a .pth dict with "x" (float32 [N, C, H, W]) and, for --train or a loss, "y"
//          (int64 [N] labels).
// OUTPUT   a .pth dict with
//            logits   float32 [N, classes]
//          and when INPUT has "y":
//            loss     float32 0-dim, mean cross-entropy (with --label-smoothing)
//            top1, top5  int, number of correct samples
//          and with --train (training-mode BatchNorm: batch statistics, running stats updated):
//            grads    dict parameter name -> d(loss)/d(parameter)
//            state    the state_dict after the forward (updated running statistics)
// Without --train the model runs in eval mode under no-grad.
#include <sgckpt/engine/engine.hpp>
#include <sgckpt/sgckpt.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace {

using namespace sgckpt::engine;

[[noreturn]] void usage() {
  std::fprintf(
      stderr, "usage: resnet18_forward WEIGHTS INPUT OUTPUT [--train] [--label-smoothing F] [--threads N]\n");
  std::exit(2);
}

// The state_dict inside a file: the root, or the "net" entry of a SuperGradients checkpoint.
int run(int argc, char** argv) {
  if (argc < 4) usage();
  const std::string weights_path = argv[1], input_path = argv[2], output_path = argv[3];
  bool train = false;
  float label_smoothing = 0.0f;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--train") {
      train = true;
    } else if (a == "--label-smoothing" && i + 1 < argc) {
      label_smoothing = std::stof(argv[++i]);
    } else if (a == "--threads" && i + 1 < argc) {
      set_num_threads(std::stoi(argv[++i]));
    } else {
      usage();
    }
  }

  // 1. the model, from the weights' shapes
  const sgckpt::Value weights = sgckpt::load(weights_path, {.mmap = true});
  const sgckpt::Value& sd = sgckpt::checkpoint_state_dict(weights);  // its net, or a bare state dict
  nn::ResNet18 model(nn::ResNet18Config::from_state_dict(sd), /*seed=*/0);
  model.load_state_dict(sd);

  // 2. the batch
  const sgckpt::Value input = sgckpt::load(input_path);
  if (!input.is_dict() || !input.contains("x") || !input.at("x").is_tensor())
    throw sgckpt::Error("INPUT must be a dict with a tensor 'x'");
  const Tensor x = Tensor::from_host(input.at("x").tensor());
  Tensor y;
  if (input.contains("y")) y = Tensor::from_host(input.at("y").tensor());
  if (train && !y.defined()) throw sgckpt::Error("--train needs labels 'y' in INPUT");

  // 3. forward (and backward)
  sgckpt::Value out = sgckpt::Value::make_dict();
  nn::CrossEntropyLoss criterion(label_smoothing);
  Tensor logits;
  if (train) {
    model.train();
    model.zero_grad();
    logits = model.forward(x);
    const float loss = criterion.forward(logits, y);
    model.backward(criterion.backward());
    out["loss"] = Tensor::from_vector<float>({}, {loss}).to_host();
  } else {
    model.eval();
    NoGradGuard no_grad;
    logits = model.forward(x);
    if (y.defined()) out["loss"] = Tensor::from_vector<float>({}, {criterion.forward(logits, y)}).to_host();
  }
  out["logits"] = logits.to_host();
  if (y.defined()) {
    out["top1"] = nn::functional::topk_correct(logits, y, 1);
    out["top5"] = nn::functional::topk_correct(logits, y, 5);
  }
  if (train) {
    sgckpt::Value grads = sgckpt::Value::make_dict();
    for (const auto& p : model.named_parameters()) grads[p.name] = p.grad.to_host();
    out["grads"] = std::move(grads);
    out["state"] = model.state_dict();
  }
  sgckpt::save(out, output_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resnet18_forward: error: %s\n", e.what());
    return 1;
  }
}
