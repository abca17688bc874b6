// sgckpt/io/file.hpp: the file helpers a user of the library calls too: reading a small
// regular file with a size bound (a recipe), and removing what interrupted atomic saves left
// behind. Their implementation, with the mappings and atomic writes behind load and save, is
// detail/fs/file.hpp.
#pragma once

#include "sgckpt/detail/fs/file.hpp"

namespace sgckpt {

// read_regular_file(path, max_bytes, what = "this file"): the whole of a small regular file,
// or an Error naming the file when it is not a regular file or holds more than max_bytes.
using detail::fs::read_regular_file;
// remove_stale_temporaries(final_path): removes the temporaries of dead writers of
// final_path ("<final>.tmp.<pid>.<n>") and returns how many.
using detail::fs::remove_stale_temporaries;

}  // namespace sgckpt
