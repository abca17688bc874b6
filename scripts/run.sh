#!/usr/bin/env bash
# The main job: installs the dependencies, builds everything, trains the engine's ResNet18 on
# Fashion-MNIST (examples/recipes/fashion_mnist_resnet18.yaml: 2,000 training images, width
# 0.25, 4 epochs; a few minutes on two cores) with SuperGradients' checkpoint lifecycle, and
# shows the best checkpoint with the `sgckpt` tool. The run directory also holds the
# TensorBoard events and the run log: tensorboard --logdir checkpoints/fashion_mnist_resnet18
#   bash scripts/run.sh [key.path=value ...]      (recipe overrides, e.g. training_hyperparams.max_epochs=8)
# Running it again starts a new run; to continue the latest one:
#   build/examples/train_resnet18 --resume --experiment fashion_mnist_resnet18 --ckpt-root checkpoints
# Environment: SGCKPT_BUILD_DIR (default <repo>/build), SGCKPT_JOBS (default nproc),
#   SGCKPT_CKPT_ROOT (default <repo>/checkpoints).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SGCKPT_BUILD_DIR:-$repo/build}"
jobs="${SGCKPT_JOBS:-$(nproc)}"
ckpt_root="${SGCKPT_CKPT_ROOT:-$repo/checkpoints}"

bash "$repo/scripts/install-deps.sh"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs" --target sgckpt_tool sgckpt_example_train_resnet18

train=("$build/examples/train_resnet18" --recipe "$repo/examples/recipes/fashion_mnist_resnet18.yaml"
       --ckpt-root "$ckpt_root")
if [ -t 1 ]; then
  "${train[@]}" "$@"                   # a terminal: a progress bar per epoch, redrawn in place
else
  "${train[@]}" --log-every 21 "$@"    # a log or a pipe: a plain line every 21 steps
fi
run_dir=$(ls -td "$ckpt_root"/*/RUN_* | head -1)  # the run just written: the newest
echo
echo "run.sh: files of $run_dir:"
ls -l "$run_dir"
echo
echo "run.sh: sgckpt inspect $run_dir/ckpt_best.pth (first 40 lines)"
"$build/tools/sgckpt" inspect "$run_dir/ckpt_best.pth" | head -40
