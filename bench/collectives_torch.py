"""The peer of bench/collectives: torch.distributed's all_reduce on the gloo backend (torch's
CPU backend), two processes on the loopback, the same buffer and timing rule (median of
iterations, each after a barrier; the mean as DDP takes it: all_reduce then divide).

Usage: collectives_torch.py WORLD FLOATS ITERS WARMUP -> prints "allreduce_ms <median>" and
"busbw_GBs <bus bandwidth>" from rank 0.
"""
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, world, floats, iters, warmup, port):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world)
    grad = (torch.arange(floats, dtype=torch.float32) % 1000) * 1e-3
    times = []
    for it in range(warmup + iters):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(grad)
        grad.div_(world)
        if it >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    if rank == 0:
        ms = statistics.median(times)
        busbw = floats * 4 / (ms * 1e-3) * 2 * (world - 1) / world / 1e9
        print("allreduce_ms %.3f\nbusbw_GBs %.3f" % (ms, busbw), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    world, floats, iters, warmup = (int(x) for x in sys.argv[1:5])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world, floats, iters, warmup, port), nprocs=world)
