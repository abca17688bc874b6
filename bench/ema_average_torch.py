"""The torch peer of bench/ema_average: times torch's EMA update and weight averaging on the
same tensors sgckpt used (read from the files the bench wrote into DIR).

Usage: ema_average_torch.py DIR REPEATS  -> prints "<name> <median seconds>" lines:
  ema_loop      SG's per-tensor update: e.mul_(d).add_(w, alpha=1-d) on each float tensor
  ema_foreach   torch._foreach_mul_(E, d); torch._foreach_add_(E, W, alpha=1-d)
  avg_sg        SG's average of 10 snapshots: avg = (avg*k + s)/(k+1), torch.true_divide
  avg_stack     torch.stack([...]).mean(0) per float key
  persist       SG's accepted update: clone the state (.detach().clone()), torch.save the
                10-slot snapshots dict (+ a numpy metrics array, as SG)
  threads (the most tried), has_foreach_lerp (1/0)
Each time is the better median of 1 thread and of all the process's CPUs.
"""
import os
import statistics
import sys
import time

import numpy as np
import torch

workdir, repeats = sys.argv[1], int(sys.argv[2])
# Each op is timed with 1 thread and with as many as the C++ side may use (torch 1.13 on
# Debian starts with 1 here), and the faster is reported: torch at its best.
THREADS = sorted({1, len(os.sched_getaffinity(0))})
model = torch.load(os.path.join(workdir, "model.pth"))
ema = torch.load(os.path.join(workdir, "ema.pth"))
snaps_file = torch.load(os.path.join(workdir, "snapshots.pth"))
snaps = [snaps_file["snapshot%d" % i] for i in range(10)]
decay = 0.9998


def median_time(fn, n=repeats, warmup=2):
    best = None
    for threads in THREADS:
        torch.set_num_threads(threads)
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        m = statistics.median(times)
        best = m if best is None else min(best, m)
    return best


pairs = [(e, w) for e, w in zip(ema.values(), model.values()) if e.dtype.is_floating_point]
E = [e for e, _ in pairs]
W = [w for _, w in pairs]


def ema_loop():
    with torch.no_grad():
        for e, w in pairs:
            e.mul_(decay).add_(w, alpha=1 - decay)


def ema_foreach():
    with torch.no_grad():
        torch._foreach_mul_(E, decay)
        torch._foreach_add_(E, W, alpha=1 - decay)


def avg_sg():
    average = dict(snaps[0])
    for n in range(1, 10):
        s = snaps[n]
        for key in average:
            average[key] = torch.true_divide(average[key] * n + s[key], n + 1)
    return average


float_keys = [k for k, v in snaps[0].items() if v.dtype.is_floating_point]


def avg_stack():
    return {k: torch.stack([s[k] for s in snaps]).mean(0) for k in float_keys}


path = os.path.join(workdir, "torch_snapshots.pkl")
state = {"snapshot%d" % i: snaps[i] for i in range(10)}
state["snapshots_metric"] = np.arange(10, dtype=np.float64)


def persist():
    state["snapshot0"] = {k: v.detach().clone() for k, v in model.items()}
    torch.save(state, path)


print("threads", THREADS[-1])
print("has_foreach_lerp", int(hasattr(torch, "_foreach_lerp_")))
print("ema_loop", median_time(ema_loop))
print("ema_foreach", median_time(ema_foreach))
print("avg_sg", median_time(avg_sg))
print("avg_stack", median_time(avg_stack))
print("persist", median_time(persist, n=max(3, repeats // 2), warmup=1))
os.remove(path)
