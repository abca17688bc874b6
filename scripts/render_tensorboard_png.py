#!/usr/bin/env python3
"""Renders the curves of a train_resnet18 run as TensorBoard reads them, to a PNG.

    /var/cache/sgckpt/pypi-venv/bin/python scripts/render_tensorboard_png.py RUN_DIR OUT.png

The scalars come from the run's event files through TensorBoard's own reader
(EventAccumulator), not from our writer's idea of them: the picture is what a user opening
the run in TensorBoard sees, drawn with matplotlib (both in the PyPI oracle environment,
scripts/install-pypi-oracle.sh). docs/tensorboard_curves.png is made this way from the
README's main job.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run_dir, out = sys.argv[1], sys.argv[2]
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    panels = [
        ("loss", [t for t in tags if t.endswith("crossentropyloss")]),
        ("accuracy", [t for t in tags if t.endswith("accuracy") or t.endswith("top5")]),
        ("learning rate", [t for t in tags if t.endswith("lr")]),
    ]
    panels = [(title, ts) for title, ts in panels if ts]
    if not panels:
        sys.exit("no scalars in the event files of %s (tags: %s)" % (run_dir, tags))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=100)
    for ax, (title, ts) in zip(axes if len(panels) > 1 else [axes], panels):
        for t in sorted(ts):
            ev = acc.Scalars(t)
            ax.plot([e.step for e in ev], [e.value for e in ev], marker="o", markersize=3, label=t)
        ax.set_title(title)
        ax.set_xlabel("epoch (TensorBoard step)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("train_resnet18 run, read back with TensorBoard's EventAccumulator", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    print("wrote %s (%d tags)" % (out, len(tags)))


if __name__ == "__main__":
    main()
