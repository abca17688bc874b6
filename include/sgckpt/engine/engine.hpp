// sgckpt/engine/engine.hpp: one include for the engine (CPU backend).
//
//   using namespace sgckpt::engine;
//   nn::ResNet18 model(nn::ResNet18Config::cifar(10), /*seed=*/42);
//   nn::CrossEntropyLoss criterion;
//   model.train();
//   model.zero_grad();
//   Tensor logits = model.forward(x);                 // x [N, 3, 32, 32] float32
//   float loss = criterion.forward(logits, labels);   // labels [N] int64
//   model.backward(criterion.backward());
//   for (auto& p : model.named_parameters()) ...      // p.name, p.value, p.grad
//   sgckpt::save(model.state_dict(), "model.pth");    // loads in torch with strict=True
#pragma once

#include "sgckpt/engine/grad_mode.hpp"
#include "sgckpt/engine/math.hpp"
#include "sgckpt/engine/nn/basic_block.hpp"
#include "sgckpt/engine/nn/batchnorm.hpp"
#include "sgckpt/engine/nn/conv2d.hpp"
#include "sgckpt/engine/nn/functional.hpp"
#include "sgckpt/engine/nn/init.hpp"
#include "sgckpt/engine/nn/linear.hpp"
#include "sgckpt/engine/nn/loss.hpp"
#include "sgckpt/engine/nn/module.hpp"
#include "sgckpt/engine/nn/resnet.hpp"
#include "sgckpt/engine/parallel.hpp"
#include "sgckpt/engine/random.hpp"
#include "sgckpt/engine/tensor.hpp"
