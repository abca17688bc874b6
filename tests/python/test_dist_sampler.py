#!/usr/bin/env python3
"""The engine's DistributedSampler (include/sgckpt/engine/dist/sampler.hpp) against torch's
torch.utils.data.DistributedSampler: for each case (dataset size, world size, seed, epoch,
shuffle, drop_last) every rank's indices must be torch's, in torch's order. With shuffling
this also checks the engine's copy of torch.randperm on a seeded torch.Generator.

Runs tests/drivers/dist_sampler. Environment: SGCKPT_DRIVERS_DIR (the built test drivers).

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/dist_sampler, with torch 2.x.)
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch.utils.data import DistributedSampler  # noqa: E402

import oracle  # noqa: E402

DRIVER = os.path.join(oracle.require_driver("dist_sampler"), "dist_sampler")

CASES = [  # n, replicas, seed, epoch, shuffle, drop_last
    (10, 2, 0, 0, True, False),
    (10, 3, 0, 0, True, False),
    (10, 3, 0, 0, True, True),
    (10, 3, 17, 5, True, False),
    (2, 3, 0, 0, True, False),     # fewer samples than ranks: padded by repetition
    (2, 3, 0, 0, False, False),
    (2, 3, 0, 0, True, True),      # ... or nothing with drop_last
    (7, 4, 3, 1, False, False),
    (7, 4, 3, 1, False, True),
    (1000, 2, 42, 3, True, False),
    (50000, 2, 0, 7, True, False),  # CIFAR-10's training set, two ranks
    (60001, 8, 2**32 + 5, 1, True, True),  # the seed's low 32 bits are what torch uses
]


def ours(n, replicas, seed, epoch, shuffle, drop_last):
    out = subprocess.run(oracle.host_argv([DRIVER, str(n), str(replicas), str(seed), str(epoch),
                                           str(int(shuffle)), str(int(drop_last))]),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ranks = []
    for line in out.stdout.splitlines():
        head, _, rest = line.partition(":")
        assert head == "rank %d" % len(ranks), line[:80]
        ranks.append([int(x) for x in rest.split()])
    return ranks


def theirs(n, replicas, seed, epoch, shuffle, drop_last):
    ranks = []
    for r in range(replicas):
        s = DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=shuffle, seed=seed,
                               drop_last=drop_last)
        s.set_epoch(epoch)
        ranks.append(list(iter(s)))
    return ranks


def check_case(case):
    a, b = ours(*case), theirs(*case)
    assert len(a) == len(b), "%d ranks, torch %d" % (len(a), len(b))
    for r, (x, y) in enumerate(zip(a, b)):
        assert x == y, "rank %d: %d indices %s..., torch %d indices %s..." % (r, len(x), x[:8], len(y), y[:8])


R = oracle.Runner("DistributedSampler against torch")
for case in CASES:
    R.check("n=%d replicas=%d seed=%d epoch=%d shuffle=%s drop_last=%s" % case, check_case, case)
R.finish()
