// tools/sgckpt/load_any.hpp: what the subcommands read: a checkpoint file in any format
// sgckpt::load reads, or a torch.distributed.checkpoint directory (merged: every tensor whole).
#pragma once

#include <filesystem>
#include <string>

#include "sgckpt/io/dcp.hpp"
#include "sgckpt/io/pth.hpp"

namespace sgckpt::tool {

inline Value load_any(const std::string& path, const LoadOptions& options) {
  if (dcp::is_checkpoint(path)) return dcp::load(path, options);
  return load(std::filesystem::path(path), options);
}

}  // namespace sgckpt::tool
