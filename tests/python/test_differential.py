#!/usr/bin/env python3
"""Differential test: sgckpt and torch on every hostile, fuzzing and seed file.

Files: tests/hostile/*.pt, tests/hostile/round2/*.pt, tests/fuzz/regressions/*,
tests/fuzz/seeds/** (files over 8 MB skipped). For each file:

  * sgckpt: `sgckpt inspect --json FILE` (10 s, RLIMIT_AS; stdout read through a pipe, at
    most 64 MiB);
  * torch: `torch.load(FILE, weights_only=True, map_location='cpu')` in a worker process
    (differential_worker.py: one process for many files, 10 s per file, RLIMIT_AS 8 GiB or
    $SGCKPT_TORCH_RLIMIT_AS bytes, 0 for none). A file that makes torch hang or crash counts
    as refused by torch, and a fresh worker takes the next file. The worker mirrors the
    object as JSON (oracle.expected_json) only when sgckpt accepted the file.

When both accept, the tool's JSON must equal torch's mirror (oracle.assert_json_equal:
structure, key order, scalars, and per tensor dtype, shape and the SHA-256 of its
row-major bytes; a tensor of more than 256 MiB, such as a stride-0 view of 2**62 elements, is
compared by dtype and shape only). A difference fails the test naming the file; so does a tool
crash, hang or exit status other than 0/1, and an accepted object torch reads as something
sgckpt cannot represent. The rest is counted and listed: both accept and agree / torch only /
sgckpt only / both refuse / not compared (tool output over 64 MiB).

torch: $SGCKPT_PYTHON, else the interpreter running this script (/usr/bin/python3, torch 1.13);
then again with torch 2.x (oracle.torch2_python: $SGCKPT_TORCH2_PYTHON, or Debian trixie's
torch 2.6 from scripts/install-torch2-oracle.sh; skipped with a line saying so when neither is
there, a failure when SGCKPT_REQUIRE_TORCH2=1 as in CI).

Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_differential.py
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.setrecursionlimit(100000)

import json  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import oracle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "differential_worker.py")
SANITIZED = os.environ.get("SGCKPT_SANITIZED", "") not in ("", "0")
TOOL_TIMEOUT = 10.0 * (6 if SANITIZED else 1)
TORCH_TIMEOUT = 10.0
TORCH_START_TIMEOUT = 180.0
TORCH_RLIMIT_AS = int(os.environ.get("SGCKPT_TORCH_RLIMIT_AS") or (8 << 30))  # 0: none
MAX_FILE = 8 << 20
MAX_STDOUT = 64 << 20


def corpus():
    """(label, path) of every file, sorted by label."""
    out = []

    def add_dir(d, recursive=False, suffix=None):
        if not os.path.isdir(d):
            return
        for root, dirs, files in os.walk(d):
            dirs.sort()
            for f in sorted(files):
                if suffix and not f.endswith(suffix):
                    continue
                p = os.path.join(root, f)
                if os.path.isfile(p):
                    out.append((os.path.relpath(p, TESTS), p))
            if not recursive:
                break

    add_dir(os.path.join(TESTS, "hostile"), suffix=".pt")
    add_dir(os.path.join(TESTS, "hostile", "round2"), suffix=".pt")
    add_dir(os.path.join(TESTS, "fuzz", "regressions"), recursive=True)
    add_dir(os.path.join(TESTS, "fuzz", "seeds"), recursive=True)
    return out


# ------------------------------------------------------------------------------ torch worker


class TorchWorker:
    """differential_worker.py in `python`, restarted after a timeout or a crash."""

    def __init__(self, python):
        self.python = python
        self.p = None
        self.buf = b""
        self.version = None
        self.starts = 0

    def _start(self):
        def pre():
            if TORCH_RLIMIT_AS:
                resource.setrlimit(resource.RLIMIT_AS, (TORCH_RLIMIT_AS, TORCH_RLIMIT_AS))

        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.p = subprocess.Popen([self.python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, preexec_fn=pre, env=env)
        self.buf = b""
        self.starts += 1
        hello = self._readline(TORCH_START_TIMEOUT)
        if hello is None:
            self.stop()
            raise RuntimeError("the torch worker (%s %s) did not start" % (self.python, WORKER))
        self.version = json.loads(hello)["torch"]

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def stop(self):
        if self.p is not None:
            try:
                self.p.kill()
            except OSError:
                pass
            self.p.wait()
            for f in (self.p.stdin, self.p.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.p = None

    def load(self, path, mirror):
        if self.p is None:
            self._start()
        t0 = time.monotonic()
        try:
            self.p.stdin.write(("%s\t%s\n" % ("mirror" if mirror else "status", path)).encode("utf-8"))
            self.p.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return {"status": "refused", "error": "the torch worker died"}
        line = self._readline(TORCH_TIMEOUT)
        if line is None:
            dead = self.p.poll() is not None
            self.stop()
            if dead:
                return {"status": "refused", "error": "torch crashed or ran out of memory (worker exit)"}
            return {"status": "refused", "error": "torch took more than %.0f s (killed)" % TORCH_TIMEOUT}
        ans = json.loads(line)
        ans["seconds"] = time.monotonic() - t0
        return ans


def decode(x):
    if isinstance(x, dict):
        if "o" in x:
            return oracle.Obj([(k, decode(v)) for k, v in x["o"]])
        if "t" in x:
            dt, shape, sha = x["t"]
            return oracle.TensorJ(dt, shape, sha)
        if "f" in x:
            return oracle.JFloat(x["f"])
        raise ValueError("bad mirror node %r" % (x,))
    if isinstance(x, list):
        return [decode(v) for v in x]
    return x


def fill_unhashed(exp, act):
    """Tensors torch did not hash (too large) take the tool's hash: compared by dtype and shape."""
    stack = [(exp, act)]
    while stack:
        e, a = stack.pop()
        if isinstance(e, oracle.TensorJ):
            if e.sha256 is None:
                sha = "<not hashed>"
                try:
                    inner = dict(dict(a.pairs)["$tensor"].pairs)
                    if isinstance(inner["sha256"], str):
                        sha = inner["sha256"].lower()
                except Exception:
                    pass
                e.sha256 = sha
        elif isinstance(e, oracle.Obj) and isinstance(a, oracle.Obj):
            stack.extend((ev, av) for (k, ev), (k2, av) in zip(e.pairs, a.pairs) if k == k2)
        elif isinstance(e, list) and isinstance(a, list):
            stack.extend(zip(e, a))


# ------------------------------------------------------------------------------ the test

CATEGORIES = [
    ("equal", "both accept, equal"),
    ("torch_only", "torch only (sgckpt refuses)"),
    ("sgckpt_only", "sgckpt only (torch refuses)"),
    ("both_refuse", "both refuse"),
    ("not_compared", "not compared (sgckpt output over 64 MiB)"),
    ("differ", "DIFFER / tool failure"),
]


def run_tool_side(tool, files, rlimit):
    out = {}
    for label, path in files:
        out[label] = oracle.run_tool_bounded(tool, ["inspect", "--json", path], timeout=TOOL_TIMEOUT, rlimit_as=rlimit,
                                             max_stdout=MAX_STDOUT)
    return out


def compare(label, res, ans):
    """Returns (category, note); raises AssertionError for a difference or a tool failure."""
    if res.stdout_overflow:
        return "not_compared", "sgckpt wrote more than %d MiB; torch %s" % (MAX_STDOUT >> 20, ans["status"])
    assert not res.timed_out, "sgckpt hung: " + res.describe()
    assert res.signal is None, "sgckpt crashed: " + res.describe()
    assert res.rc in (0, 1), "sgckpt exit status %s: %s" % (res.rc, res.describe())
    torch_ok = ans["status"] == "accepted"
    if res.rc == 1:
        if torch_ok:
            why = ans.get("unsupported") or ""
            return "torch_only", ("%s%s" % (res.stderr_text.strip()[:200], ("; torch's value: " + why) if why else ""))
        return "both_refuse", "torch: %s" % ans.get("error", "")[:200]
    # sgckpt accepted.
    if not torch_ok:
        return "sgckpt_only", "torch: %s" % ans.get("error", "")[:200]
    assert "unsupported" not in ans, "sgckpt accepted, but torch reads a value sgckpt cannot represent: %s" % ans["unsupported"]
    assert "mirror_error" not in ans, "internal: torch's mirror failed: %s" % ans["mirror_error"]
    act = oracle.parse_tool_json(res.stdout)
    exp = decode(ans["mirror"])
    fill_unhashed(exp, act)
    try:
        oracle.assert_json_equal(exp, act)
    except AssertionError as e:
        raise AssertionError("sgckpt and torch %s both accept %s with DIFFERENT values: %s" % (ans.get("torch", ""), label, e))
    note = ""
    if ans.get("unhashed"):
        note = "%d tensor(s) over 256 MiB compared by dtype and shape only" % ans["unhashed"]
    return "equal", note


def torch_pass(r, python, files, tool_results, title):
    worker = TorchWorker(python)
    counts = {k: [] for k, _ in CATEGORIES}
    t0 = time.monotonic()
    try:
        worker._start()
    except Exception as e:
        msg = str(e)

        def fail():
            raise AssertionError(msg)

        r.check("%s: start the torch worker" % title, fail)
        return
    print("   %s: torch %s (%s)" % (title, worker.version, python), flush=True)
    for label, path in files:
        res = tool_results[label]
        want_mirror = (not res.stdout_overflow and not res.timed_out and res.signal is None and res.rc == 0)
        ans = worker.load(path, want_mirror)
        ans["torch"] = worker.version
        state = {}

        def one(label=label, res=res, ans=ans, state=state):
            try:
                state["cat"], state["note"] = compare(label, res, ans)
            except AssertionError as e:
                state["cat"], state["note"] = "differ", " ".join(str(e).split())[:300]
                raise

        r.check("%s %s" % (title, label), one)
        counts[state["cat"]].append((label, state["note"]))
    worker.stop()
    print("== %s: %d files in %.1fs (torch worker started %d times)" % (title, len(files), time.monotonic() - t0, worker.starts))
    for key, text in CATEGORIES:
        items = counts[key]
        print("   %-42s %d" % (text, len(items)))
        if key in ("equal", "both_refuse"):
            for lab, note in items:
                if note and key == "equal":
                    print("      %s: %s" % (lab, note))
            continue
        for lab, note in items:
            print("      %s: %s" % (lab, note))
    sys.stdout.flush()


def main():
    r = oracle.Runner("test_differential: sgckpt inspect --json vs torch.load(weights_only=True) on every hostile/fuzz/seed file")
    tool = oracle.require_tool()
    rlimit = None if SANITIZED else oracle.default_rlimit_as()
    files = []
    skipped = []
    for label, path in corpus():
        if os.path.getsize(path) > MAX_FILE:
            skipped.append(label)
        else:
            files.append((label, path))
    print("   %d files (%d over 8 MB skipped%s)" % (len(files), len(skipped), (": " + ", ".join(skipped)) if skipped else ""),
          flush=True)
    r.check("the corpus has at least 300 files", lambda: None if len(files) >= 300 else (_ for _ in ()).throw(
        AssertionError("only %d files" % len(files))))
    t0 = time.monotonic()
    tool_results = run_tool_side(tool, files, rlimit)
    print("   sgckpt inspect --json on %d files: %.1fs" % (len(files), time.monotonic() - t0), flush=True)

    torch_pass(r, os.environ.get("SGCKPT_PYTHON") or sys.executable, files, tool_results, "torch")
    torch2 = oracle.torch2_python()
    if torch2:
        torch_pass(r, torch2, files, tool_results, "torch2")
    else:
        print("   SKIP torch 2.x: not installed (scripts/install-torch2-oracle.sh, or SGCKPT_TORCH2_PYTHON); "
              "CI requires it", flush=True)
    r.finish()


if __name__ == "__main__":
    main()
