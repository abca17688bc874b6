#!/usr/bin/env python3
"""Writes the fuzzing seed corpus with real torch (Debian's python3-torch):

    /usr/bin/python3 tests/fuzz/make_seeds.py [OUT_DIR]     (default: tests/fuzz/seeds)

OUT_DIR/pth/     small, diverse torch.save outputs for fuzz_pth: module state dicts, optimizer
                 and scheduler states, views and shared storages, every dtype, 0-dim and
                 0-numel tensors, Parameters, nested Python values, torch.dtype / device /
                 Size and numpy values, legacy (pre-1.6) streams,
                 pickle protocols 2/3/4/5, a re-packed deflated archive, a file-object root.
OUT_DIR/pickle/  the data.pkl of each zip file plus the object pickle of protocols 2 to 5,
                 for fuzz_pickle.

Deterministic (fixed seeds, fixed root names); files are kept tiny (< 2 MB in all) so that
the fuzzer's mutations land on structure rather than tensor payloads.
"""
import collections
import io
import os
import sys
import zipfile

sys.dont_write_bytecode = True
import numpy as np  # noqa: E402
import torch  # noqa: E402

nn = torch.nn


def objects():
    torch.manual_seed(0)
    out = {}
    out["conv_state"] = nn.Conv2d(2, 3, 2).state_dict()
    out["bn_state"] = nn.BatchNorm2d(3).state_dict()
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    out["seq_state"] = seq.state_dict()

    x = torch.randn(5, 3)
    for name, opt in [
        ("sgd", torch.optim.SGD(seq.parameters(), lr=0.1, momentum=0.9)),
        ("adam", torch.optim.Adam(seq.parameters(), lr=1e-3, amsgrad=True)),
    ]:
        opt.zero_grad()
        seq(x).sum().backward()
        opt.step()
        out[name + "_state"] = opt.state_dict()
    opt = torch.optim.SGD(seq.parameters(), lr=0.1)
    out["multisteplr_state"] = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4, 4]).state_dict()

    base = torch.arange(12, dtype=torch.float32).view(3, 4)
    out["views"] = {"base": base, "t": base.t(), "slice": base[1:, 1:3], "step": base.view(-1)[1::2],
                    "expand": torch.ones(1, 3).expand(4, 3)}
    out["view_only"] = base[1:, 1:3]
    a = torch.arange(4, dtype=torch.int64)
    out["shared"] = [a, a.view(2, 2), a[2:]]
    dtypes = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.int16,
              torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128]
    out["dtypes"] = {str(d): torch.zeros(2, dtype=d) for d in dtypes}
    out["scalar0d"] = torch.tensor(3.5)
    out["empty"] = torch.empty(0, 3)
    out["param"] = nn.Parameter(torch.ones(2))
    out["param_nograd"] = nn.Parameter(torch.ones(2), requires_grad=False)
    out["requires_grad"] = torch.ones(2, requires_grad=True)
    out["nested"] = {
        "none": None, "str": "h\u00e9llo \u65e5", "ints": [0, 255, 256, 65536, -1, 2**31, 2**40, -(2**63), 2**70],
        "float": 0.1, "bools": (True, False), "tuple4": (1, 2, 3, 4), "empty": ([], {}, ()),
        7: "int key", "bytes": b"\x00\xffab", "empty_bytes": b"", "deep": [[[[{"x": [1]}]]]],
        "od": collections.OrderedDict(a=1), "counter": collections.Counter({1: 2}),
    }
    out["checkpoint"] = {"epoch": 3, "model": out["seq_state"], "optimizer": out["sgd_state"], "best": 0.5}
    out["storage_only"] = torch.arange(3, dtype=torch.int16).storage()
    out["torch_values"] = {"dtype": torch.float16, "device": torch.device("cuda", 1), "cpu": torch.device("cpu"),
                           "size": torch.Size([2, 3])}
    out["numpy_values"] = {"f64": np.float64(1.5), "b": np.bool_(True), "c": np.complex64(1 + 2j),
                           "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
                           "big_endian": np.array([1, 2], dtype=">i4"), "zero_d": np.array(7.0)}
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "seeds")
    pth_dir = os.path.join(out_dir, "pth")
    pkl_dir = os.path.join(out_dir, "pickle")
    os.makedirs(pth_dir, exist_ok=True)
    os.makedirs(pkl_dir, exist_ok=True)
    written = []

    def put(path, data):
        with open(path, "wb") as f:
            f.write(data)
        written.append(path)

    for name, obj in objects().items():
        path = os.path.join(pth_dir, name + ".pt")  # root folder = name
        torch.save(obj, path)
        written.append(path)
        with zipfile.ZipFile(path) as z:
            put(os.path.join(pkl_dir, name + ".pkl"), z.read(name + "/data.pkl"))

    sd = objects()["seq_state"]
    small = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "n": 1}
    # Legacy stream format (pre-1.6 layout; 6-tuple persistent ids with view metadata).
    for name, obj in [("legacy_state", sd), ("legacy_views", objects()["views"]), ("legacy_small", small)]:
        path = os.path.join(pth_dir, name + ".pt")
        torch.save(obj, path, _use_new_zipfile_serialization=False)
        written.append(path)
    # Pickle protocols 3 to 5 (BINBYTES, FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL...).
    for proto in (3, 4, 5):
        name = "proto%d" % proto
        path = os.path.join(pth_dir, name + ".pt")
        torch.save({"w": small["w"], "b": b"xy", "s": "abc", "l": [1, 2.5]}, path, pickle_protocol=proto)
        written.append(path)
        with zipfile.ZipFile(path) as z:
            put(os.path.join(pkl_dir, name + ".pkl"), z.read(name + "/data.pkl"))
    # Saved to a file object (root 'archive/').
    buf = io.BytesIO()
    torch.save(small, buf)
    put(os.path.join(pth_dir, "from_buffer.pt"), buf.getvalue())
    # Re-packed by Python's zipfile with deflate (what other tools produce; torch loads it).
    src = os.path.join(pth_dir, "conv_state.pt")
    dst = os.path.join(pth_dir, "deflated.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    written.append(dst)

    total = sum(os.path.getsize(p) for p in written)
    print("make_seeds: %d files, %d bytes in %s" % (len(written), total, out_dir))


if __name__ == "__main__":
    main()
