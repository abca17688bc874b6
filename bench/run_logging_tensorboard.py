"""The peer of bench/run_logging: what SuperGradients' logger pays for the same events.

SuperGradients writes its scalars through torch.utils.tensorboard.SummaryWriter (a queue and a
writer thread), so that is the peer. Usage: run_logging_tensorboard.py DIR STEPS EPOCHS ->
prints, in microseconds, "step_call" (add_scalar of the step loss, the caller's cost),
"step_flushed" (the same with everything handed to the OS by flush(), per scalar) and "epoch"
(an epoch's seven scalars and a flush). Needs the PyPI oracles' python
(scripts/install-pypi-oracle.sh).
"""
import os
import sys
import tempfile
import time

from torch.utils.tensorboard import SummaryWriter

root, steps, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
EPOCH_SCALARS = ["train_crossentropyloss", "train_accuracy", "train_top5", "valid_crossentropyloss",
                 "valid_accuracy", "valid_top5", "lr"]


def timed_steps(writer):
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        writer.add_scalar("train_step_crossentropyloss", 2.0 / step, step)
    t1 = time.perf_counter()
    writer.flush()
    t2 = time.perf_counter()
    return (t1 - t0) / steps * 1e6, (t2 - t0) / steps * 1e6


def timed_epochs(writer):
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for tag in EPOCH_SCALARS:
            writer.add_scalar(tag, 0.5, epoch)
        writer.flush()
    return (time.perf_counter() - t0) / epochs * 1e6


with tempfile.TemporaryDirectory(dir=root) as d:
    w = SummaryWriter(log_dir=os.path.join(d, "warmup"))
    timed_steps(w)  # warm-up: imports, the writer thread, first writes into the file
    w.close()
    w = SummaryWriter(log_dir=os.path.join(d, "timed"))
    call, flushed = timed_steps(w)
    epoch = timed_epochs(w)
    w.close()
print("step_call %.3f" % call)
print("step_flushed %.3f" % flushed)
print("epoch %.3f" % epoch)
