"""The safetensors peer of bench/pth_io: times the safetensors package on the same content.

Usage: pth_io_safetensors.py SRC.safetensors DIR REPEATS -> prints "save <median s>" (save_file)
and "load <median s>" (load_file, which returns torch tensors). SRC is written by sgckpt, so
both sides move the same tensors. Warm-up and interleaving as in pth_io_torch.py. Needs the
PyPI oracles' python (scripts/install-pypi-oracle.sh).
"""
import os
import statistics
import sys
import time

import safetensors.torch
import torch

src, workdir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)
obj = safetensors.torch.load_file(src)  # untimed: the content to save
path = os.path.join(workdir, "safetensors_peer.safetensors")


def median_time(fn):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


print("save", median_time(lambda: safetensors.torch.save_file(obj, path)))
print("load", median_time(lambda: safetensors.torch.load_file(path)))
os.remove(path)
