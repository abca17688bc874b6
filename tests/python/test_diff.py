"""`sgckpt diff A B`: what differs between two checkpoints torch wrote.

Checks: keys only in one file, a dtype and a shape change, a changed scalar (epoch) and a
changed float in a list (lr), tensor differences ordered by the largest absolute difference
with the count of differing elements, equal NaNs not counted, `--select net`, `--top`, and
"no differences" for a file against itself.

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_diff.py
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

TOOL = oracle.require_tool()
R = oracle.Runner("sgckpt diff")
D = tempfile.mkdtemp(prefix="sgckpt-diff-")


def files():
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = {"net": {"w": w.clone(), "b": torch.zeros(3), "nan": torch.tensor([float("nan"), 1.0]),
                 "gone": torch.ones(1), "bn.num_batches_tracked": torch.tensor(5)},
         "epoch": 3, "optimizer_state_dict": {"param_groups": [{"lr": 0.1}]}}
    b = {"net": {"w": w.clone(), "b": torch.zeros(4), "nan": torch.tensor([float("nan"), 1.0]),
                 "new": torch.ones(1), "bn.num_batches_tracked": torch.tensor(5.0)},
         "epoch": 5, "optimizer_state_dict": {"param_groups": [{"lr": 0.01}]}}
    b["net"]["w"][1, 2] += 0.5
    b["net"]["w"][2, 3] -= 2.0
    pa, pb = os.path.join(D, "a.pth"), os.path.join(D, "b.pth")
    torch.save(a, pa)
    torch.save(b, pb)
    return pa, pb


PA, PB = files()


def diff(*args):
    res = oracle.run_tool(TOOL, ["diff"] + list(args))
    oracle.assert_ok(res)
    return res.stdout.decode().splitlines()


def check_everything_named():
    out = diff(PA, PB)
    assert "only in A: net/gone" in out and "only in B: net/new" in out, out
    assert "changed: net/b: float32 [3] -> float32 [4]" in out, out
    assert "changed: net/bn.num_batches_tracked: int64 [] -> float32 []" in out, out
    assert "value: epoch: 3 -> 5" in out, out
    assert "value: optimizer_state_dict/param_groups/0/lr: 0.1 -> 0.01" in out, out
    tensors = [l for l in out if l.startswith("tensor: ")]
    assert tensors == ["tensor: net/w: max |a-b| 2, relative 0.181818, 2 of 12 elements differ"], tensors
    assert out[-1] == "1 only in A, 1 only in B, 2 changed kind/dtype/shape, 2 changed values, 1 tensors with different elements", out[-1]


def check_select_and_same():
    out = diff(PA, PB, "--select", "net", "--top", "0")
    assert not any(l.startswith("value: epoch") for l in out), out
    assert "(1 more tensors differ)" in out, out
    assert diff(PA, PA)[-1] == "no differences (7 leaves)", diff(PA, PA)


R.check("diff names keys only in one file, dtype/shape changes, changed values and tensor differences", check_everything_named)
R.check("diff --select net --top 0, and a file against itself", check_select_and_same)
R.finish()
