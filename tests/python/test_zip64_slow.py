#!/usr/bin/env python3
"""SLOW: a multi-GiB (zip64) checkpoint written by real torch.

torch.save writes {'big': uint8 tensor of 4 GiB + 100 bytes (zeros, a few bytes set at
both ends), 'small': float32 tensor, 'epoch': 7} into a temp dir on a real disk (needs
>= 20 GB free; never tmpfs). Then:
  1. `sgckpt inspect --json` equals the torch mirror (sha256 streamed over the 4 GiB array);
  2. `sgckpt convert` writes a second file; its zip has zip64 records that Python's zipfile
     accepts (testzip: real CRCs), stored entries, 64-byte aligned payloads;
  3. torch.load(result, weights_only=True) gives the same size, dtype and set bytes, and the
     same small tensor.
Files are deleted at the end. Peak memory ~4.5 GB (one loaded copy of the big tensor).

Env: SGCKPT_SLOW_TMPDIR picks the directory (default: the system temp dir, then the cwd).
Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_zip64_slow.py
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gc  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

BIG = 4 * 2**30 + 100
MARKS = {0: 1, 1: 2, 7: 0x7F, 4096: 0xAB, 2**32 - 1: 0xCD, 2**32: 0xEF, BIG - 2: 0xFE, BIG - 1: 0xFF}
NEED_FREE = 20 * 10**9
TOOL_TIMEOUT = 600


def fs_type(path):
    """Filesystem type of the mount holding `path` (best effort, from /proc/mounts)."""
    best, typ = "", "?"
    try:
        rp = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    mnt = parts[1].replace("\\040", " ")
                    if (rp == mnt or rp.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                        best, typ = mnt, parts[2]
    except OSError:
        pass
    return typ


def pick_dir():
    cands = [os.environ.get("SGCKPT_SLOW_TMPDIR"), tempfile.gettempdir(), os.getcwd()]
    tried = []
    for c in cands:
        if not c or not os.path.isdir(c):
            continue
        free = shutil.disk_usage(c).free
        typ = fs_type(c)
        tried.append("%s (%s, %.1f GB free)" % (c, typ, free / 1e9))
        if typ in ("tmpfs", "ramfs") or os.path.realpath(c).startswith("/dev/shm"):
            continue
        if free >= NEED_FREE:
            return c
    oracle.fatal("need a disk directory with >= %d GB free (not tmpfs); tried: %s. Set SGCKPT_SLOW_TMPDIR." % (NEED_FREE // 10**9, "; ".join(tried)))


def step(msg):
    print("   .. %s" % msg, flush=True)


def main():
    r = oracle.Runner("test_zip64_slow: 4 GiB + 100 B zip64 checkpoint")
    tool = oracle.require_tool()
    base = pick_dir()
    d = tempfile.mkdtemp(prefix="sgckpt_zip64_", dir=base)
    src = os.path.join(d, "big.pt")
    dst = os.path.join(d, "big_converted.pth")
    state = {}
    try:

        def write():
            t0 = time.monotonic()
            big = torch.zeros(BIG, dtype=torch.uint8)
            for k, v in MARKS.items():
                big[k] = v
            small = torch.linspace(-1, 1, 17, dtype=torch.float32).view(1, 17)
            obj = {"big": big, "small": small, "epoch": 7}
            torch.save(obj, src)
            step("torch.save: %.1f GB in %.1fs" % (os.path.getsize(src) / 1e9, time.monotonic() - t0))
            t0 = time.monotonic()
            state["big_sha"] = oracle.tensor_sha256(big)  # streams the numpy buffer, no copy
            step("python sha256 of 4 GiB: %.1fs" % (time.monotonic() - t0))
            state["small"] = small.clone()
            del big, obj
            gc.collect()
            assert os.path.getsize(src) > 2**32, "file is not > 4 GiB"

        if not r.check("torch.save 4 GiB + 100 B uint8 tensor", write):
            r.finish()

        def inspect_json():
            exp = oracle.Obj(
                [
                    ("big", oracle.TensorJ("uint8", [BIG], state["big_sha"])),
                    ("small", oracle.TensorJ("float32", [1, 17], oracle.tensor_sha256(state["small"]))),
                    ("epoch", 7),
                ]
            )
            res = oracle.run_tool(tool, ["inspect", "--json", src], timeout=TOOL_TIMEOUT)
            step("sgckpt inspect --json: %.1fs, peak RSS %.0f MiB" % (res.seconds, res.maxrss_kib / 1024.0))
            oracle.assert_ok(res)
            oracle.assert_json_equal(exp, oracle.parse_tool_json(res.stdout))

        r.check("inspect --json on the zip64 file", inspect_json)

        def convert():
            res = oracle.run_tool(tool, ["convert", src, dst], timeout=TOOL_TIMEOUT)
            step("sgckpt convert: %.1fs, peak RSS %.0f MiB" % (res.seconds, res.maxrss_kib / 1024.0))
            oracle.assert_ok(res)
            assert os.path.getsize(dst) > 2**32, "converted file is only %d bytes" % os.path.getsize(dst)

        if r.check("convert the zip64 file", convert):

            def layout():
                t0 = time.monotonic()
                root = "big_converted"
                with zipfile.ZipFile(dst) as z, open(dst, "rb") as f:
                    bad = z.testzip()
                    assert bad is None, "CRC check failed for %r" % bad
                    for info in z.infolist():
                        assert info.filename.startswith(root + "/"), "entry %r not under %s/" % (info.filename, root)
                        assert info.compress_type == zipfile.ZIP_STORED, "entry %r compressed" % info.filename
                        f.seek(info.header_offset)
                        h = f.read(30)
                        assert h[:4] == b"PK\x03\x04"
                        nlen, xlen = struct.unpack("<HH", h[26:30])
                        off = info.header_offset + 30 + nlen + xlen
                        assert off % 64 == 0, "payload of %r at %d not 64-byte aligned" % (info.filename, off)
                    assert z.read(root + "/version") == b"3\n"
                    sizes = sorted(i.file_size for i in z.infolist())
                    assert sizes[-1] == BIG, "largest record is %d bytes, expected %d" % (sizes[-1], BIG)
                # Zip64 end records must be present (the CD offset is beyond 4 GiB).
                with open(dst, "rb") as f:
                    f.seek(-200, os.SEEK_END)
                    tail = f.read()
                assert b"PK\x06\x06" in tail and b"PK\x06\x07" in tail, "no zip64 end record / locator at the end of the file"
                step("zip layout + CRCs: %.1fs" % (time.monotonic() - t0))

            r.check("converted file: zip64 layout, CRCs, alignment", layout)

            def torch_load():
                t0 = time.monotonic()
                obj = torch.load(dst, map_location="cpu", weights_only=True)
                step("torch.load(weights_only=True): %.1fs" % (time.monotonic() - t0))
                assert type(obj) is dict and list(obj) == ["big", "small", "epoch"], "keys %s" % list(obj)
                big = obj["big"]
                assert big.dtype == torch.uint8 and tuple(big.shape) == (BIG,), "big: %s %s" % (big.dtype, tuple(big.shape))
                for k, v in MARKS.items():
                    assert int(big[k]) == v, "big[%d] = %d, expected %d" % (k, int(big[k]), v)
                assert int(big[12345678]) == 0 and int(big[3 * 2**30]) == 0
                assert type(obj["epoch"]) is int and obj["epoch"] == 7
                oracle.assert_deep_equal(state["small"], obj["small"])
                del big, obj
                gc.collect()

            r.check("torch.load(weights_only=True) of the converted file", torch_load)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()
