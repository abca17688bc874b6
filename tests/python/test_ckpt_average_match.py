#!/usr/bin/env python3
"""`sgckpt average` and `sgckpt match` against torch.

average: torch writes a few state dicts (as SG checkpoints {"net": ..., "ema_net": ...} and as
bare state dicts); `sgckpt average OUT ...` must write a file that torch.load reads (also with
weights_only=True), whose floating tensors equal the float64 mean of the inputs rounded once
to the dtype (so torch's float32 mean within 1e-6 relative), whose integer/bool tensors are the
first input's (dtype kept), with the first input's key order and _metadata, and that
load_state_dict(strict=True) accepts.

match: for pairs of models (same architecture, extra layer, missing layer, other head size,
DataParallel prefix) `sgckpt match MODEL CKPT --strict on|off --json` must agree with
torch's model.load_state_dict(ckpt, strict=True/False): success <-> exit 0 and "ok": true;
missing/unexpected keys equal torch's missing_keys/unexpected_keys (strict=False result);
the mismatched keys are those torch names in "size mismatch for <key>".

Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_ckpt_average_match.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/ckpt_average_match, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

nn = torch.nn


def make_net(num_classes=10, extra=False, width=8):
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(3, width, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * 4, num_classes),
    ]
    if extra:
        layers.append(nn.Linear(num_classes, num_classes))
    return nn.Sequential(*layers)


def random_state(seed, batches, **kw):
    """A state dict of make_net with random values (BN buffers included)."""
    net = make_net(**kw)
    g = torch.Generator().manual_seed(seed)
    sd = net.state_dict()
    for k, v in sd.items():
        if v.dtype.is_floating_point:
            v.copy_(torch.randn(v.shape, generator=g) * (1.0 + seed))
    sd["1.num_batches_tracked"].fill_(batches)
    return sd


def mixed_state(seed):
    """Every dtype class the averaging meets."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 7, generator=g) * 100
    sd["f64"] = torch.randn(5, generator=g, dtype=torch.float64)
    sd["f16"] = torch.randn(9, generator=g).half()
    sd["bf16"] = torch.randn(9, generator=g).bfloat16()
    sd["i32"] = torch.randint(-5, 5, (4,), generator=g, dtype=torch.int32)
    sd["i64"] = torch.tensor(seed * 10)
    sd["mask"] = torch.randint(0, 2, (6,), generator=g).bool()
    sd["big"] = torch.randn(1000003, generator=g)  # several threads, cuts inside the tensor
    return sd


def expected_mean(tensors):
    """float64 sum over the inputs, divided once, rounded once to the dtype."""
    acc = torch.stack([t.double() for t in tensors]).sum(0) / len(tensors)
    if tensors[0].dtype in (torch.float16, torch.bfloat16):
        return acc.float().to(tensors[0].dtype)
    return acc.to(tensors[0].dtype)


def check_average_file(out, inputs):
    for weights_only in (False, True):
        loaded = torch.load(out, weights_only=weights_only)
        assert list(loaded.keys()) == ["net"], "top-level keys %r" % list(loaded.keys())
        net = loaded["net"]
        assert list(net.keys()) == list(inputs[0].keys()), "key order differs"
        assert getattr(net, "_metadata", None) == getattr(inputs[0], "_metadata", None), "_metadata differs"
        for k, v in net.items():
            first = inputs[0][k]
            assert v.dtype == first.dtype and v.shape == first.shape, "%s: %s %s vs %s %s" % (
                k, v.dtype, tuple(v.shape), first.dtype, tuple(first.shape))
            if v.dtype.is_floating_point:
                exp = expected_mean([s[k] for s in inputs])
                assert torch.equal(v, exp), "%s: not the float64 mean rounded once (max diff %g)" % (
                    k, (v.double() - exp.double()).abs().max().item())
                if v.dtype == torch.float32:
                    tm = torch.stack([s[k] for s in inputs]).mean(0)
                    assert torch.allclose(v, tm, rtol=1e-6, atol=1e-6 * tm.abs().max().item()), (
                        "%s: differs from torch's float32 mean beyond 1e-6" % k)
            else:
                assert torch.equal(v, first), "%s: integer/bool tensor is not the first input's" % k


def main():
    tool = oracle.require_tool()
    r = oracle.Runner("sgckpt average / match vs torch")
    tmp = tempfile.TemporaryDirectory(prefix="sgckpt-avg-")
    d = tmp.name

    def path(name):
        return os.path.join(d, name)

    # ---------------------------------------------------------------- average
    states = [random_state(s, batches=100 * (s + 1)) for s in range(3)]
    emas = [random_state(10 + s, batches=7 * (s + 1)) for s in range(3)]
    for i, (sd, ema) in enumerate(zip(states, emas)):
        torch.save({"net": sd, "ema_net": ema, "epoch": i + 1, "acc": 0.5}, path("ckpt%d.pth" % i))
    torch.save(states[0], path("bare0.pth"))

    def average_nets():
        out = path("avg.pth")
        res = oracle.run_tool(tool, ["average", out] + [path("ckpt%d.pth" % i) for i in range(3)])
        oracle.assert_ok(res)
        check_average_file(out, states)
        model = make_net()
        model.load_state_dict(torch.load(out)["net"], strict=True)

    def average_ema():
        out = path("avg_ema.pth")
        res = oracle.run_tool(tool, ["average", "--ema", out] + [path("ckpt%d.pth" % i) for i in range(3)])
        oracle.assert_ok(res)
        check_average_file(out, emas)

    def average_bare_and_checkpoint():
        out = path("avg_mixed_files.pth")
        res = oracle.run_tool(tool, ["average", out, path("bare0.pth"), path("ckpt1.pth"), path("ckpt2.pth")])
        oracle.assert_ok(res)
        check_average_file(out, states)

    def average_one():
        out = path("avg_one.pth")
        oracle.assert_ok(oracle.run_tool(tool, ["average", out, path("ckpt1.pth")]))
        net = torch.load(out)["net"]
        for k, v in net.items():
            assert torch.equal(v, states[1][k]), k

    def average_dtypes():
        inputs = [mixed_state(s) for s in range(4)]
        files = []
        for i, sd in enumerate(inputs):
            files.append(path("mixed%d.pth" % i))
            torch.save(sd, files[-1])
        out = path("avg_dtypes.pth")
        oracle.assert_ok(oracle.run_tool(tool, ["average", out] + files))
        check_average_file(out, inputs)

    def average_refuses_mismatch():
        other = random_state(5, batches=1, num_classes=5)
        torch.save({"net": other}, path("other.pth"))
        res = oracle.run_tool(tool, ["average", path("never.pth"), path("ckpt0.pth"), path("other.pth")])
        oracle.assert_clean_refusal(res, ["shape"])
        assert "other.pth" in res.stderr_text, res.stderr_text
        assert not os.path.exists(path("never.pth"))
        res = oracle.run_tool(tool, ["average", "--ema", path("never.pth"), path("bare0.pth")])
        oracle.assert_clean_refusal(res, ["no EMA network"])

    r.check("average: net of checkpoints = float64 mean; ints from the first; torch loads it", average_nets)
    r.check("average --ema: the ema_net of checkpoints", average_ema)
    r.check("average: a bare state dict mixed with checkpoints", average_bare_and_checkpoint)
    r.check("average: one input is a copy", average_one)
    r.check("average: float64/float16/bfloat16/int32/int64/bool", average_dtypes)
    r.check("average: refuses inputs that do not match", average_refuses_mismatch)

    # ---------------------------------------------------------------- match
    def torch_outcome(model, sd, strict):
        """(ok, missing, unexpected, size-mismatched keys) as torch's load_state_dict says."""
        try:
            res = model.load_state_dict(sd, strict=strict)
        except RuntimeError as e:
            msg = str(e)
            mism = re.findall(r"size mismatch for ([^:]+):", msg)
            return False, None, None, sorted(mism)
        return True, list(res.missing_keys), list(res.unexpected_keys), []

    base = make_net().state_dict()
    pairs = {
        "same": (make_net(), base),
        "model has an extra layer": (make_net(extra=True), base),
        "checkpoint has an extra layer": (make_net(), make_net(extra=True).state_dict()),
        "other head size": (make_net(num_classes=5), base),
        "other width": (make_net(width=4), base),
    }
    torch.save(base, path("base_model.pth"))

    def check_pair(name, model, sd, strict):
        model_file = path("model_%s.pth" % re.sub(r"\W+", "_", name))
        ckpt_file = path("ckpt_%s.pth" % re.sub(r"\W+", "_", name))
        torch.save(model.state_dict(), model_file)
        torch.save({"net": sd, "epoch": 3}, ckpt_file)
        ok, missing, unexpected, mism = torch_outcome(model, sd, strict)
        mode = "on" if strict else "off"
        res = oracle.run_tool(tool, ["match", model_file, ckpt_file, "--strict", mode, "--json"])
        assert res.rc in (0, 1) and res.signal is None, res.describe()
        rep = json.loads(res.stdout.decode())
        assert set(rep) == {"ok", "loaded", "missing", "unexpected", "mismatched"}, sorted(rep)
        assert rep["ok"] == ok, "sgckpt says ok=%s, torch says %s" % (rep["ok"], ok)
        assert (res.rc == 0) == ok, res.describe()
        if not ok:
            oracle.assert_clean_refusal(res)
        if ok and not strict:
            assert rep["missing"] == missing, "missing %r vs torch %r" % (rep["missing"], missing)
            assert rep["unexpected"] == unexpected, "unexpected %r vs torch %r" % (rep["unexpected"], unexpected)
        if mism:
            assert sorted(m["model"] for m in rep["mismatched"]) == mism, "mismatched %r vs torch %r" % (
                rep["mismatched"], mism)
            for m in rep["mismatched"]:
                assert m["model_shape"] == list(model.state_dict()[m["model"]].shape), m
                assert m["ckpt_shape"] == list(sd[m["ckpt"]].shape), m
        if ok:
            expected_loaded = {k: k for k in model.state_dict() if k in sd}
            assert rep["loaded"] == expected_loaded, rep["loaded"]
        # Whatever torch says under strict=False about missing/unexpected keys, we list the same
        # (even when the load fails for a shape mismatch: torch's missing/unexpected are then
        # taken from the checkpoint without the mismatched entries).
        msd = model.state_dict()
        mism_keys = {k for k in sd if k in msd and msd[k].shape != sd[k].shape}
        _, missing_f, unexpected_f, _ = torch_outcome(
            model, collections.OrderedDict((k, v) for k, v in sd.items() if k not in mism_keys), False)
        missing_f = [k for k in missing_f if k not in mism_keys]
        assert rep["missing"] == missing_f, "missing %r vs torch %r" % (rep["missing"], missing_f)
        assert rep["unexpected"] == unexpected_f, "unexpected %r vs torch %r" % (rep["unexpected"], unexpected_f)

    for name, (model, sd) in pairs.items():
        for strict in (True, False):
            r.check("match --strict %s agrees with torch: %s" % ("on" if strict else "off", name),
                    check_pair, name, model, sd, strict)

    def match_module_prefix():
        dp = collections.OrderedDict(("module." + k, v) for k, v in base.items())
        torch.save({"net": dp}, path("dp.pth"))
        res = oracle.run_tool(tool, ["match", path("base_model.pth"), path("dp.pth"), "--json"])
        oracle.assert_ok(res)
        rep = json.loads(res.stdout.decode())
        assert rep["loaded"] == {k: "module." + k for k in base}, rep["loaded"]

    def match_no_key_matching():
        renamed = collections.OrderedDict(("old_%d" % i, v) for i, v in enumerate(base.values()))
        torch.save(renamed, path("renamed.pth"))
        res = oracle.run_tool(tool, ["match", path("base_model.pth"), path("renamed.pth"), "--strict", "on"])
        oracle.assert_clean_refusal(res, ["does not load"])
        assert "would load by position" in res.stdout.decode(), res.stdout
        res = oracle.run_tool(tool, ["match", path("base_model.pth"), path("renamed.pth"),
                                     "--strict", "no_key_matching", "--json"])
        oracle.assert_ok(res)
        rep = json.loads(res.stdout.decode())
        assert rep["loaded"] == {k: "old_%d" % i for i, k in enumerate(base)}, rep["loaded"]

    def match_key_matching():
        model = make_net(num_classes=5)
        torch.save(model.state_dict(), path("model5.pth"))
        res = oracle.run_tool(tool, ["match", path("model5.pth"), path("base_model.pth"),
                                     "--strict", "key_matching", "--json"])
        oracle.assert_ok(res)
        rep = json.loads(res.stdout.decode())
        assert sorted(m["model"] for m in rep["mismatched"]) == ["4.bias", "4.weight"], rep["mismatched"]
        assert "4.weight" not in rep["loaded"] and "0.weight" in rep["loaded"]

    def match_ema_and_backbone():
        res = oracle.run_tool(tool, ["match", path("base_model.pth"), path("ckpt0.pth"), "--ema"])
        oracle.assert_ok(res)
        res = oracle.run_tool(tool, ["match", path("bare0.pth"), path("bare0.pth"), "--ema"])
        oracle.assert_clean_refusal(res, ["no EMA network stored in checkpoint"])
        wrapped = collections.OrderedDict(("backbone." + k, v) for k, v in base.items())
        wrapped["head.weight"] = torch.zeros(3)
        torch.save(wrapped, path("wrapped_model.pth"))
        res = oracle.run_tool(tool, ["match", path("wrapped_model.pth"), path("ckpt0.pth"),
                                     "--backbone", "backbone.", "--json"])
        oracle.assert_ok(res)
        rep = json.loads(res.stdout.decode())
        assert rep["loaded"] == {"backbone." + k: k for k in base}, rep["loaded"]

    r.check("match: module. prefix stripped when every key has it", match_module_prefix)
    r.check("match: no_key_matching loads renamed keys by position; on refuses with a hint", match_no_key_matching)
    r.check("match: key_matching skips the head of another size", match_key_matching)
    r.check("match: --ema and --backbone", match_ema_and_backbone)

    r.finish()


if __name__ == "__main__":
    main()
