#!/usr/bin/env python3
"""`sgckpt convert --cast FROM=TO` against torch's Tensor.to(TO), element by element, and
--select / --key / --drop against the same edits done in Python.

Casts: one file holds a tensor per dtype this torch has, with the values where conversions
differ (every bit pattern of the 1- and 2-byte dtypes; for the wider ones the specials,
integer limits, powers of two and their neighbours, every float16 value, the float8 rounding
ties, random values). For each target dtype one `convert` casts every other dtype into it;
each result must equal torch's `.to(target)` bit for bit, except that any NaN matches any
NaN, and that a float out of an integer target's range (or NaN) may give anything: C++ and
torch leave it undefined, and torch's vectorized and scalar paths disagree among themselves.
A pair torch cannot convert is listed and skipped; casting into float8_e8m0fnu is refused.

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_cast.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/cast, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import corpus  # noqa: E402
import oracle  # noqa: E402
from oracle import torch  # noqa: E402

warnings.filterwarnings("ignore")  # complex -> real casts warn

DTYPES = corpus.DTYPES + corpus.DTYPES_2X
E8M0 = getattr(torch, "float8_e8m0fnu", None)
BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def itemsize(dt):
    return torch.empty(0, dtype=dt).element_size()


def all_patterns(dt):
    n = itemsize(dt)
    if dt == torch.bool:
        return torch.tensor([False, True])
    if n == 1:
        return torch.arange(256, dtype=torch.int16).to(torch.uint8).view(dt)
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dt)


def float_values():
    """float64 values where conversions differ."""
    v = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 0.5, 1.5, 2.5, -0.5, -1.5, 255.5, 256.0, -128.5]
    for e in (7, 8, 15, 16, 31, 32, 53, 63, 64):
        for s in (1, -1):
            v += [s * 2.0**e, s * (2.0**e - 1), s * (2.0**e + 1), s * 2.0**e * (1 - 2**-24), s * 2.0**e * (1 + 2**-23)]
    v += [2.0**-126, 2.0**-149, 2.0**-24, 2.0**-25, 1e-3, 3.4028234663852886e38, 1e39, 65504.0, 65520.0, 1e-310]
    halves = all_patterns(torch.float16).to(torch.float64)
    ties = []
    for dt in corpus.DTYPES_2X:  # midpoints between neighbouring float8 values: the ties
        if dt.is_floating_point and dt != E8M0:
            grid = all_patterns(dt).to(torch.float64)
            grid = grid[torch.isfinite(grid)].unique()
            ties.append((grid[1:] + grid[:-1]) / 2)
    g = torch.Generator().manual_seed(5)
    rand = torch.cat([torch.randn(2000, generator=g, dtype=torch.float64) * 10.0**k for k in (-3, 0, 2, 5, 10)])
    return torch.cat([torch.tensor(v, dtype=torch.float64), halves] + ties + [rand])


def int_values():
    v = [0, 1, -1, 127, 128, 255, 256, -128, -129, 32767, 32768, 65535, 65536, -32768]
    for e in (31, 32, 53, 62, 63):
        v += [2**e - 1, 2**e, 2**e + 1, -(2**e) - 1, -(2**e), -(2**e) + 1]
    v = [x for x in v if -(2**63) <= x < 2**63] + [-(2**63), 2**63 - 1]
    g = torch.Generator().manual_seed(6)
    return torch.cat([torch.tensor(v, dtype=torch.int64), torch.randint(-(2**62), 2**62, (2000,), generator=g)])


def sample(dt):
    if dt == torch.bool or itemsize(dt) <= 2 and not dt.is_complex:
        return all_patterns(dt)
    if dt.is_complex:
        f = float_values()
        part = f if dt == torch.complex128 else f.to(torch.float32)
        re, im = part, part.flip(0)
        c = torch.complex(re.to(torch.float64), im.to(torch.float64))
        return c.to(dt) if dt != torch.complex128 else c
    if dt.is_floating_point:
        return float_values().to(dt)
    i = int_values()  # int64; the narrower and unsigned ones take its low bits, as views
    if dt == torch.int64:
        return i
    if dt == torch.int32:
        return i.to(torch.int32)
    if dt == torch.uint64:
        return i.view(torch.uint64)
    return i.to(torch.int32).view(dt)  # uint32


def as_bits(t):
    """The tensor's elements as integers of the same width (complex128: two per element)."""
    t = t.contiguous()
    if t.dtype == torch.complex128:
        return torch.view_as_real(t).contiguous().view(torch.int64).reshape(-1)
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    return t.view(BITS[itemsize(t.dtype)])


def nan_mask(t):
    """Elements that are NaN (any part, for complex), as a bool tensor, or None if unknown."""
    try:
        if t.dtype.is_complex:
            r = torch.view_as_real(t.to(torch.complex128))
            return r.isnan().any(-1)
        if t.dtype.is_floating_point:
            return t.to(torch.float64).isnan()
    except Exception:
        return None
    return torch.zeros(t.shape, dtype=torch.bool)


def defined_mask(src, target):
    """Elements whose conversion C++ defines: a float or complex going into an integer dtype
    must be finite and, truncated, inside the target's range."""
    if target == torch.bool or target.is_floating_point or target.is_complex:
        return torch.ones(src.shape, dtype=torch.bool)
    if not (src.dtype.is_floating_point or src.dtype.is_complex):
        return torch.ones(src.shape, dtype=torch.bool)
    x = src.to(torch.complex128).real if src.dtype.is_complex else src.to(torch.float64)
    t = x.trunc()
    info = torch.iinfo(target)
    return torch.isfinite(x) & (t >= float(info.min)) & (t <= float(info.max)) & (t.abs() < 2.0**63)


def check_target(tool, d, src_path, sources, target, skipped):
    out = os.path.join(d, "cast_%s.pt" % oracle.dtype_name(target))
    args = ["convert", src_path, out]
    for dt in sources:
        if dt != target:
            args += ["--cast", "%s=%s" % (oracle.dtype_name(dt), oracle.dtype_name(target))]
    oracle.assert_ok(oracle.run_tool(tool, args, timeout=120))
    got = torch.load(out, map_location="cpu", weights_only=oracle.TORCH_VERSION >= (2, 0))
    checked = 0
    for dt, src in sources.items():
        name = oracle.dtype_name(dt)
        g = got[name]
        assert g.dtype == target, "%s: dtype %s, want %s" % (name, g.dtype, target)
        if oracle.TORCH_VERSION < (2, 0) and dt.is_complex and target == torch.bool:
            skipped.append("%s->bool (torch 1.13 looks only at the real part; 2.x, and sgckpt, at both)" % name)
            continue
        try:
            want = src.to(target)
        except Exception as e:
            skipped.append("%s->%s (%s)" % (name, oracle.dtype_name(target), type(e).__name__))
            continue
        assert g.shape == want.shape, "%s: shape %s vs %s" % (name, tuple(g.shape), tuple(want.shape))
        ok = defined_mask(src, target)
        gb, wb = as_bits(g), as_bits(want)
        if target == torch.complex128:
            ok = ok.repeat_interleave(2)
        same = gb == wb
        gn, wn = nan_mask(g), nan_mask(want)
        if gn is not None and wn is not None:
            both = gn & wn
            same |= both.repeat_interleave(2) if target == torch.complex128 else both
        bad = (~same & ok).nonzero().flatten()
        if len(bad):
            i = int(bad[0]) // (2 if target == torch.complex128 else 1)
            raise AssertionError("%s -> %s: %d elements differ from torch; first at %d: %r -> ours %r, torch %r"
                                 % (name, oracle.dtype_name(target), len(bad), i, src[i].item() if dt != E8M0 else int(src.view(torch.uint8)[i]),
                                    g[i].to(torch.float64).item() if not target.is_complex else g[i], want[i].to(torch.float64).item() if not target.is_complex else want[i]))
        checked += int(ok.sum())
    return checked


def check_casts(r, tool, d):
    sources = collections.OrderedDict()
    for dt in DTYPES:
        try:
            sources[dt] = sample(dt)
        except Exception as e:  # a dtype this torch cannot even build values for
            print("note: no sample for %s (%s)" % (dt, e))
    src_path = os.path.join(d, "sources.pt")
    torch.save({oracle.dtype_name(dt): t for dt, t in sources.items()}, src_path)
    skipped = []
    total = [0]
    for target in sources:
        if target == E8M0:
            continue
        r.check("cast every dtype into %s" % oracle.dtype_name(target),
                lambda t=target: total.__setitem__(0, total[0] + check_target(tool, d, src_path, sources, t, skipped)))
    print("note: %d elements compared with torch over %d dtypes; pairs not compared: %s"
          % (total[0], len(sources), ", ".join(skipped) or "none"), flush=True)
    if E8M0 is not None:
        r.check("cast into float8_e8m0fnu is refused", lambda: oracle.assert_clean_refusal(
            oracle.run_tool(tool, ["convert", src_path, os.path.join(d, "e8.pt"), "--cast", "float32=float8_e8m0fnu"])))


# -- --select / --key / --drop ----------------------------------------------------------------------


def sg_checkpoint():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return {"net": model.state_dict(), "ema_net": model.state_dict(), "epoch": 3, "optimizer_state_dict": opt.state_dict()}


def edited(tool, d, name, src, args):
    out = os.path.join(d, name + ".pt")
    oracle.assert_ok(oracle.run_tool(tool, ["convert", src, out] + args))
    return torch.load(out, map_location="cpu", weights_only=False)


def check_edits(r, tool, d):
    ck = sg_checkpoint()
    ck["optimizer_state_dict"]["state"] = {0: {"momentum_buffer": torch.ones(4, 3, 3, 3)}}
    src = os.path.join(d, "ck.pt")
    torch.save(ck, src)
    orig = torch.load(src, weights_only=False)

    def select_net():
        oracle.assert_deep_equal(orig["net"], edited(tool, d, "sel", src, ["--select", "net"]))

    def select_int_key():
        oracle.assert_deep_equal(orig["optimizer_state_dict"]["state"][0],
                                 edited(tool, d, "sel0", src, ["--select", "optimizer_state_dict/state/0"]))

    def keep_weights():
        got = edited(tool, d, "keep", src, ["--key", "net/*weight"])
        want = {"net": collections.OrderedDict((k, v) for k, v in orig["net"].items() if k.endswith("weight"))}
        want["net"]._metadata = orig["net"]._metadata
        oracle.assert_deep_equal(want, got)

    def drop_everywhere():
        got = edited(tool, d, "drop", src, ["--drop", "*num_batches_tracked", "--drop", "optimizer_state_dict"])
        want = dict(orig)
        del want["optimizer_state_dict"]
        for k in ("net", "ema_net"):
            want[k] = collections.OrderedDict((n, v) for n, v in orig[k].items() if not n.endswith("num_batches_tracked"))
            want[k]._metadata = orig[k]._metadata
        oracle.assert_deep_equal(want, got)

    def typo_refused():
        out = os.path.join(d, "typo.pt")
        res = oracle.run_tool(tool, ["convert", src, out, "--key", "nett"])
        oracle.assert_clean_refusal(res)
        assert "matches no key path" in res.stderr_text, res.stderr_text
        assert not os.path.exists(out), "a refused convert wrote %s" % out

    def cast_keeps_sharing():
        base = torch.randn(4, 5)
        src2 = os.path.join(d, "views.pt")
        torch.save({"a": base, "t": base.t(), "row": base[2], "n": torch.arange(3)}, src2)
        got = edited(tool, d, "views_bf16", src2, ["--cast", "float32=bfloat16"])
        for k, want in (("a", base), ("t", base.t()), ("row", base[2])):
            assert got[k].dtype == torch.bfloat16, (k, got[k].dtype)
            assert torch.equal(got[k].view(torch.int16), want.to(torch.bfloat16).view(torch.int16)), k
            assert got[k].stride() == want.stride() and got[k].storage_offset() == want.storage_offset(), k
        assert got["a"].storage().data_ptr() == got["t"].storage().data_ptr() == got["row"].storage().data_ptr(), "sharing lost"
        assert got["n"].dtype == torch.int64

    r.check("--select net writes the state dict itself", select_net)
    r.check("--select through an int key (optimizer state 0)", select_int_key)
    r.check("--key net/*weight keeps only those entries (and _metadata)", keep_weights)
    r.check("--drop removes every match, at any depth", drop_everywhere)
    r.check("--key that matches nothing is refused, no file written", typo_refused)
    r.check("--cast keeps views sharing one storage, strides and offsets", cast_keeps_sharing)


def main():
    r = oracle.Runner("test_cast: sgckpt convert --cast/--select/--key/--drop vs torch")
    tool = oracle.require_tool()
    with tempfile.TemporaryDirectory(prefix="sgckpt_cast_") as d:
        check_casts(r, tool, d)
        check_edits(r, tool, d)
    r.finish()


if __name__ == "__main__":
    main()
