#!/usr/bin/env bash
# Builds everything and runs every test (slow ones included). This is what CI runs (.ci/run).
#   bash scripts/test.sh
# Environment: SGCKPT_PYTHON (default /usr/bin/python3, the interpreter with python3-torch),
#   SGCKPT_BUILD_DIR (default <repo>/build), SGCKPT_JOBS (default nproc),
#   SGCKPT_CUDA (AUTO/ON/OFF, default AUTO), SGCKPT_SHARED_DIR (default <repo>/../shared),
#   SGCKPT_CACHE_DIR (default /var/cache/sgckpt: the torch 2.x chroot and the PyPI oracles'
#   virtual environment, kept between runs).
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

# The torch 2.x oracle (Debian trixie's torch 2.6 in a cached chroot): the tests that compare
# with torch run against it too, and in CI its absence is a failure, not a skip.
stage="torch2-oracle"
bash "$repo/scripts/install-torch2-oracle.sh"
export SGCKPT_REQUIRE_TORCH2=1

# The PyPI oracles (safetensors, tensorboard) in a cached virtual environment over Debian's torch.
stage="pypi-oracle"
bash "$repo/scripts/install-pypi-oracle.sh"
export SGCKPT_PYPI_PYTHON="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}/pypi-venv/bin/python"

# The S3 oracle (moto's S3-compatible server, boto3) in its own cached virtual environment.
stage="s3-oracle"
bash "$repo/scripts/install-s3-oracle.sh"
export SGCKPT_S3_PYTHON="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}/s3-venv/bin/python"

# Formatting: every C++ file as the repo's .clang-format says (clang-format 14, Debian 12's).
stage="format"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$repo" ls-files -z '*.hpp' '*.cpp' | (cd "$repo" && xargs -0 clang-format --dry-run -Werror)
else
  find "$repo/include" "$repo/src" "$repo/tools" "$repo/tests" "$repo/examples" "$repo/bench" \
    \( -name '*.hpp' -o -name '*.cpp' \) -print0 | xargs -0 clang-format --dry-run -Werror
fi

stage="configure"
cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSGCKPT_WERROR=ON "-DSGCKPT_PYTHON=$python")
if [ -n "${SGCKPT_CUDA:-}" ]; then cmake_args+=("-DSGCKPT_CUDA=$SGCKPT_CUDA"); fi
if [ -n "${SGCKPT_SHARED_DIR:-}" ]; then cmake_args+=("-DSGCKPT_SHARED_DIR=$SGCKPT_SHARED_DIR"); fi
cmake "${cmake_args[@]}"

stage="build"
cmake --build "$build" -j "$jobs"

stage="ctest"
ctest --test-dir "$build" --output-on-failure -j "$jobs"

# Sanitizers: the test suite again, built with ASan + UBSan (SGCKPT_SANITIZE=ON), without the
# slow tests, the consumer projects, the second (torch 2.x) run of the oracle scripts (label torch2:
# the tool is the same, only the oracle differs) and the tests that drive the examples (not built here, to
# keep CI within its time: engine_*, ckpt_resume_torch, custom_engine, tensorboard, supergradients); this includes fuzz/replay (the fuzzing regressions, seeds and hostile corpus
# through both fuzz targets). SGCKPT_ASAN=0 skips it; SGCKPT_ASAN_BUILD_DIR (default
# <repo>/build-asan) moves it. RelWithDebInfo: -O2 keeps it fast, -g keeps reports readable.
if [ "${SGCKPT_ASAN:-1}" != "0" ]; then
  asan_build="${SGCKPT_ASAN_BUILD_DIR:-$repo/build-asan}"
  asan_start=$(date +%s)
  stage="asan-configure"
  # Built with clang (the first stage is GCC): the library, tool and tests compile warning-free
  # under both compilers, and the sanitizers run on clang's code.
  asan_args=(-S "$repo" -B "$asan_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSGCKPT_SANITIZE=ON -DSGCKPT_WERROR=ON
             -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
             -DSGCKPT_CUDA=OFF -DSGCKPT_BUILD_EXAMPLES=OFF -DSGCKPT_BUILD_BENCH=OFF "-DSGCKPT_PYTHON=$python")
  if [ -n "${SGCKPT_SHARED_DIR:-}" ]; then asan_args+=("-DSGCKPT_SHARED_DIR=$SGCKPT_SHARED_DIR"); fi
  cmake "${asan_args[@]}"
  stage="asan-build"
  cmake --build "$asan_build" -j "$jobs"
  stage="asan-ctest"
  # No RLIMIT_AS for the tool under ASan (it reserves terabytes of address space); tests that
  # time the tool allow for the sanitizer's slowdown (SGCKPT_SANITIZED). python/mpi and
  # python/ddp stay in the first stage: LeakSanitizer reports Open MPI's own allocations at exit
  # (and this stage builds no examples); the collectives' logic runs under the sanitizers in
  # engine/dist's ThreadGroup tests.
  SGCKPT_SANITIZED=1 SGCKPT_TEST_RLIMIT_AS=0 \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ctest --test-dir "$asan_build" --output-on-failure -j "$jobs" -LE "slow|consumer|torch2" \
      -E "python/engine_|python/ckpt_resume_torch|python/custom_engine|python/tensorboard|python/supergradients|python/mpi|python/ddp"
  echo "test.sh: sanitizer stage (configure + build + ctest) took $(( $(date +%s) - asan_start ))s"
fi
