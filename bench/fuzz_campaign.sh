#!/usr/bin/env bash
# Fuzzing campaign for the .pth reader (tests/fuzz): builds the libFuzzer targets with clang-14
# into build-fuzz/, runs each target for SECONDS on a working corpus, copies every crash, leak,
# timeout and out-of-memory input into tests/fuzz/regressions/ and prints the totals.
#
#   bash bench/fuzz_campaign.sh SECONDS [TARGET]      TARGET: fuzz_pth, fuzz_pickle or all (default)
#
# Environment:
#   SGCKPT_FUZZ_JOBS       parallel fuzzer processes per target (default 2; use 1 on a busy machine).
#                          Like libFuzzer's -jobs=N -workers=N, except that a worker that stops on a
#                          crash is restarted for the time left, so a crash loses no fuzzing time.
#   SGCKPT_FUZZ_BUILD_DIR  build directory (default <repo>/build-fuzz)
#   SGCKPT_SHARED_DIR      shared fixtures (default <repo>/../shared): torch-1.13 files seed fuzz_pth
#   SGCKPT_BUILD_JOBS      build parallelism (default 2)
#   SGCKPT_FUZZ_MAX_LEN    largest input libFuzzer generates (default 16384; longer seeds are cut)
#   SGCKPT_FUZZ_ARGS       extra libFuzzer flags
# The working corpus (<build>/corpus/<target>) is kept between campaigns, so they add up; the
# seeds are tests/fuzz/seeds/{pth,pickle}, the torch-1.13 fixtures, tests/hostile and
# tests/fuzz/regressions. Per-run logs: <build>/logs/. Exit status 0 when no crash was found,
# 1 when at least one was (its input is in tests/fuzz/regressions/, named <target>-<kind>-<sha1>).
set -euo pipefail

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [fuzz_pth|fuzz_pickle|all]" >&2
  exit 2
fi
seconds=$1
which_target=${2:-all}
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SGCKPT_FUZZ_BUILD_DIR:-$repo/build-fuzz}"
jobs="${SGCKPT_FUZZ_JOBS:-2}"
shared="${SGCKPT_SHARED_DIR:-$repo/../shared}"
fuzz_dir="$repo/tests/fuzz"
regressions="$fuzz_dir/regressions"

case "$which_target" in
  all) targets=(fuzz_pth fuzz_pickle) ;;
  fuzz_pth|fuzz_pickle) targets=("$which_target") ;;
  *) echo "fuzz_campaign: unknown target '$which_target'" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------- build
cxx=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$cxx" ]; then
  echo "fuzz_campaign: clang++-14 not found (scripts/install-deps.sh installs clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
mkdir -p "$build"
cmake -S "$repo" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Debug -DSGCKPT_FUZZ=ON -DSGCKPT_CUDA=OFF -DSGCKPT_BUILD_TOOLS=OFF \
  -DSGCKPT_BUILD_EXAMPLES=OFF -DSGCKPT_BUILD_BENCH=OFF -DSGCKPT_INSTALL=OFF \
  ${SGCKPT_SHARED_DIR:+-DSGCKPT_SHARED_DIR=$SGCKPT_SHARED_DIR} >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 2; }
cmake --build "$build" -j "${SGCKPT_BUILD_JOBS:-2}" --target "${targets[@]}"

# ---------------------------------------------------------------------------- run
mkdir -p "$regressions" "$build/logs"
total_crashes=0
summary=()
for target in "${targets[@]}"; do
  exe="$build/tests/fuzz/$target"
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  if [ "$target" = fuzz_pth ]; then
    seeds=("$fuzz_dir/seeds/pth" "$repo/tests/hostile")
    [ -d "$shared/fixtures/torch-1.13" ] && seeds+=("$shared/fixtures/torch-1.13")
  else
    seeds=("$fuzz_dir/seeds/pickle")
  fi
  seeds+=("$regressions")
  existing=()
  for s in "${seeds[@]}"; do [ -d "$s" ] && existing+=("$s"); done

  start=$(date +%s)
  deadline=$(( start + seconds ))
  echo "fuzz_campaign: $target for ${seconds}s with $jobs worker(s); corpus $corpus"
  run_worker() {  # restarts the fuzzer after a crash until the deadline
    local w=$1 n=0
    while :; do
      local left=$(( deadline - $(date +%s) ))
      [ "$left" -ge 5 ] || break
      n=$(( n + 1 ))
      local log="$build/logs/$target.w$w.r$n.log"
      # -reload: pick up what the other workers add to the shared corpus.
      "$exe" -dict="$fuzz_dir/pth.dict" -rss_limit_mb=2048 -timeout=10 -max_len=${SGCKPT_FUZZ_MAX_LEN:-16384} \
        -max_total_time="$left" -print_final_stats=1 -reload=30 \
        -artifact_prefix="$artifacts/" ${SGCKPT_FUZZ_ARGS:-} "$corpus" "${existing[@]}" >"$log" 2>&1 || true
      # Stopped early without an artifact (e.g. -runs): do not spin.
      grep -qE '^(==[0-9]+==ERROR|SUMMARY|.*Test unit written)' "$log" || break
    done
  }
  pids=()
  for w in $(seq 1 "$jobs"); do
    run_worker "$w" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  elapsed=$(( $(date +%s) - start ))

  execs=$(cat "$build/logs/$target".w*.r*.log 2>/dev/null | sed -n 's/^stat::number_of_executed_units: *//p' |
          awk '{s += $1} END {print s + 0}')
  # Logs from earlier campaigns would be counted again: keep them, but out of the way.
  mkdir -p "$build/logs/previous/$start"
  mv "$build/logs/$target".w*.r*.log "$build/logs/previous/$start/" 2>/dev/null || true
  crashes=0
  for f in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    [ -e "$f" ] || continue
    base=$(basename "$f")
    kind=${base%%-*}
    sha=${base#*-}
    dest="$regressions/$target-$kind-$sha"
    cp "$f" "$dest"
    rm "$f"
    echo "fuzz_campaign: $target found a $kind: $dest"
    crashes=$(( crashes + 1 ))
  done
  total_crashes=$(( total_crashes + crashes ))
  corpus_files=$(find "$corpus" -type f | wc -l)
  summary+=("$target: ${execs} executions in ${elapsed}s (${jobs} worker(s)), ${crashes} crash/leak/timeout/oom inputs, corpus ${corpus_files} files")
done

echo
echo "fuzz_campaign: summary"
for line in "${summary[@]}"; do echo "  $line"; done
echo "  crashes found: $total_crashes"
[ "$total_crashes" -eq 0 ]
