// sgckpt/lifecycle.hpp: SuperGradients' checkpoint lifecycle on top of the light entry
// (<sgckpt/sgckpt.hpp>): run directories and resume resolution, CheckpointManager (latest /
// best / epoch / average checkpoints, background saving, restore), loading a checkpoint into
// a model (strict modes), EMA, top-N weight averaging, the thread setting they share.
// docs/lifecycle.md and docs/supergradients.md describe the rules.
#pragma once

#include "sgckpt/sgckpt.hpp"

#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/ckpt/threads.hpp"
#include "sgckpt/io/file.hpp"
