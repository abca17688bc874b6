"""The torch peer of bench/pth_io: times torch.save and torch.load on the same content.

Usage: pth_io_torch.py SRC.pth DIR REPEATS  -> prints "save <median s>" and "load <median s>".
The content is read once from SRC (written by sgckpt) so both sides move the same tensors.
"""
import os
import statistics
import sys
import time

import torch

src, workdir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)
obj = torch.load(src)  # untimed: the content to save
path = os.path.join(workdir, "torch_peer.pth")


def median_time(fn):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


print("save", median_time(lambda: torch.save(obj, path)))
print("load", median_time(lambda: torch.load(path)))
os.remove(path)
