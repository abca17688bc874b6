#!/usr/bin/env bash
# Installs what sgckpt needs to build, test and run on Debian 12 (bookworm). Idempotent: only
# missing packages are installed, and `apt-get update` runs only when something is missing.
# Run as root (or with sudo available). Never touches CUDA: the CUDA toolkit is optional and
# found by CMake when present (/usr/local/cuda).
set -euo pipefail

packages=(
  build-essential cmake git              # toolchain
  zlib1g-dev                             # the library's one dependency
  doctest-dev                            # unit tests
  libcli11-dev                           # the sgckpt command-line tool
  libyaml-cpp-dev libeigen3-dev          # examples / engine
  libcurl4-openssl-dev libssl-dev        # remote stores (S3 over libcurl, SHA-256: sgckpt::remote)
  libopenmpi-dev openmpi-bin             # data-parallel training on CPUs (engine/dist/mpi.hpp)
  dataset-fashion-mnist                  # the training example and its learning test
  python3 python3-torch python3-numpy    # torch oracle tests (Debian's /usr/bin/python3)
  python3-venv                           # the PyPI oracles' environment (install-pypi-oracle.sh)
  clang-format                           # formatting check
  clang-14 libclang-rt-14-dev            # libFuzzer targets (tests/fuzz, bench/fuzz_campaign.sh)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
