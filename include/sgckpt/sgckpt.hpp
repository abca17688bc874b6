// sgckpt/sgckpt.hpp: one include for users of the checkpoint library.
#pragma once

#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/io/pth.hpp"

// SuperGradients' checkpoint lifecycle.
#include "sgckpt/ckpt/averaging.hpp"
#include "sgckpt/ckpt/checked_int.hpp"
#include "sgckpt/ckpt/ema.hpp"
#include "sgckpt/ckpt/load.hpp"
#include "sgckpt/ckpt/manager.hpp"
#include "sgckpt/ckpt/run_dir.hpp"
#include "sgckpt/ckpt/threads.hpp"
