#!/usr/bin/env python3
"""torch's side of bench/dcp_save.sh: torch.distributed.checkpoint.save of the state
bench/dcp_save.cpp saves (MIB MiB of float32 in 64 tensors of rows of 1024 floats, each
sharded on dimension 0 among the ranks as a DTensor), by RANKS gloo processes (1: a plain
single-process save). Each timed save starts after a barrier; rank 0 prints the median.

Usage: dcp_save_torch.py DIR MIB RANKS ITERS WARMUP   (needs torch 2.x)
Prints: "save_ms <median>", "save_GBs <state bytes / median>".
"""
import os
import socket
import sys
import time
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

warnings.simplefilter("ignore")


def state_for(rank, ranks, mib):
    rows = mib * 1024 * 1024 // 4 // 1024 // 64
    per = (rows + ranks - 1) // ranks
    begin, end = min(rows, per * rank), min(rows, per * rank + per)
    local = {}
    for t in range(64):
        x = (torch.arange((end - begin) * 1024, dtype=torch.int64) + begin * 1024 + t) % 977
        local["model.layer%d.weight" % t] = x.to(torch.float32).reshape(end - begin, 1024)
    return local, rows


def run(rank, ranks, path, mib, iters, warmup):
    warnings.simplefilter("ignore")
    local, rows = state_for(rank, ranks, mib)
    if ranks > 1:
        dist.init_process_group("gloo", rank=rank, world_size=ranks)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard
        mesh = init_device_mesh("cpu", (ranks,))
        state = {k: DTensor.from_local(v, mesh, [Shard(0)], run_check=False, shape=torch.Size([rows, 1024]),
                                       stride=(1024, 1)) for k, v in local.items()}
    else:
        state = local
    state["step"] = 1000
    times = []
    for it in range(warmup + iters):
        if ranks > 1:
            dist.barrier()
        t0 = time.perf_counter()
        dcp.save(state, checkpoint_id=path)
        if ranks > 1:
            dist.barrier()
        times.append((time.perf_counter() - t0) * 1e3)
    if rank == 0:
        ms = sorted(times[warmup:])[len(times[warmup:]) // 2]
        print("save_ms %.1f\nsave_GBs %.2f" % (ms, rows * 1024 * 4 * 64 / ms / 1e6), flush=True)
    if ranks > 1:
        dist.barrier()
        sys.stdout.flush()
        os._exit(0)  # gloo's destroy_process_group sometimes waits forever for the peer's teardown


def main():
    path, mib, ranks, iters, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    if ranks == 1:
        run(0, 1, path, mib, iters, warmup)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), USE_LIBUV="0")  # Debian's torch lacks libuv
    mp.spawn(run, args=(ranks, path, mib, iters, warmup), nprocs=ranks, join=True)


if __name__ == "__main__":
    main()
