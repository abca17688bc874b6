// sgckpt/io/dcp.hpp: torch.distributed.checkpoint (DCP) directories: read_metadata, load,
// load_region, load_into (io/dcp/load.hpp) and save, by one process or by every rank of a group
// (io/dcp/save.hpp). docs/dcp.md says what is written and what is checked.
#pragma once

#include "sgckpt/io/dcp/load.hpp"
#include "sgckpt/io/dcp/metadata.hpp"
#include "sgckpt/io/dcp/save.hpp"
