#!/usr/bin/env python3
"""torch writes -> sgckpt reads.

Builds a corpus with real torch.save at test time (corpus.py) and takes every file of
$SGCKPT_SHARED_DIR/fixtures/torch-1.13/; for each file runs `sgckpt inspect --json FILE` and
compares the output exactly with the JSON mirror of `torch.load(FILE, weights_only=False)`
(oracle.expected_json). Files holding values without a JSON mirror (bytes, a set, ...)
must instead be refused cleanly (exit 1, one stderr line); a bare storage is mirrored as
the 1-D tensor over all of it. Also checks that plain
`sgckpt inspect FILE` exits 0 and mentions the key paths.

Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_torch_writes.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/torch_writes, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tempfile  # noqa: E402

import corpus  # noqa: E402
import oracle  # noqa: E402


def key_paths(obj, prefix=""):
    """Key paths of the tree's tensors, joined with '/' (dict keys and list indices)."""
    out = []
    t = type(obj)
    if t in oracle.DICT_TYPES:
        for k, v in obj.items():
            out += key_paths(v, prefix + "/" + str(k) if prefix else str(k))
    elif t in (list, tuple):
        for i, v in enumerate(obj):
            out += key_paths(v, prefix + "/" + str(i) if prefix else str(i))
    elif t in oracle.TENSOR_TYPES:
        out.append(prefix)
    return out


def check_plain_inspect(tool, path):
    obj = oracle.torch_load_full(path)
    res = oracle.run_tool(tool, ["inspect", path], timeout=60)
    oracle.assert_ok(res)
    text = res.stdout.decode("utf-8", "replace")
    assert text.strip(), "plain inspect printed nothing"
    # Every tensor's last key component must be mentioned (the tree may indent rather than
    # print full paths, so only the leaf names are required).
    for kp in key_paths(obj):
        if not kp:
            continue
        leaf = kp.split("/")[-1]
        assert leaf in text, "plain inspect output does not mention key %r (path %s)" % (leaf, kp)


def main():
    r = oracle.Runner("test_torch_writes: torch.save -> sgckpt inspect --json")
    tool = oracle.require_tool()
    with tempfile.TemporaryDirectory(prefix="sgckpt_tw_") as d:
        files = []
        r.check("build corpus with torch.save", lambda: files.extend(corpus.build_corpus(d)))
        files += [("fixture:" + p.name, str(p)) for p in oracle.fixture_files()]
        for name, path in files:
            r.check("inspect --json " + name, oracle.check_inspect_json, tool, path)
        # Plain (human) inspect on a few representative files.
        for name, path in files:
            if name in ("dtypes_all", "sequential_state", "sg_checkpoint", "shared", "legacy_dict", "fixture:checkpoint.pt"):
                r.check("inspect (text) " + name, check_plain_inspect, tool, path)
    r.finish()


if __name__ == "__main__":
    main()
