// sgckpt/io/pth.hpp: load and save PyTorch .pth files (API; implementation in progress).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "sgckpt/core/state.hpp"
#include "sgckpt/io/options.hpp"

namespace sgckpt {

// Reads a .pth file (torch zip format of any version, or the pre-1.6 legacy stream).
Value load(const std::filesystem::path& path, const LoadOptions& options = {});
// Reads a .pth image held in memory (copied: the result does not reference `bytes`).
Value load(std::span<const std::byte> bytes, const LoadOptions& options = {}, const std::string& label = "<memory>");
// Writes a .pth file atomically (temporary file in the same directory, fsync, rename, fsync).
void save(const Value& value, const std::filesystem::path& path, const SaveOptions& options = {});
// Writes a .pth image to memory.
std::vector<std::byte> save_to_memory(const Value& value, const SaveOptions& options = {});

template <class T = Tensor>
State<T> load_state(const std::filesystem::path& path, const LoadOptions& options = {}) {
  return State<T>::from_host(load(path, options));
}
template <class T>
void save(const State<T>& state, const std::filesystem::path& path, const SaveOptions& options = {}) {
  save(state.to_host(), path, options);
}

}  // namespace sgckpt
