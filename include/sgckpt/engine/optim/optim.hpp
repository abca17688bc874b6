// sgckpt/engine/optim/optim.hpp: every optimizer, LR schedule and the GradScaler.
#pragma once

#include <sgckpt/engine/optim/adam.hpp>
#include <sgckpt/engine/optim/grad_scaler.hpp>
#include <sgckpt/engine/optim/lr_schedule.hpp>
#include <sgckpt/engine/optim/param.hpp>
#include <sgckpt/engine/optim/sgd.hpp>
