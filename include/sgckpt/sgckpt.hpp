// sgckpt/sgckpt.hpp: the light entry: what a checkpoint is (values, tensors, dtypes, casts,
// State<T>) and how it is stored (load, save). No threads, no training lifecycle.
//
//   sgckpt::Value ck = sgckpt::load("ckpt_best.pth");
//   sgckpt::save(ck, "copy.pth");
//
// SuperGradients' checkpoint lifecycle (run directories, CheckpointManager, loading into a
// model, EMA, averaging) is <sgckpt/lifecycle.hpp>.
//
// Two modes, as fmt offers: header-only (the default; link sgckpt::sgckpt), or compiled (link
// sgckpt::sgckpt_compiled, which defines SGCKPT_COMPILED): load and save are then compiled
// once into the library, and this header only declares them (io/pth_api.hpp), which makes
// every file that includes it cheaper to compile.
#pragma once

#include "sgckpt/core/cast.hpp"
#include "sgckpt/core/dtype.hpp"
#include "sgckpt/core/error.hpp"
#include "sgckpt/core/float_text.hpp"
#include "sgckpt/core/state.hpp"
#include "sgckpt/core/tensor.hpp"
#include "sgckpt/core/value.hpp"
#include "sgckpt/io/options.hpp"
#include "sgckpt/version.hpp"
#ifdef SGCKPT_COMPILED
#include "sgckpt/io/pth_api.hpp"
#else
#include "sgckpt/io/pth.hpp"
#endif
