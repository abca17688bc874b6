#!/usr/bin/env python3
"""torch.dtype, torch.device, torch.Size and numpy values, both ways, against the running torch.

torch writes -> sgckpt reads: a file holding each kind (numpy: every numeric dtype as a
scalar and as an array, C and Fortran order, big-endian, 0-d and empty arrays) is read by
`sgckpt inspect --json` equal to the mirror of torch.load's result, and `inspect` names each
kind in its listing.

sgckpt writes -> torch reads: `sgckpt convert` of that file loads in torch as the same objects
(types, dtypes, shapes, elements). With weights_only=True: Size and dtypes load in every torch
(torch 1.13's allowlist lacks bfloat16, uint8 and bool dtype values), torch.device in torch
2.x (torch 1.13's restricted loader has no torch.device: its refusal is checked); numpy values are refused naming the global, and load once allowlisted where torch has
add_safe_globals (torch >= 2.4; numpy 2 needs its tuple form naming numpy.core.multiarray, the
module sgckpt writes so that numpy 1.x reads the file too).

Refusals: object arrays, str arrays, structured dtypes, numpy.matrix, long double; and
`--no-numpy` refuses every numpy value.

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_torch_values.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/torch_values, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402


def numpy_values():
    out = {}
    g = np.random.default_rng(3)
    for name in oracle.NUMPY_NAMES:
        dt = np.dtype(name)
        if dt.kind == "b":
            arr = g.integers(0, 2, size=(2, 3)).astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            arr = np.array([[info.min, info.max, 0], [1, 2, 3]], dtype=dt)
        elif dt.kind == "f":
            arr = np.array([[0.5, -0.0, np.inf], [np.nan, 1e-3, -7.25]], dtype=dt)
        else:
            arr = (np.array([[1, -2, 3], [0.5, 0, 9]]) + 1j * np.array([[2, 0, -1], [4, 4, 4]])).astype(dt)
        out["array_" + name] = arr
        out["scalar_" + name] = arr.reshape(-1)[1]
    out["fortran"] = np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4))
    out["big_endian"] = np.array([1.5, -2.0, 3.0], dtype=">f8")
    out["big_endian_complex"] = np.array([1 + 2j], dtype=">c8")
    out["zero_d"] = np.array(7.0)
    out["empty"] = np.zeros((0, 3), dtype=np.float32)
    out["snapshots_metric"] = np.array([0.91, 0.93, 0.92])  # as SuperGradients' averaging keeps it
    return out


def torch_values():
    return {
        "dtype_f16": torch.float16,
        "dtype_bf16": torch.bfloat16,
        "dtype_i64": torch.int64,
        "device_cuda1": torch.device("cuda", 1),
        "device_cpu": torch.device("cpu"),
        "device_meta": torch.device("meta"),
        "size": torch.Size([2, 3]),
        "size_empty": torch.Size([]),
        "sizes": [torch.Size([4]), (1, 2)],
    }


def same(a, b, path="<root>"):
    """Deep equality of loaded objects: exact types, numpy dtypes (byte order aside), shapes,
    elements bit for bit."""
    assert type(a) is type(b), "%s: %s vs %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, dict):
        assert list(a) == list(b), "%s: keys %s vs %s" % (path, list(a), list(b))
        for k in a:
            same(a[k], b[k], "%s/%s" % (path, k))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), "%s: length" % path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s/%d" % (path, i))
    elif oracle.is_numpy_value(a):
        x, y = np.asarray(a), np.asarray(b)
        assert x.dtype.name == y.dtype.name and x.shape == y.shape, "%s: %s%s vs %s%s" % (path, x.dtype, x.shape, y.dtype, y.shape)
        le = lambda v: np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<"))).tobytes()  # noqa: E731
        assert le(x) == le(y), "%s: elements differ" % path
    else:
        assert a == b, "%s: %r vs %r" % (path, a, b)


def refused_by_weights_only(path, name):
    """torch.load(weights_only=True) must refuse the file, naming the global `name`."""
    try:
        torch.load(path, weights_only=True)
    except Exception as e:
        assert name in str(e), str(e)[:500]
    else:
        raise AssertionError("weights_only read %s" % name)


def numpy_safe_globals():
    """What torch's weights_only loader must be told to read numpy values sgckpt writes."""
    core = np._core if hasattr(np, "_core") else np.core
    names = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), (core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype]
    return names + [type(np.dtype(n)) for n in oracle.NUMPY_NAMES]


def main():
    tool = oracle.require_tool()
    r = oracle.Runner("torch.dtype / device / Size and numpy values")
    torch2 = hasattr(torch._utils, "_rebuild_tensor_v3")
    with tempfile.TemporaryDirectory() as d:

        def saved_and_converted(obj, name):
            """(the file torch writes for obj, the file `sgckpt convert` makes of it)."""
            theirs, mine = os.path.join(d, name + ".pt"), os.path.join(d, name + "_sgckpt.pt")
            torch.save(obj, theirs)
            oracle.assert_ok(oracle.run_tool(tool, ["convert", theirs, mine]))
            return theirs, mine

        src = os.path.join(d, "values.pt")
        torch.save({**torch_values(), **numpy_values()}, src)
        expected = torch.load(src, weights_only=False)

        def inspect_json():
            res = oracle.run_tool(tool, ["inspect", "--json", src])
            oracle.assert_ok(res)
            oracle.assert_json_equal(oracle.expected_json(expected), oracle.parse_tool_json(res.stdout))

        r.check("torch writes -> sgckpt inspect --json mirrors every kind", inspect_json)

        def inspect_text():
            res = oracle.run_tool(tool, ["inspect", src])
            oracle.assert_ok(res)
            text = res.stdout.decode()
            for phrase in ("dtype torch.float16", "device cuda:1", "device cpu", "torch.Size [2, 3]",
                           "numpy scalar float64 -0.0", "numpy array int32 [3, 4]", "numpy scalar bool"):
                assert phrase in text, "inspect does not show %r:\n%s" % (phrase, text[:3000])

        r.check("inspect lists dtype, device, torch.Size and numpy values", inspect_text)

        out = os.path.join(d, "converted.pt")
        oracle.assert_ok(oracle.run_tool(tool, ["convert", src, out]))
        r.check("sgckpt convert -> torch.load reads the same objects",
                lambda: same(expected, torch.load(out, weights_only=False)))

        torch_only, mine = saved_and_converted(torch_values(), "torch_only")

        def weights_only_torch_kinds():
            if torch2:
                same(torch.load(torch_only, weights_only=False), torch.load(mine, weights_only=True))
                return
            # torch 1.13: sizes and most dtypes load; torch.device and the dtypes bfloat16, uint8
            # and bool are not in its allowlist.
            no_device = {k: v for k, v in torch_values().items() if not k.startswith("device") and k != "dtype_bf16"}
            plain, plain_mine = saved_and_converted(no_device, "no_device")
            same(torch.load(plain, weights_only=False), torch.load(plain_mine, weights_only=True))
            _, device_mine = saved_and_converted({"device": torch.device("cuda", 1)}, "device")
            refused_by_weights_only(device_mine, "torch.device")

        r.check("sgckpt's dtype / Size (and device on torch 2.x) load with weights_only=True", weights_only_torch_kinds)

        numpy_only, numpy_mine = saved_and_converted(numpy_values(), "numpy_only")

        def weights_only_numpy():
            refused_by_weights_only(numpy_mine, "numpy.core.multiarray")
            add = getattr(torch.serialization, "safe_globals", None)
            if add is None:
                return  # torch 1.13: no way to allow them
            with add(numpy_safe_globals()):
                same(torch.load(numpy_only, weights_only=False), torch.load(numpy_mine, weights_only=True))

        r.check("numpy values: refused by weights_only naming the global, read once allowlisted", weights_only_numpy)

        bad = {
            "object array": (np.array([1, "a"], dtype=object), "object arrays"),
            "str array": (np.array(["ab", "c"]), "only bool, int, uint, float and complex"),
            "structured": (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "structured"),
            "matrix": (np.matrix([[1.0, 2.0]]), "refused global 'numpy.matrix'"),
            "long double": (np.array([1.0], dtype=np.longdouble), "only bool, int, uint, float and complex"),
        }
        for name, (value, phrase) in bad.items():
            path = os.path.join(d, name.replace(" ", "_") + ".pt")
            torch.save({"x": value}, path)
            r.check("refused: numpy %s" % name, lambda path=path, phrase=phrase: oracle.assert_clean_refusal(
                oracle.run_tool(tool, ["inspect", path]), [phrase]))
        r.check("--no-numpy refuses numpy values", lambda: oracle.assert_clean_refusal(
            oracle.run_tool(tool, ["inspect", "--no-numpy", src]), ["numpy values are switched off"]))
    r.finish()


if __name__ == "__main__":
    main()
