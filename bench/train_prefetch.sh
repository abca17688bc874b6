#!/usr/bin/env bash
# What the prefetcher (training_hyperparams.prefetch_batches) buys: train_resnet18 epochs with
# batches prepared on a background thread (2 ahead) against prepared in turn (0), interleaved,
# the median epoch time of each and their ratio. Both runs see the same batches (the final
# checkpoints are compared: they must be identical).
#
#   bash bench/train_prefetch.sh [BUILD_DIR] [ROUNDS]      (defaults: build, 5)
#
# Environment: SGCKPT_NUM_THREADS (default 2), as for training. Fashion-MNIST must be installed
# (scripts/install-deps.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$repo/build}"
rounds="${2:-5}"
train="$build/examples/train_resnet18"
tool="$build/tools/sgckpt"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SGCKPT_NUM_THREADS="${SGCKPT_NUM_THREADS:-2}"

# One 2-epoch run; prints the seconds of its second epoch (the first warms up).
run() {
  local depth="$1" name="$2"
  "$train" --recipe "$repo/examples/recipes/fashion_mnist_resnet18.yaml" --experiment "$name" --ckpt-root "$work" \
    dataset_params.train_samples=2048 dataset_params.valid_samples=256 arch_params.width_mult=0.25 \
    training_hyperparams.max_epochs=2 training_hyperparams.batch_size=64 training_hyperparams.durable_checkpoints=false \
    training_hyperparams.augment.crop_padding=4 training_hyperparams.augment.horizontal_flip=true \
    training_hyperparams.tensorboard=false "training_hyperparams.prefetch_batches=$depth" |
    awk '/^epoch 2\/2/ { for (i = 1; i <= NF; ++i) if ($i == "s") print $(i - 1) }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

: > "$work/t0"
: > "$work/t2"
for r in $(seq "$rounds"); do
  run 0 "p0_$r" >> "$work/t0"
  run 2 "p2_$r" >> "$work/t2"
done
a="$(ls "$work"/p0_1/RUN_*/ckpt_latest.pth)"
b="$(ls "$work"/p2_1/RUN_*/ckpt_latest.pth)"
same="$("$tool" diff "$a" "$b" | tail -1)"
m0="$(median < "$work/t0")"
m2="$(median < "$work/t2")"
echo "threads=$SGCKPT_NUM_THREADS rounds=$rounds epoch of 2048 images, ResNet18 width 0.25, augmented"
echo "prefetch_batches=0: median epoch $m0 s   ($(tr '\n' ' ' < "$work/t0"))"
echo "prefetch_batches=2: median epoch $m2 s   ($(tr '\n' ' ' < "$work/t2"))"
awk -v a="$m0" -v b="$m2" 'BEGIN { printf "ratio (prefetch 0 / prefetch 2): %.3f\n", a / b }'
echo "checkpoints of the two runs: $same"
