#!/usr/bin/env bash
# Builds everything and runs every test (slow ones included). This is what CI runs (.ci/run).
#   bash scripts/test.sh
# Environment: SGCKPT_PYTHON (default /usr/bin/python3, the interpreter with python3-torch),
#   SGCKPT_BUILD_DIR (default <repo>/build), SGCKPT_JOBS (default nproc),
#   SGCKPT_CUDA (AUTO/ON/OFF, default AUTO), SGCKPT_SHARED_DIR (default <repo>/../shared).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SGCKPT_BUILD_DIR:-$repo/build}"
jobs="${SGCKPT_JOBS:-$(nproc)}"
python="${SGCKPT_PYTHON:-/usr/bin/python3}"
stage="start"
start=$(date +%s)

finish() {
  local rc=$?
  local secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then
    echo "test.sh: PASSED (build + all tests) in ${secs}s"
  else
    echo "test.sh: FAILED at stage '${stage}' (exit ${rc}) after ${secs}s" >&2
  fi
}
trap finish EXIT

stage="install-deps"
bash "$repo/scripts/install-deps.sh"

stage="configure"
cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSGCKPT_WERROR=ON "-DSGCKPT_PYTHON=$python")
if [ -n "${SGCKPT_CUDA:-}" ]; then cmake_args+=("-DSGCKPT_CUDA=$SGCKPT_CUDA"); fi
if [ -n "${SGCKPT_SHARED_DIR:-}" ]; then cmake_args+=("-DSGCKPT_SHARED_DIR=$SGCKPT_SHARED_DIR"); fi
cmake "${cmake_args[@]}"

stage="build"
cmake --build "$build" -j "$jobs"

stage="ctest"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
