// sgckpt/io/pth_api.hpp: the declarations of .pth loading and saving, without their
// implementation (io/pth.hpp). Header-only users get both through <sgckpt/sgckpt.hpp>; with
// the compiled library (CMake target sgckpt::sgckpt_compiled, which defines SGCKPT_COMPILED),
// <sgckpt/sgckpt.hpp> includes only this, and the implementation is compiled once.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/io/options.hpp"

// How the API functions are defined: inline (header-only mode), or as the compiled library's
// symbols (SGCKPT_COMPILED).
#ifndef SGCKPT_API_INLINE
#ifdef SGCKPT_COMPILED
#define SGCKPT_API_INLINE
#else
#define SGCKPT_API_INLINE inline
#endif
#endif

namespace sgckpt {

// Reads a .pth file (torch zip format of any version, or the pre-1.6 legacy stream).
SGCKPT_API_INLINE Value load(const std::filesystem::path& path, const LoadOptions& options = {});
// Reads a .pth image held in memory (copied: the result does not reference `bytes`).
SGCKPT_API_INLINE Value load(std::span<const std::byte> bytes, const LoadOptions& options = {},
                             const std::string& label = "<memory>");
// Writes a .pth file atomically (temporary file in the same directory, fsync, rename, fsync).
SGCKPT_API_INLINE void save(const Value& value, const std::filesystem::path& path,
                            const SaveOptions& options = {});
// Writes a .pth image to memory (root folder "archive", as torch.save to a buffer).
SGCKPT_API_INLINE std::vector<std::byte> save_to_memory(const Value& value, const SaveOptions& options = {});

// The same for a State of any tensor type (converted through tensor_traits<T>).
template <class T = Tensor>
State<T> load_state(const std::filesystem::path& path, const LoadOptions& options = {}) {
  return State<T>::from_host(load(path, options));
}
template <class T>
void save(const State<T>& state, const std::filesystem::path& path, const SaveOptions& options = {}) {
  save(state.to_host(), path, options);
}

}  // namespace sgckpt
