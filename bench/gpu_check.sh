#!/usr/bin/env bash
# bench/gpu_check.sh: the CUDA backend checked and measured on a GPU machine in one call
# (docs/cuda.md). Built here, run there:
#
#   bash bench/gpu_check.sh --build        # here: build-sm90/ (sm_90) with the two programs
#   device run: command "bash bench/gpu_check.sh", carry ["build-sm90"], timeout_s 540
#
# There it finds cuDNN and cuBLAS in the machine's torch `nvidia` packages, runs the GPU tests
# (tests/cuda), the backend's numbers (bench/gpu_bench) and torch's on the same GPU
# (bench/gpu_torch.py), the .pth exchange with torch 2.x, writes every log under $OUT and
# prints a summary table last. Each step has its own time limit (480 s in all): the table
# always comes within the 540 s the device call is given.
# Env: OUT (default /tmp/gpu_check), SGCKPT_GPU_BUILD (default build-sm90), PYTHON (python3).
set -u
cd "$(dirname "$0")/.."
BUILD=${SGCKPT_GPU_BUILD:-build-sm90}
PY=${PYTHON:-python3}

if [ "${1:-}" = "--build" ]; then
  set -e
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSGCKPT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real \
    -DSGCKPT_BUILD_EXAMPLES=OFF -DSGCKPT_BUILD_TOOLS=OFF -DSGCKPT_INSTALL=OFF > /dev/null
  cmake --build "$BUILD" --target sgckpt_cuda_tests sgckpt_bench_gpu_bench -j2
  # Only the two programs travel (the carry limit is 64 MiB).
  find "$BUILD" -mindepth 1 -maxdepth 1 ! -name tests ! -name bench -exec rm -rf {} +
  find "$BUILD/tests" "$BUILD/bench" -mindepth 1 -maxdepth 1 ! -name sgckpt_cuda_tests ! -name gpu_bench \
    -exec rm -rf {} +
  strip "$BUILD/tests/sgckpt_cuda_tests" "$BUILD/bench/gpu_bench"
  du -sh "$BUILD"
  exit 0
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT/interop"
TESTS="$BUILD/tests/sgckpt_cuda_tests"
BENCH="$BUILD/bench/gpu_bench"

# cuDNN, cuBLAS(Lt) and NCCL from torch's nvidia packages.
for d in $("$PY" -c 'import nvidia, glob, os; print(" ".join(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib")))))' 2>/dev/null); do
  LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH

step() {  # step NAME SECONDS COMMAND...: runs it, output in $OUT/NAME.txt, status recorded
  local name=$1 secs=$2
  shift 2
  echo "== $name: $*" >&2
  timeout "$secs" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name $rc" >> "$OUT/status.txt"
  tail -n 5 "$OUT/$name.txt" >&2
  return 0
}
: > "$OUT/status.txt"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; } > "$OUT/machine.txt" 2>&1
ldd "$TESTS" "$BENCH" > "$OUT/ldd.txt" 2>&1

step cuda_tests 120 "$TESTS" '--test-suite=cuda/*'
step gpu_bench 120 "$BENCH" --repeats 20 --train-steps 30
step torch_bench 150 "$PY" bench/gpu_torch.py "$OUT/interop" --repeats 20 --train-steps 30
step interop_write 30 "$PY" bench/gpu_torch.py "$OUT/interop" --interop write
step interop_read 30 "$BENCH" --interop "$OUT/interop"
step interop_check 30 "$PY" bench/gpu_torch.py "$OUT/interop" --interop check

# ---- the summary table (last)
val() { awk -v k="$1" '$1 == k { print $2; exit }' "$OUT/$2.txt" 2>/dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.0f%%", 100 * a / b }'; }
copy=$(val copy_gbs gpu_bench)
{
  echo
  echo "| gpu_check ($(date -u +%F)) | value |"
  echo "| --- | --- |"
  echo "| machine | $(tail -n 1 "$OUT/machine.txt") |"
  echo "| device (gpu_bench) | $(grep -m1 -E '^(device|skipped)' "$OUT/gpu_bench.txt") |"
  echo "| libraries | $(sed -n 's/^libraries //p' "$OUT/gpu_bench.txt") |"
  echo "| missing libraries | $(grep -c 'not found' "$OUT/ldd.txt") |"
  echo "| GPU tests | $(grep -E '^\[doctest\] (test cases|assertions)' "$OUT/cuda_tests.txt" | tr '\n' ' '); cases that found no device: $(grep -c '\[skip\]' "$OUT/cuda_tests.txt") |"
  echo "| copy bandwidth (ours / torch) | $copy / $(val copy_gbs torch_bench) GB/s |"
  for s in resnet18 1g; do
    e=$(val ema_${s}_gbs gpu_bench)
    echo "| EMA $s: ours, % of copy; torch loop; foreach_lerp | $e GB/s, $(pct "$e" "$copy"); $(val ema_loop_${s}_gbs torch_bench); $(val ema_lerp_${s}_gbs torch_bench) (ours $(ratio "$e" "$(val ema_lerp_${s}_gbs torch_bench)")) |"
    a=$(val avg_${s}_gbs gpu_bench)
    echo "| averaging $s: ours, % of copy; SG's loop | $a GB/s, $(pct "$a" "$copy"); $(val avg_sg_${s}_gbs torch_bench) |"
  done
  for b in 256 512; do
    o=$(val train_b${b}_ips gpu_bench)
    echo "| ResNet18 b$b img/s: ours fp32; torch fp32, fp16, bf16 | $o; $(val train_fp32_b${b}_ips torch_bench) ($(ratio "$o" "$(val train_fp32_b${b}_ips torch_bench)")), $(val train_fp16_b${b}_ips torch_bench), $(val train_bf16_b${b}_ips torch_bench) |"
  done
  echo "| checkpoint stall: ours (state_dict to host); SG torch.save | $(val snapshot_ms gpu_bench) ms; $(val save_stall_ms torch_bench) ms |"
  echo "| torch 2.x file read by sgckpt; ours loaded weights_only | $(val sgckpt_read_torch2 interop_read); $(val sgckpt_file_loads_weights_only interop_check) (torch $(val torch_version interop_write)) |"
  echo "| step exit codes | $(tr '\n' ' ' < "$OUT/status.txt") |"
} | tee "$OUT/summary.md"
