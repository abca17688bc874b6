#!/usr/bin/env bash
# A sharded torch.distributed.checkpoint save of a 1 GiB state: sgckpt (build/bench/dcp_save,
# one rank and RANKS ranks) against torch 2.x's dcp.save (one process and RANKS gloo
# processes), interleaved over ROUNDS rounds into the same directory tree; medians of the
# rounds' medians. Durable on both sides: sgckpt fsyncs every file and the directory; torch's
# FileSystemWriter fsyncs its files (sync_files=True, its default).
#
# Usage: bash bench/dcp_save.sh [BUILD_DIR] [ROUNDS] [MIB] [RANKS]
# Env:   SGCKPT_TORCH2_PYTHON: the Python with torch 2.x (default scripts/torch2-python);
#        SGCKPT_BENCH_DIR: where to write (default a directory under /tmp).
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
mib=${3:-1024}
ranks=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
python=${SGCKPT_TORCH2_PYTHON:-$here/../scripts/torch2-python}
export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo}  # loopback; without it gloo warns it cannot resolve the host name
iters=3 warmup=1
[ -x "$build/bench/dcp_save" ] || { echo "no $build/bench/dcp_save: build the benches first" >&2; exit 1; }
work=${SGCKPT_BENCH_DIR:-$(mktemp -d /tmp/sgckpt-dcp-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
o1=() oN=() t1=() tN=()
for r in $(seq "$rounds"); do
  o1+=("$("$build/bench/dcp_save" --dir "$work/o1" --mib "$mib" --ranks 1 --iters $iters --warmup $warmup | awk '/save_ms/ {print $2}')")
  t1+=("$("$python" "$here/dcp_save_torch.py" "$work/t1" "$mib" 1 $iters $warmup | awk '/save_ms/ {print $2}')")
  oN+=("$("$build/bench/dcp_save" --dir "$work/oN" --mib "$mib" --ranks "$ranks" --iters $iters --warmup $warmup | awk '/save_ms/ {print $2}')")
  tN+=("$("$python" "$here/dcp_save_torch.py" "$work/tN" "$mib" "$ranks" $iters $warmup | awk '/save_ms/ {print $2}')")
  echo "round $r: sgckpt 1 rank ${o1[-1]} ms, $ranks ranks ${oN[-1]} ms; torch 1 ${t1[-1]} ms, $ranks ${tN[-1]} ms" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m_o1=$(median "${o1[@]}") m_oN=$(median "${oN[@]}") m_t1=$(median "${t1[@]}") m_tN=$(median "${tN[@]}")
echo "DCP save of $mib MiB (64 float32 tensors sharded on dim 0), $rounds rounds x $iters saves, durable"
printf '%-36s %12s %10s\n' "" "median ms" "GB/s"
gbs() { awk -v ms="$1" -v mib="$mib" 'BEGIN {printf "%.2f", mib * 1048576 / ms / 1e6}'; }
printf '%-36s %12s %10s\n' "sgckpt, 1 rank" "$m_o1" "$(gbs "$m_o1")"
printf '%-36s %12s %10s\n' "sgckpt, $ranks ranks (threads)" "$m_oN" "$(gbs "$m_oN")"
printf '%-36s %12s %10s\n' "torch dcp.save, 1 process" "$m_t1" "$(gbs "$m_t1")"
printf '%-36s %12s %10s\n' "torch dcp.save, $ranks gloo processes" "$m_tN" "$(gbs "$m_tN")"
awk -v a="$m_o1" -v b="$m_oN" 'BEGIN {printf "sgckpt 1 rank / %d ranks: %.2fx\n", '"$ranks"', a / b}'
awk -v a="$m_o1" -v b="$m_t1" 'BEGIN {printf "ratio torch / sgckpt, 1 rank: %.2fx (above 1: ours is faster)\n", b / a}'
awk -v a="$m_oN" -v b="$m_tN" 'BEGIN {printf "ratio torch / sgckpt, '"$ranks"' ranks: %.2fx\n", b / a}'
