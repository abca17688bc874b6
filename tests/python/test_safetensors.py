"""safetensors both ways, against the real `safetensors` package from PyPI.

Checks:
  * files that safetensors.torch.save_file and safetensors.numpy.save_file write, with every
    dtype torch 1.13 and numpy have (bool, uint8/16/32/64, int8/16/32/64, float16/32/64,
    bfloat16), scalars and empty tensors, and a "__metadata__" map, are read by sgckpt:
    `sgckpt convert x.safetensors y.pth` gives the same bytes, dtypes and shapes to torch.load,
    and the metadata survives .safetensors -> .safetensors and .safetensors -> .pth -> .safetensors;
  * sgckpt writes what save_file writes: a state dict torch saved, converted by sgckpt to
    .safetensors, is byte for byte the file safetensors.torch.save_file writes for it, and
    safe_open / load_file read it;
  * a whole training checkpoint is refused (nested dicts, non-tensors) with a message naming
    --flatten, and with --flatten every tensor is written under its dotted name;
  * hostile files (oversized or lying headers, overlapping, gapped or out-of-range offsets,
    duplicate names, bad JSON, dtype/shape lies) are refused by sgckpt cleanly (exit 1, one
    line) and by safetensors too, unless the list below says safetensors accepts it.

Environment: SGCKPT_TOOL; the interpreter must have torch, numpy and safetensors
(scripts/install-pypi-oracle.sh makes one; tests/CMakeLists.txt runs this with it).
Run: SGCKPT_TOOL=build/tools/sgckpt /var/cache/sgckpt/pypi-venv/bin/python tests/python/test_safetensors.py

Runs with the PyPI oracles.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

try:
    import numpy  # noqa: E402
    import safetensors  # noqa: E402
    import safetensors.numpy  # noqa: E402
    import safetensors.torch  # noqa: E402
except ImportError as e:  # a missing oracle is a failure, not a skip
    oracle.fatal("the safetensors oracle is missing (%s): run scripts/install-pypi-oracle.sh and use its python" % e)

TOOL = oracle.require_tool()
R = oracle.Runner("safetensors (safetensors %s)" % safetensors.__version__)
WORK = tempfile.mkdtemp(prefix="sgckpt-safetensors-")


def path(name):
    return os.path.join(WORK, name)


def tool_ok(*args):
    res = oracle.run_tool(TOOL, list(args))
    oracle.assert_ok(res)
    return res


def same(a, b, where):
    assert a.dtype == b.dtype, "%s: dtype %s != %s" % (where, a.dtype, b.dtype)
    assert tuple(a.shape) == tuple(b.shape), "%s: shape %s != %s" % (where, tuple(a.shape), tuple(b.shape))
    assert oracle.tensor_bytes(a) == oracle.tensor_bytes(b), "%s: bytes differ" % where


def torch_tensors():
    g = torch.Generator().manual_seed(7)
    out = {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "i64": torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4),
        "i32": torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "unicode \u00e9\u4e2d": torch.ones(1),
    }
    return out


def check_torch_written():
    tensors = torch_tensors()
    src = path("torch_written.safetensors")
    safetensors.torch.save_file(tensors, src, metadata={"format": "pt", "note": "caf\u00e9"})
    out = path("torch_written.pth")
    tool_ok("convert", src, out)
    back = torch.load(out)
    assert sorted(back) == sorted(tensors), sorted(back)
    for k, t in tensors.items():
        same(back[k], t, k)
    # safetensors -> safetensors keeps the metadata; safe_open reads the copy.
    again = path("torch_written_again.safetensors")
    tool_ok("convert", src, again)
    with safetensors.safe_open(again, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "caf\u00e9"}, f.metadata()
        for k, t in tensors.items():
            same(f.get_tensor(k), t, k)
    # Through a .pth file and back: the metadata rides along as the state dict's attribute.
    round_trip = path("torch_written_round_trip.safetensors")
    tool_ok("convert", out, round_trip)
    with safetensors.safe_open(round_trip, framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "caf\u00e9"}, f.metadata()
    res = tool_ok("inspect", src)
    assert "f32" in res.stdout.decode() and "float32" in res.stdout.decode(), res.stdout[:400]


def check_numpy_written():
    arrays = {
        "u16": numpy.array([0, 65535], dtype=numpy.uint16),
        "u32": numpy.array([0, 2**32 - 1], dtype=numpy.uint32),
        "u64": numpy.array([0, 2**64 - 1], dtype=numpy.uint64),
        "f32": numpy.arange(6, dtype=numpy.float32).reshape(2, 3),
    }
    src = path("numpy_written.safetensors")
    safetensors.numpy.save_file(arrays, src)
    out = path("numpy_written.safetensors.copy.safetensors")
    tool_ok("convert", src, out)
    back = safetensors.numpy.load_file(out)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape and back[k].tobytes() == a.tobytes(), k


def check_sgckpt_writes_what_save_file_writes():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(4, 2))
    sd = model.state_dict()
    pth = path("model.pth")
    torch.save(sd, pth)
    ours = path("model_sgckpt.safetensors")
    tool_ok("convert", pth, ours)
    theirs = path("model_safetensors.safetensors")
    safetensors.torch.save_file(dict(sd), theirs)
    with open(ours, "rb") as a, open(theirs, "rb") as b:
        assert a.read() == b.read(), "sgckpt's file differs from safetensors.torch.save_file's"
    back = safetensors.torch.load_file(ours)
    for k, t in sd.items():
        same(back[k], t, k)


def check_checkpoint_needs_flatten():
    ck = {"net": {"w": torch.ones(2)}, "optimizer_state_dict": {"state": {0: {"momentum_buffer": torch.zeros(2)}}},
          "epoch": 3}
    pth = path("ckpt.pth")
    torch.save(ck, pth)
    res = oracle.run_tool(TOOL, ["convert", pth, path("ckpt.safetensors")])
    oracle.assert_clean_refusal(res, ["flatten"])
    assert not os.path.exists(path("ckpt.safetensors")), "a refused save left a file"
    res = oracle.run_tool(TOOL, ["convert", pth, path("ckpt_flat.safetensors"), "--flatten", "--drop", "epoch"])
    oracle.assert_clean_refusal(res, ["int"])  # optimizer state is keyed by ints: say so
    tool_ok("convert", pth, path("net.safetensors"), "--select", "net")
    assert sorted(safetensors.torch.load_file(path("net.safetensors"))) == ["w"]
    torch.save({"net": {"w": torch.ones(2)}, "ema": {"w": torch.zeros(2)}}, path("two.pth"))
    tool_ok("convert", path("two.pth"), path("two.safetensors"), "--flatten")
    flat = safetensors.torch.load_file(path("two.safetensors"))
    assert sorted(flat) == ["ema.w", "net.w"], sorted(flat)


def raw_file(header, data=b"", claimed=None):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if claimed is None else claimed) + h + data


F4 = '"dtype":"F32","shape":[1],'
HOSTILE = collections.OrderedDict(
    [
        ("header_terabytes", (raw_file("{}", claimed=1 << 40), ["more than the format"])),
        ("header_past_end", (raw_file("{}", claimed=100), ["claims 100 bytes"])),
        ("bad_json", (raw_file('{"a":{' + F4 + '"data_offsets":[0,4]}', b"abcd"), ["invalid JSON"])),
        ("duplicate_name", (raw_file('{"a":{' + F4 + '"data_offsets":[0,4]},"a":{' + F4 + '"data_offsets":[4,8]}}', b"abcdefgh"), ["twice"])),
        ("overlap", (raw_file('{"a":{' + F4 + '"data_offsets":[0,4]},"b":{' + F4 + '"data_offsets":[2,6]}}', b"abcdef"), ["overlaps"])),
        ("gap", (raw_file('{"a":{' + F4 + '"data_offsets":[4,8]}}', b"abcdefgh"), ["gap"])),
        ("out_of_range", (raw_file('{"a":{' + F4 + '"data_offsets":[0,4]}}', b"ab"), ["past the data area"])),
        ("shape_lies", (raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"abcd"), ["need 8"])),
        ("bytes_left_over", (raw_file('{"a":{' + F4 + '"data_offsets":[0,4]}}', b"abcdefgh"), ["cover 4 of the 8"])),
        ("unknown_dtype", (raw_file('{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}', b"a"), ["Q7"])),
        ("negative_offset", (raw_file('{"a":{' + F4 + '"data_offsets":[-4,0]}}', b""), ["non-negative integer"])),
        ("huge_shape", (raw_file('{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}', b"abcdefgh"), ["tensor 'a'"])),
        ("invalid_utf8", (raw_file(b'{"\xff":{' + F4.encode() + b'"data_offsets":[0,4]}}', b"abcd"), ["UTF-8"])),
        ("deep_nesting", (raw_file('{"a":{"x":' + "[" * 200 + "]" * 200 + "}}"), ["nesting"])),
    ]
)
# Files the safetensors package reads although they lie; sgckpt refuses them on purpose.
SAFETENSORS_ACCEPTS = set()


def check_hostile(name, data, phrases):
    f = path("hostile_%s.safetensors" % name)
    with open(f, "wb") as out:
        out.write(data)
    res = oracle.run_tool(TOOL, ["inspect", f])
    oracle.assert_clean_refusal(res, phrases)
    try:
        safetensors.torch.load_file(f)
        accepted = True
    except Exception:  # safetensors raises SafetensorError or others
        accepted = False
    if accepted and name not in SAFETENSORS_ACCEPTS:
        SAFETENSORS_ACCEPTS.add(name)
        print("   note: safetensors %s reads %s; sgckpt refuses it" % (safetensors.__version__, name), flush=True)


R.check("files safetensors.torch.save_file writes (every torch 1.13 dtype, metadata) read as torch sees them", check_torch_written)
R.check("files safetensors.numpy.save_file writes (uint16/32/64) survive a convert", check_numpy_written)
R.check("sgckpt's safetensors file is byte for byte safetensors.torch.save_file's", check_sgckpt_writes_what_save_file_writes)
R.check("a whole checkpoint needs --flatten (or --select); int keys are refused", check_checkpoint_needs_flatten)
for name, (data, phrases) in HOSTILE.items():
    R.check("hostile %s refused cleanly" % name, check_hostile, name, data, phrases)
print("   safetensors accepts, sgckpt refuses: %s" % (json.dumps(sorted(SAFETENSORS_ACCEPTS)) or "none"), flush=True)
R.finish()
