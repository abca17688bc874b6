"""`sgckpt inspect`: the format line, --depth, --key and the state dicts' element counts, on
files the running torch writes.

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_inspect.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/inspect, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

TOOL = oracle.require_tool()
R = oracle.Runner("sgckpt inspect")
D = tempfile.mkdtemp(prefix="sgckpt-inspect-")
TORCH2 = oracle.TORCH_VERSION >= (2, 0)

CKPT = {"net": {"w": torch.zeros(2, 3), "b": torch.zeros(3)}, "ema_net": {"w": torch.ones(2, 3), "b": torch.ones(3)},
        "epoch": 3, "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}
ZIP = os.path.join(D, "zip.pth")
LEGACY = os.path.join(D, "legacy.pth")
torch.save(CKPT, ZIP)
torch.save(CKPT, LEGACY, _use_new_zipfile_serialization=False)


def inspect(*args):
    res = oracle.run_tool(TOOL, ["inspect"] + list(args))
    oracle.assert_ok(res)
    return res.stdout.decode().splitlines()


def check_format_line():
    first = inspect(ZIP)[0]
    # torch 2.x adds .format_version / .storage_alignment / .data/serialization_id records.
    layout = "torch 2.x layout" if TORCH2 else "torch 1.x layout"
    assert first.startswith("format: torch zip (.pth), version 3, ") and first.endswith(layout), first
    assert inspect(LEGACY)[0] == "format: torch legacy stream (.pth written before torch 1.6)", inspect(LEGACY)[0]


def check_state_dicts_line():
    out = inspect(ZIP)
    assert out[-1] == "state dicts: net 2 tensors, 9 elements; ema_net 2 tensors, 9 elements", out[-1]


def check_depth():
    out = inspect(ZIP, "--depth", "1")
    assert "  net: dict, 2 items" in out and not any("net/w" in l for l in out), out
    assert out[-2] == "total: 4 tensors, 4 storages, 72 tensor bytes, 72 storage bytes", out


def check_key():
    out = inspect(ZIP, "--key", "*/w")
    assert [l.strip() for l in out[1:-2]] == ["<root>: dict, 2 items", "net: dict, 1 item",
                                             "net/w: tensor float32 [2, 3], 24 bytes", "ema_net: dict, 1 item",
                                             "ema_net/w: tensor float32 [2, 3], 24 bytes"], out
    res = oracle.run_tool(TOOL, ["inspect", "--json", "--key", "epoch", ZIP])
    oracle.assert_ok(res)
    assert res.stdout.decode().strip() == '{"epoch": 3}', res.stdout
    oracle.assert_clean_refusal(oracle.run_tool(TOOL, ["inspect", "--key", "nope", ZIP]), ["'nope' matches no key path"])


R.check("the first line names the format, its version and layout", check_format_line)
R.check("the last line counts each state dict's tensors and elements", check_state_dicts_line)
R.check("--depth 1 shows one level; the totals still count every tensor", check_depth)
R.check("--key shows only the matching entries (text and --json); a pattern matching nothing is an error", check_key)
R.finish()
