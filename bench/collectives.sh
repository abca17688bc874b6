#!/usr/bin/env bash
# The all-reduce of a ResNet18 gradient across 2 processes: sgckpt's MPI Collective (Open MPI,
# build/bench/collectives) against torch.distributed's gloo backend, interleaved over ROUNDS
# rounds on the same machine; medians of the rounds' medians.
#
# Usage: bash bench/collectives.sh [BUILD_DIR] [ROUNDS]
# Env:   SGCKPT_PYTHON: the Python with torch (default /usr/bin/python3).
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
python=${SGCKPT_PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
floats=11173962 iters=20 warmup=3
[ -x "$build/bench/collectives" ] || { echo "no $build/bench/collectives: configure with MPI (scripts/install-deps.sh)" >&2; exit 1; }
ours=() theirs=() ours_bw=() theirs_bw=()
for r in $(seq "$rounds"); do
  out=$(mpirun -np 2 --allow-run-as-root --oversubscribe "$build/bench/collectives" --floats $floats --iters $iters --warmup $warmup)
  ours+=("$(awk '/allreduce_ms/ {print $2}' <<<"$out")"); ours_bw+=("$(awk '/busbw_GBs/ {print $2}' <<<"$out")")
  out=$("$python" "$here/collectives_torch.py" 2 $floats $iters $warmup)
  theirs+=("$(awk '/allreduce_ms/ {print $2}' <<<"$out")"); theirs_bw+=("$(awk '/busbw_GBs/ {print $2}' <<<"$out")")
  echo "round $r: mpi ${ours[-1]} ms, gloo ${theirs[-1]} ms" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m_ours=$(median "${ours[@]}") m_theirs=$(median "${theirs[@]}")
echo "all-reduce (mean) of $floats floats ($(awk -v f=$floats 'BEGIN {printf "%.1f", f*4/1e6}') MB), 2 processes, $rounds rounds x $iters iterations"
printf '%-34s %12s %12s\n' "" "median ms" "busbw GB/s"
printf '%-34s %12s %12s\n' "sgckpt MpiCollective (Open MPI)" "$m_ours" "$(median "${ours_bw[@]}")"
printf '%-34s %12s %12s\n' "torch.distributed (gloo)" "$m_theirs" "$(median "${theirs_bw[@]}")"
awk -v a="$m_ours" -v b="$m_theirs" 'BEGIN {printf "ratio gloo / sgckpt: %.2fx (above 1: ours is faster)\n", b / a}'
