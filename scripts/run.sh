#!/usr/bin/env bash
# The main job (placeholder until the training example lands): installs the dependencies,
# builds everything, and inspects a torch-written checkpoint with the `sgckpt` tool.
#   bash scripts/run.sh
# Environment: SGCKPT_SHARED_DIR (default <repo>/../shared), SGCKPT_BUILD_DIR (default
#   <repo>/build), SGCKPT_JOBS (default nproc).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SGCKPT_BUILD_DIR:-$repo/build}"
jobs="${SGCKPT_JOBS:-$(nproc)}"
shared="${SGCKPT_SHARED_DIR:-$repo/../shared}"

bash "$repo/scripts/install-deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"

tool="$build/tools/sgckpt"
if [ ! -x "$tool" ]; then
  echo "run.sh: $tool was not built (no tools/sgckpt/*.cpp?)" >&2
  exit 1
fi
fixture="$shared/fixtures/torch-1.13/checkpoint.pt"
if [ ! -f "$fixture" ]; then
  echo "run.sh: fixture $fixture not found (set SGCKPT_SHARED_DIR)" >&2
  exit 1
fi
echo "run.sh: sgckpt inspect $fixture"
"$tool" inspect "$fixture"
