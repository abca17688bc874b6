// sgckpt/io/file.hpp: the file helpers a user of the library calls too: opening a regular
// file without blocking on a FIFO under its name (a dataset), reading a small regular file with
// a size bound (a recipe), and removing what interrupted atomic saves left behind. Their implementation, with
// the mappings and atomic writes behind load and save, is detail/fs/file.hpp.
#pragma once

#include "sgckpt/detail/fs/file.hpp"

namespace sgckpt {

// open_regular_file(path, st): a read-only descriptor of a regular file (st filled in), or an
// Error naming the file; a FIFO, device or directory under the name is refused, never opened
// in a way that blocks. FdCloser{fd} closes it at scope exit.
using detail::fs::FdCloser;
using detail::fs::open_regular_file;

// read_regular_file(path, max_bytes, what = "this file"): the whole of a small regular file,
// or an Error naming the file when it is not a regular file or holds more than max_bytes.
using detail::fs::read_regular_file;
// remove_stale_temporaries(final_path): removes the temporaries of dead writers of
// final_path ("<final>.tmp.<pid>.<n>") and returns how many.
using detail::fs::remove_stale_temporaries;

}  // namespace sgckpt
