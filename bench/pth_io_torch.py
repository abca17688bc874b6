"""The torch peer of bench/pth_io: times torch.save and torch.load on the same content.

Usage: pth_io_torch.py SRC.pth DIR REPEATS  -> prints "save <median s>" and "load <median s>".
The content is read once from SRC (written by sgckpt) so both sides move the same tensors.
Each operation runs once untimed first (warm-up), as the C++ side does; pth_io calls this
once per round with REPEATS=1, interleaving it with its own operations.
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
    fn()  # warm-up: the first writes into fresh memory are slow on these machines
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


print("save", median_time(lambda: torch.save(obj, path)))
print("load", median_time(lambda: torch.load(path)))
os.remove(path)
