#!/usr/bin/env python3
"""The torch side of tests/python/test_differential.py: a long-lived process that loads files
with `torch.load(path, weights_only=True, map_location='cpu')` on request.

Protocol (one request per line on stdin, one JSON line per request on the result stream):
    request  "<mode>\t<path>\n", mode "status" (accept or refuse only) or "mirror" (also the
             JSON mirror of the object, oracle.expected_json)
    answer   {"torch": "<version>"} once at start, then per request
             {"status": "accepted" | "refused", "error": "...", "mirror": <encoded>,
              "unsupported": "...", "unhashed": N}
The result stream is a private duplicate of fd 1; fd 1 itself is pointed at /dev/null so that
nothing torch prints can corrupt it. The parent enforces the per-file timeout (it kills this
process and starts another) and the address-space limit (RLIMIT_AS, set before exec).

Mirror encoding: Obj -> {"o": [[key, value], ...]}, tensor -> {"t": [dtype, shape, sha256 or
null]}, float -> {"f": value}; lists, str, int, bool and null as themselves. A tensor of more
than HASH_LIMIT bytes (e.g. a stride-0 view of 2**62 elements) is not hashed (sha256 null: the
parent compares its dtype and shape only); hashes are cached per view within a file, so 2000
views of one 16 MiB storage hash once.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.setrecursionlimit(100000)

import json  # noqa: E402
import warnings  # noqa: E402

HASH_LIMIT = 256 << 20

_result = os.fdopen(os.dup(1), "w", encoding="utf-8")
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
sys.stdout = open(os.devnull, "w")

import oracle  # noqa: E402  (imports torch)

torch = oracle.torch
warnings.simplefilter("ignore")

_cache = {}
_unhashed = [0]
_real_sha = oracle.tensor_sha256


def _storage_ptr(t):
    try:
        return t.untyped_storage().data_ptr()
    except AttributeError:  # torch 1.13
        return t.storage().data_ptr()


def _sha(t):
    nbytes = t.numel() * t.element_size()
    if nbytes > HASH_LIMIT:
        _unhashed[0] += 1
        return None
    key = (str(t.dtype), tuple(t.shape), tuple(t.stride()), t.storage_offset(), _storage_ptr(t), t.is_conj(), t.is_neg())
    if key not in _cache:
        _cache[key] = _real_sha(t)
    return _cache[key]


oracle.tensor_sha256 = _sha  # expected_json looks it up at call time


def encode(x):
    if isinstance(x, oracle.Obj):
        return {"o": [[k, encode(v)] for k, v in x.pairs]}
    if isinstance(x, oracle.TensorJ):
        return {"t": [x.dtype, x.shape, x.sha256]}
    if isinstance(x, oracle.JFloat):
        return {"f": x.value}
    if isinstance(x, list):
        return [encode(v) for v in x]
    return x


def describe(e):
    msg = str(e).strip().splitlines()
    # torch's weights_only message puts the reason after a long preamble: keep the tail.
    text = " ".join(msg)
    if "WeightsUnpickler error:" in text:
        text = text[text.index("WeightsUnpickler error:"):]
    return ("%s: %s" % (type(e).__name__, text))[:400]


def handle(mode, path):
    _cache.clear()
    _unhashed[0] = 0
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except BaseException as e:  # noqa: B902 - any failure is torch refusing the file
        if isinstance(e, KeyboardInterrupt):
            raise
        return {"status": "refused", "error": describe(e)}
    out = {"status": "accepted"}
    if mode == "mirror":
        try:
            out["mirror"] = encode(oracle.expected_json(obj))
            out["unhashed"] = _unhashed[0]
        except oracle.Unsupported as u:
            out["unsupported"] = str(u)[:400]
        except BaseException as e:  # noqa: B902
            if isinstance(e, KeyboardInterrupt):
                raise
            out["mirror_error"] = describe(e)
    del obj
    return out


def main():
    _result.write(json.dumps({"torch": torch.__version__}) + "\n")
    _result.flush()
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        mode, path = line.split("\t", 1)
        ans = handle(mode, path)
        _result.write(json.dumps(ans, ensure_ascii=True) + "\n")
        _result.flush()


if __name__ == "__main__":
    main()
