#!/usr/bin/env python3
"""The round-2 hostile family (tests/hostile/round2, written by tests/hostile/make_round2.py)
through every command of the tool that reads a checkpoint.

For every file of round2/MANIFEST.tsv it runs

    sgckpt inspect F          sgckpt inspect --json F
    sgckpt convert F OUT      sgckpt average OUT F F

and requires, from each run: no hang (2 s wall), peak RSS (ru_maxrss from wait4) under
512 MiB, at most 16 MiB on stdout (read through a pipe and counted; the tool is killed past
it), and
  * `refuse F kind phrase`: exit status exactly 1 with exactly one stderr line, without crash
    or traceback markers, that says the error's kind (`sgckpt: error [kind]: `, docs/errors.md)
    and contains the phrase (case-insensitive);
  * `accept F`: exit 0, or a clean refusal (exit 1, one stderr line): the loader must accept
    the file (tests/security and tests/python/test_differential.py check that, and compare
    with torch), but a command may refuse an output it cannot bound. A `convert` that exits 0
    must leave an OUT no larger than the tool's expansion budget (16 MiB + 64 bytes per input
    byte: shared storages and repeated long strings are written once) that torch reads as
    the same values it reads from F (where torch reads F at all).

Sanitizer builds (SGCKPT_SANITIZED=1) get 6x the time and 3x the memory, and no RLIMIT_AS.
(The RSS floor is this interpreter's own RSS at fork time, ~250 MiB with torch imported:
ru_maxrss survives exec. It is a max, not a sum, so the 512 MiB bound still holds.)

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_hostile_round2.py

Runs with torch 1.13 only: it tests the tool, and test_differential.py already compares
these files with torch 2.x (a second run passed under torch 2.6 but costs CI 90 s).
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tempfile  # noqa: E402

import oracle  # noqa: E402

ROUND2 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostile", "round2")
SANITIZED = os.environ.get("SGCKPT_SANITIZED", "") not in ("", "0")
TIMEOUT = 2.0 * (6 if SANITIZED else 1)
MAX_RSS_MIB = 512 * (3 if SANITIZED else 1)
MAX_STDOUT = 16 << 20


def max_converted(path):
    return (16 << 20) + 64 * os.path.getsize(path)


# The kinds of sgckpt::Error (docs/errors.md), as the tool prints them.
KINDS = ("io", "truncated", "corrupt", "refused", "limit", "schema", "mismatch", "usage")


def manifest():
    out = []
    with open(os.path.join(ROUND2, "MANIFEST.tsv"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            assert fields[1] in ("refuse", "accept"), "bad MANIFEST line %r" % line
            if fields[1] == "refuse":
                assert len(fields) == 4 and fields[2] in KINDS and fields[3], "bad MANIFEST line %r" % line
                out.append((fields[0], (fields[2], fields[3])))
            else:
                assert len(fields) == 2, "bad MANIFEST line %r" % line
                out.append((fields[0], None))
    return out


def commands(path, work):
    out = os.path.join(work, "out.pth")
    return [
        ("inspect", ["inspect", path], None),
        ("inspect --json", ["inspect", "--json", path], None),
        ("convert", ["convert", path, out], out),
        ("average", ["average", out, path, path], out),
    ]


def check(tool, name, expected, argv, out, rlimit):
    path = argv[-1]
    if out and os.path.exists(out):
        os.unlink(out)
    res = oracle.run_tool_bounded(tool, argv, timeout=TIMEOUT, rlimit_as=rlimit, max_stdout=MAX_STDOUT)
    assert not res.stdout_overflow, "wrote more than %d MiB to stdout (killed): %s" % (MAX_STDOUT >> 20, res.describe())
    assert not res.timed_out, "took more than %.0f s (killed): %s" % (TIMEOUT, res.describe())
    assert res.maxrss_kib < MAX_RSS_MIB * 1024, "peak RSS %.1f MiB >= %d MiB: %s" % (res.maxrss_kib / 1024.0, MAX_RSS_MIB,
                                                                                   res.describe())
    if expected is not None:
        kind, phrase = expected
        oracle.assert_clean_refusal(res, [phrase])
        assert "sgckpt: error [%s]: " % kind in res.stderr_text, "expected a %s error: %s" % (kind, res.describe())
        if out:
            assert not os.path.exists(out), "refused, but left %s behind" % out
        return
    if res.rc == 1:
        oracle.assert_clean_refusal(res)
        return
    oracle.assert_ok(res)
    if out and argv[0] == "convert":
        assert os.path.exists(out), "convert exited 0 but wrote no file"
        size = os.path.getsize(out)
        assert size <= max_converted(path), "convert wrote %d bytes from %d" % (size, os.path.getsize(path))
        try:
            original = oracle.torch_load_full(path)
        except Exception:  # torch refuses it: test_differential.py judges that case
            return
        oracle.assert_deep_equal(original, oracle.torch_load_full(out))


def main():
    r = oracle.Runner("test_hostile_round2: round-2 hostile files through inspect, inspect --json, convert, average")
    tool = oracle.require_tool()
    rlimit = None if SANITIZED else oracle.default_rlimit_as()
    cases = manifest()
    listed = {n for n, _ in cases}
    present = {n for n in os.listdir(ROUND2) if n.endswith(".pt")}

    def same_files():
        assert len(cases) >= 25, "only %d files in round2/MANIFEST.tsv" % len(cases)
        assert listed == present, "MANIFEST and folder differ: unlisted %s, missing %s" % (
            sorted(present - listed), sorted(listed - present))

    r.check("round2/MANIFEST.tsv lists every round2 file", same_files)
    with tempfile.TemporaryDirectory(prefix="sgckpt_r2_") as work:
        for name, phrase in cases:
            path = os.path.join(ROUND2, name)
            what = "refuses" if phrase is not None else "accepts"
            for label, argv, out in commands(path, work):
                r.check("%s %s %s" % (label, what, name), check, tool, name, phrase, argv, out, rlimit)
    r.finish()


if __name__ == "__main__":
    main()
