#!/usr/bin/env python3
"""The hostile corpus through the command-line tool.

For every file of tests/hostile/MANIFEST.tsv (written by tests/hostile/make_corpus.py),
`sgckpt inspect FILE` must: exit with status exactly 1 (not 0, not a signal) within 10 s;
print exactly one non-empty line on stderr, without crash/sanitizer/traceback markers, that
contains the file's expected phrase (case-insensitive); and keep the child's peak RSS
(ru_maxrss from wait4) under 1 GiB. The corpus's code-execution payloads run
`touch /tmp/sgckpt_hostile_PWNED`: that file must never appear.

Sanitizer builds (SGCKPT_SANITIZED=1, set by scripts/test.sh for build-asan) get 6x the time
and 3x the memory, and no RLIMIT_AS (ASan reserves terabytes of address space).

Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_hostile_cli.py
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oracle  # noqa: E402

HOSTILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostile")
MARKER = "/tmp/sgckpt_hostile_PWNED"
SANITIZED = os.environ.get("SGCKPT_SANITIZED", "") not in ("", "0")
TIMEOUT = 10.0 * (6 if SANITIZED else 1)
MAX_RSS_MIB = 1024 * (3 if SANITIZED else 1)


def manifest():
    out = []
    with open(os.path.join(HOSTILE, "MANIFEST.tsv"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, phrase = line.split("\t", 1)
            out.append((name, phrase))
    return out


def check(tool, name, phrase, rlimit):
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    path = os.path.join(HOSTILE, name)
    res = oracle.run_tool(tool, ["inspect", path], timeout=TIMEOUT, rlimit_as=rlimit)
    assert not os.path.exists(MARKER), "a shell command embedded in the file was EXECUTED: " + res.describe()
    oracle.assert_clean_refusal(res, [phrase], MAX_RSS_MIB)
    # A fault of the input, never of the caller or the system (docs/errors.md).
    assert re.match(r"sgckpt: error \[(truncated|corrupt|refused|limit)\]: ", res.stderr_text), res.describe()


def main():
    r = oracle.Runner("test_hostile_cli: sgckpt inspect refuses every file of tests/hostile cleanly")
    tool = oracle.require_tool()
    rlimit = None if SANITIZED else oracle.default_rlimit_as()
    cases = manifest()
    r.check("the corpus has at least 60 files", lambda: None if len(cases) >= 60 else (_ for _ in ()).throw(
        AssertionError("only %d files in MANIFEST.tsv" % len(cases))))
    for name, phrase in cases:
        r.check("inspect refuses %s" % name, check, tool, name, phrase, rlimit)
    r.finish()


if __name__ == "__main__":
    main()
