// examples/custom_engine.cpp: an engine with its OWN tensor type that saves and resumes
// torch-compatible checkpoints through sgckpt::State<MyTensor> and sgckpt::tensor_traits.
//
// The "engine" fits y = x . w + b by full-batch gradient descent with momentum on a fixed
// dataset. Its checkpoint holds the weights (`net`), the momentum buffers, the step and the
// hyperparameters, all as tensors or ints, so that torch 1.13 and 2.x read it with
// torch.load(path, weights_only=True); a file torch writes back (any float dtype) resumes here.
//
//   custom_engine DIR STEPS            train from scratch to STEPS, write DIR/ckpt.pth
//   custom_engine DIR STEPS --resume   continue from DIR/ckpt.pth to STEPS
//
// What a foreign engine needs is only the adapter below: to_host() describes a tensor to the
// library (here a copy into a library tensor), from_host() builds one from whatever the file
// holds (any dtype and layout, converted as torch's copy_ converts, straight into our memory).
#include <sgckpt/sgckpt.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

// ---- the engine's tensor ------------------------------------------------------------------------

struct MyTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // row-major float32
};

template <>
struct sgckpt::tensor_traits<MyTensor> {
  static sgckpt::Tensor to_host(const MyTensor& t) {
    return sgckpt::Tensor::from_values<float>(sgckpt::DType::Float32, t.shape,
                                              std::span<const float>(t.values));
  }
  static MyTensor from_host(const sgckpt::Tensor& h) {
    MyTensor t{h.shape(), std::vector<float>(h.numel())};
    auto memory = sgckpt::Storage::borrow(nullptr, reinterpret_cast<std::byte*>(t.values.data()),
                                          t.values.size() * sizeof(float));
    sgckpt::Tensor dst = sgckpt::Tensor::view_of(memory, sgckpt::DType::Float32, 0, h.shape(),
                                                 sgckpt::contiguous_strides(h.shape()));
    sgckpt::copy_into(dst, h);
    return t;
  }
};

namespace {

using State = sgckpt::State<MyTensor>;
constexpr int kSamples = 64, kFeatures = 4;

MyTensor filled(std::vector<std::int64_t> shape, float v) {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return {std::move(shape), std::vector<float>(n, v)};
}

// The dataset: no random numbers, so a reader can recompute it anywhere.
float x_at(int i, int j) {
  return static_cast<float>((i * 7 + j * 13) % 17) / 17.0f - 0.5f;
}
float y_at(int i) {
  float y = 0.25f;
  for (int j = 0; j < kFeatures; ++j) y += x_at(i, j) * 0.5f * static_cast<float>(j + 1);
  return y;
}

struct Model {
  MyTensor weight = filled({kFeatures}, 0.0f), bias = filled({1}, 0.0f);
  MyTensor weight_buf = filled({kFeatures}, 0.0f), bias_buf = filled({1}, 0.0f);
  float lr = 0.1f, momentum = 0.9f;
  std::int64_t step = 0;

  // One step of gradient descent with momentum (torch.optim.SGD's rule); returns the loss
  // before the step.
  float train_step() {
    std::vector<float> gw(kFeatures, 0.0f);
    float gb = 0.0f, loss = 0.0f;
    for (int i = 0; i < kSamples; ++i) {
      float pred = bias.values[0];
      for (int j = 0; j < kFeatures; ++j) pred += x_at(i, j) * weight.values[static_cast<std::size_t>(j)];
      const float r = pred - y_at(i);
      loss += r * r;
      for (int j = 0; j < kFeatures; ++j) gw[static_cast<std::size_t>(j)] += 2.0f * r * x_at(i, j) / kSamples;
      gb += 2.0f * r / kSamples;
    }
    for (int j = 0; j < kFeatures; ++j) {
      const auto k = static_cast<std::size_t>(j);
      weight_buf.values[k] = momentum * weight_buf.values[k] + gw[k];
      weight.values[k] -= lr * weight_buf.values[k];
    }
    bias_buf.values[0] = momentum * bias_buf.values[0] + gb;
    bias.values[0] -= lr * bias_buf.values[0];
    ++step;
    return loss / kSamples;
  }

  State checkpoint() const {
    State s;
    s["net"] = sgckpt::BasicValue<MyTensor>::make_ordered_dict();
    s["net"]["weight"] = weight;
    s["net"]["bias"] = bias;
    s["optimizer_state_dict"] = sgckpt::BasicValue<MyTensor>::make_dict();
    s["optimizer_state_dict"]["momentum_buffer"] = sgckpt::BasicValue<MyTensor>::make_dict();
    s["optimizer_state_dict"]["momentum_buffer"]["weight"] = weight_buf;
    s["optimizer_state_dict"]["momentum_buffer"]["bias"] = bias_buf;
    // Hyperparameters as 0-d tensors: torch 1.13's weights_only reader has no Python float.
    s["optimizer_state_dict"]["lr"] = filled({}, lr);
    s["optimizer_state_dict"]["momentum"] = filled({}, momentum);
    s["step"] = step;
    return s;
  }

  void restore(const State& s) {
    auto tensor = [&](const sgckpt::BasicValue<MyTensor>& v, const std::vector<std::int64_t>& shape) {
      const MyTensor& t = v.tensor();
      if (t.shape != shape) throw sgckpt::Error("checkpoint tensor has the wrong shape");
      return t;
    };
    const auto& opt = s.at("optimizer_state_dict");
    weight = tensor(s.at("net").at("weight"), {kFeatures});
    bias = tensor(s.at("net").at("bias"), {1});
    weight_buf = tensor(opt.at("momentum_buffer").at("weight"), {kFeatures});
    bias_buf = tensor(opt.at("momentum_buffer").at("bias"), {1});
    lr = tensor(opt.at("lr"), {}).values[0];
    momentum = tensor(opt.at("momentum"), {}).values[0];
    step = s.at("step").as_int();
    if (step < 0) throw sgckpt::Error("checkpoint step is negative");
  }
};

int run(int argc, char** argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && std::strcmp(argv[3], "--resume") != 0)) {
    std::fprintf(stderr, "usage: custom_engine DIR STEPS [--resume]\n");
    return 2;
  }
  const std::filesystem::path file = std::filesystem::path(argv[1]) / "ckpt.pth";
  const std::int64_t steps = std::stoll(argv[2]);
  Model m;
  if (argc == 4) {
    m.restore(sgckpt::load_state<MyTensor>(file));
    std::printf("resumed from %s at step %lld\n", file.string().c_str(), static_cast<long long>(m.step));
  }
  float loss = 0.0f;
  while (m.step < steps) loss = m.train_step();
  std::filesystem::create_directories(file.parent_path());
  sgckpt::save(m.checkpoint(), file);  // atomic: a crash leaves the previous file whole
  std::printf("step %lld loss %.9g -> %s\n", static_cast<long long>(m.step), static_cast<double>(loss),
              file.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_engine: error: %s\n", e.what());
    return 1;
  }
}
