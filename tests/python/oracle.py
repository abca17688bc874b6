"""Shared helpers for the torch-oracle tests of sgckpt.

Everything here treats real torch (Debian's python3-torch 1.13, run by /usr/bin/python3) as
the source of truth. Tests get their inputs from the environment:

  SGCKPT_TOOL        the built `sgckpt` executable (fallback: searched under <repo>/build*)
  SGCKPT_SHARED_DIR  the shared dir with spec/ and fixtures/ (default: <repo>/../shared)
  SGCKPT_PYTHON      the interpreter the build runs these scripts with (informational here)
  SGCKPT_TEST_RLIMIT_AS  address-space limit (bytes) for the tool in the refusal tests;
                     default 2 GiB, 0 disables it (e.g. for sanitizer builds).

Contents:
  * Runner              a tiny check runner: one line per check, exit status 1 on any failure
  * find_tool/require_tool, require_example, shared_dir, fixtures_dir
  * host_argv           the command that runs a built binary (through the host's loader when
                        this interpreter is torch2-python's chroot)
  * run_tool            runs the tool with a timeout, an optional RLIMIT_AS, and its own rusage
  * expected_json       the JSON mirror of a torch-loaded object, exactly per the contract
                        (a bare storage mirrors as the 1-D tensor over all of it; bytes and
                        anything outside the value model raise Unsupported = expect refusal)
  * convertible         whether `convert` must carry the object over (JSON types + bytes)
  * parse_tool_json     parses the tool's JSON keeping ints exact, float-vs-int, order, dups
  * assert_json_equal   compares the two, with a key path in every message
  * assert_deep_equal   strict torch-object equality (types, dtype, shape, strides, offsets,
                        storage sharing, Parameter-ness, requires_grad, _metadata, bytes)
  * tensor_sha256 / tensor_bytes
"""
import sys

sys.dont_write_bytecode = True

import collections
import glob
import hashlib
import json
import math
import os
import pathlib
import re
import resource
import struct
import subprocess
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent


def fatal(msg):
    """A setup problem (no torch, no tool): one clear line and exit status 2."""
    print("FATAL: " + msg, flush=True)
    sys.exit(2)


def import_torch():
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
    except Exception as e:  # pragma: no cover - environment problem
        fatal(
            "cannot import torch/numpy with %s (%s). Run these tests with Debian's "
            "/usr/bin/python3 (python3-torch), e.g. SGCKPT_PYTHON=/usr/bin/python3." % (sys.executable, e)
        )
    return torch


torch = import_torch()

TORCH_VERSION = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])


# ---------------------------------------------------------------------------------------------
# Runner


class Runner:
    """Runs named checks; prints `ok   <name>` or `FAIL <name>: <message>` per check."""

    def __init__(self, title):
        self.title = title
        self.failed = []
        self.passed = 0
        self.t0 = time.monotonic()
        print("== %s (torch %s, python %s)" % (title, torch.__version__, sys.executable), flush=True)

    def check(self, name, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except AssertionError as e:
            self._fail(name, str(e) or "assertion failed")
            return False
        except Exception as e:  # an unexpected error in the test itself or in torch
            tb = traceback.extract_tb(e.__traceback__)
            where = ("%s:%d" % (os.path.basename(tb[-1].filename), tb[-1].lineno)) if tb else "?"
            self._fail(name, "%s: %s (at %s)" % (type(e).__name__, e, where))
            return False
        self.passed += 1
        print("ok   " + name, flush=True)
        return True

    def _fail(self, name, msg):
        msg = " | ".join(line for line in str(msg).splitlines() if line.strip())
        if len(msg) > 2000:
            msg = msg[:2000] + " ...[truncated]"
        self.failed.append(name)
        print("FAIL %s: %s" % (name, msg), flush=True)

    def finish(self):
        dt = time.monotonic() - self.t0
        if self.failed:
            print(
                "== %s: %d passed, %d FAILED (%.1fs): %s"
                % (self.title, self.passed, len(self.failed), dt, ", ".join(self.failed[:30])),
                flush=True,
            )
            sys.exit(1)
        print("== %s: all %d checks passed (%.1fs)" % (self.title, self.passed, dt), flush=True)
        sys.exit(0)


# ---------------------------------------------------------------------------------------------
# Locations


def shared_dir():
    d = os.environ.get("SGCKPT_SHARED_DIR")
    return pathlib.Path(d) if d else (REPO.parent / "shared")


def fixtures_dir():
    return shared_dir() / "fixtures" / "torch-1.13"


def fixture_files():
    """Every checkpoint file in the torch-1.13 fixtures dir (README.md and dumps/ excluded)."""
    d = fixtures_dir()
    if not d.is_dir():
        fatal("fixtures dir %s not found (set SGCKPT_SHARED_DIR)" % d)
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".pt", ".pth"))


def torch2_python():
    """The interpreter with torch 2.x for the tests that run once per torch, or None.

    $SGCKPT_TORCH2_PYTHON when set; else scripts/torch2-python when the chroot that
    scripts/install-torch2-oracle.sh makes is there. With SGCKPT_REQUIRE_TORCH2=1 (set by
    scripts/test.sh, so in CI) a missing torch 2.x is a setup failure, not a skip."""
    env = os.environ.get("SGCKPT_TORCH2_PYTHON")
    if env:
        return env
    cache = pathlib.Path(os.environ.get("SGCKPT_CACHE_DIR") or "/var/cache/sgckpt")
    if (cache / "trixie-torch" / ".sgckpt-complete").exists():
        return str(REPO / "scripts" / "torch2-python")
    if os.environ.get("SGCKPT_REQUIRE_TORCH2", "") == "1":
        fatal("torch 2.x oracle required (SGCKPT_REQUIRE_TORCH2=1) but not installed: run scripts/install-torch2-oracle.sh "
              "or set SGCKPT_TORCH2_PYTHON")
    return None


def _host_path(root, path):
    """path on the host as seen from here, with the host's root at root: symbolic links are
    followed component by component and absolute ones re-rooted (the host's
    /lib64/ld-linux-x86-64.so.2 links to /lib/..., which here would be the chroot's own)."""
    parts, resolved, hops = path.strip("/").split("/"), "", 0
    while parts:
        c = parts.pop(0)
        if c in ("", "."):
            continue
        if c == "..":
            resolved = os.path.dirname(resolved)
            continue
        full = root + resolved + "/" + c
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                fatal("too many symbolic links resolving %s under %s" % (path, root))
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = ""
            parts = target.split("/") + parts
            continue
        resolved += "/" + c
    return root + resolved


def host_argv(argv):
    """The command line that runs the host binary argv[0] with argv[1:].

    Under scripts/torch2-python this interpreter lives in a trixie chroot while the binaries
    under test were built on the host (against libraries trixie lacks): SGCKPT_HOST_ROOT then
    names the host's root, bound read-only, and the binary runs through the host's loader with
    only the host's libraries, so every torch oracle tests the same bits. Elsewhere: argv."""
    root = os.environ.get("SGCKPT_HOST_ROOT")
    argv = [str(a) for a in argv]
    if not root:
        return argv
    loader = _host_path(root, "/lib64/ld-linux-x86-64.so.2")
    if not os.path.exists(loader):
        fatal("SGCKPT_HOST_ROOT=%s has no /lib64/ld-linux-x86-64.so.2" % root)
    # /usr/local/cuda/lib64: binaries linked to the CUDA backend (cuBLASLt, cuDNN) find them
    # there through their run path, which names the host's path.
    dirs = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/lib", "/usr/lib",
            "/usr/local/cuda/lib64")
    libs = list(dict.fromkeys(_host_path(root, d) for d in dirs))
    return [loader, "--inhibit-cache", "--library-path", ":".join(libs), "--argv0", argv[0], argv[0]] + argv[1:]


def find_tool():
    env = os.environ.get("SGCKPT_TOOL")
    if env:
        return env if (os.path.isfile(env) and os.access(env, os.X_OK)) else None
    # Fallback: the most recently built `sgckpt` executable under <repo>/build*/.
    found = [pathlib.Path(p) for p in glob.glob(str(REPO / "build*" / "**" / "sgckpt"), recursive=True)]
    found = [p for p in found if p.is_file() and os.access(str(p), os.X_OK)]
    if not found:
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime))


def require_example(*programs):
    """The directory of the built examples that holds every one of `programs` (fatal if none).

    Looks at SGCKPT_EXAMPLES_DIR when set; else $SGCKPT_BINARY_DIR/examples, <dir of
    $SGCKPT_TOOL>/../examples (and ../../examples) and <repo>/build*/examples."""
    candidates = []
    if os.environ.get("SGCKPT_EXAMPLES_DIR"):
        candidates.append(os.environ["SGCKPT_EXAMPLES_DIR"])
    else:
        if os.environ.get("SGCKPT_BINARY_DIR"):
            candidates.append(os.path.join(os.environ["SGCKPT_BINARY_DIR"], "examples"))
        if os.environ.get("SGCKPT_TOOL"):
            tool_dir = os.path.dirname(os.path.abspath(os.environ["SGCKPT_TOOL"]))
            candidates.append(os.path.join(tool_dir, "..", "examples"))
            candidates.append(os.path.join(tool_dir, "..", "..", "examples"))
        candidates += sorted(glob.glob(str(REPO / "build*" / "examples")))
    for d in candidates:
        if all(os.path.isfile(os.path.join(d, p)) and os.access(os.path.join(d, p), os.X_OK) for p in programs):
            return os.path.normpath(os.path.abspath(d))
    fatal("%s not found in %s: build the examples and set SGCKPT_EXAMPLES_DIR" % (", ".join(programs), candidates))


def require_driver(*programs):
    """The directory of the built test drivers (tests/drivers/*.cpp) that holds every one of
    `programs` (fatal if none): SGCKPT_DRIVERS_DIR when set; else $SGCKPT_BINARY_DIR/tests/drivers
    and <repo>/build*/tests/drivers."""
    candidates = []
    if os.environ.get("SGCKPT_DRIVERS_DIR"):
        candidates.append(os.environ["SGCKPT_DRIVERS_DIR"])
    else:
        if os.environ.get("SGCKPT_BINARY_DIR"):
            candidates.append(os.path.join(os.environ["SGCKPT_BINARY_DIR"], "tests", "drivers"))
        candidates += sorted(glob.glob(str(REPO / "build*" / "tests" / "drivers")))
    for d in candidates:
        if all(os.path.isfile(os.path.join(d, p)) and os.access(os.path.join(d, p), os.X_OK) for p in programs):
            return os.path.normpath(os.path.abspath(d))
    fatal("%s not found in %s: build the tests and set SGCKPT_DRIVERS_DIR" % (", ".join(programs), candidates))


def require_tool():
    tool = find_tool()
    if tool is None:
        env = os.environ.get("SGCKPT_TOOL")
        if env:
            fatal("sgckpt tool not found: SGCKPT_TOOL=%s is not an executable file" % env)
        fatal("sgckpt tool not found: set SGCKPT_TOOL to the built sgckpt executable (looked under %s/build*)" % REPO)
    print("   tool: %s" % tool, flush=True)
    return tool


# ---------------------------------------------------------------------------------------------
# Running the tool


class ToolResult:
    def __init__(self, args, rc, signal, timed_out, stdout, stderr, maxrss_kib, seconds):
        self.args = args
        self.rc = rc  # exit status, or None if killed by a signal / timed out
        self.signal = signal  # signal number or None
        self.timed_out = timed_out
        self.stdout = stdout  # bytes
        self.stderr = stderr  # bytes
        self.maxrss_kib = maxrss_kib
        self.seconds = seconds

    @property
    def stderr_text(self):
        return self.stderr.decode("utf-8", "replace")

    def describe(self):
        if self.timed_out:
            st = "timed out after %.1fs" % self.seconds
        elif self.signal is not None:
            st = "killed by signal %d" % self.signal
        elif self.rc is None:
            st = "killed after writing more than %d bytes to stdout" % len(self.stdout)
        else:
            st = "exit %d" % self.rc
        err = self.stderr_text.strip()
        if len(err) > 600:
            err = err[:600] + "...[%d bytes]" % len(self.stderr)
        return "`sgckpt %s`: %s, stderr=%r" % (" ".join(self.args), st, err)


def default_rlimit_as():
    v = os.environ.get("SGCKPT_TEST_RLIMIT_AS")
    if v is None or v == "":
        return 2 << 30
    return int(v)


def run_tool(tool, args, timeout=60.0, rlimit_as=None):
    """Runs `tool args...`; returns a ToolResult with the child's own peak RSS (wait4)."""
    args = [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:

        def pre():
            if rlimit_as:
                resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

        t0 = time.monotonic()
        p = subprocess.Popen(
            host_argv([tool] + args), stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=pre if rlimit_as else None
        )
        timed_out = False
        delay = 0.001
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                timed_out = True
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen
        rc = sig = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            rc = os.WEXITSTATUS(status)
        out.seek(0)
        err.seek(0)
        return ToolResult(args, None if timed_out else rc, None if timed_out else sig, timed_out, out.read(), err.read(), ru.ru_maxrss, seconds)


def run_tool_bounded(tool, args, timeout=60.0, rlimit_as=None, max_stdout=16 << 20, max_stderr=1 << 20):
    """Like run_tool, for outputs that may be huge: stdout goes through a pipe and is counted;
    at most max_stdout bytes are kept, and the child is killed as soon as it writes more (so
    a runaway output costs neither memory nor disk here). stderr goes to a file of which the
    first max_stderr bytes are read. The ToolResult also has stdout_bytes (bytes seen) and
    stdout_overflow (True when the child was killed for writing more than max_stdout)."""
    import select

    args = [str(a) for a in args]
    with tempfile.TemporaryFile() as err:

        def pre():
            if rlimit_as:
                resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

        t0 = time.monotonic()
        p = subprocess.Popen(host_argv([tool] + args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                             preexec_fn=pre if rlimit_as else None)
        fd = p.stdout.fileno()
        chunks, seen, overflow, timed_out, killed = [], 0, False, False, False
        status = ru = None
        eof = False

        def take(data):
            nonlocal seen, overflow
            if seen < max_stdout:
                chunks.append(data[: max_stdout - seen])
            seen += len(data)
            overflow = overflow or seen > max_stdout

        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                timed_out = True
                break
            if not eof:
                r, _, _ = select.select([fd], [], [], min(left, 0.5))
                if r:
                    data = os.read(fd, 1 << 20)
                    if data:
                        take(data)
                        if overflow:
                            break
                    else:
                        eof = True
                    continue
            if status is None:
                pid, st, r_u = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    status, ru = st, r_u
            if status is not None and eof:
                break
            if eof:
                time.sleep(0.005)
        if status is None:
            if timed_out or overflow:
                p.kill()
                killed = True
            pid, status, ru = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        p.stdout.close()
        rc = sig = None
        if not killed:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            else:
                rc = os.WEXITSTATUS(status)
        err.seek(0)
        res = ToolResult(args, rc, sig, timed_out, b"".join(chunks), err.read(max_stderr), ru.ru_maxrss, seconds)
        res.stdout_bytes = seen
        res.stdout_overflow = overflow
        return res


def assert_ok(res):
    assert not res.timed_out and res.signal is None and res.rc == 0, "expected success, got " + res.describe()


BAD_STDERR_MARKERS = (
    "Traceback",
    "terminate called",
    "Aborted",
    "core dumped",
    "Segmentation",
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "runtime error:",
    "what():",
    "std::",
)


def assert_clean_refusal(res, phrases=None, max_rss_mib=None):
    """Exit status exactly 1, not a signal, no timeout, exactly one non-empty stderr line with no
    crash/traceback markers, and (if given) one of `phrases` (case-insensitive substrings or
    compiled regexes) in it."""
    assert not res.timed_out, "timed out (hang?): " + res.describe()
    assert res.signal is None, "crashed with signal %d: %s" % (res.signal, res.describe())
    assert res.rc == 1, "expected exit status 1, got " + res.describe()
    text = res.stderr_text
    lines = [l for l in text.strip("\n").split("\n")]
    assert text.strip(), "exit 1 but stderr is empty"
    assert len(lines) == 1, "stderr should be exactly one line, got %d: %r" % (len(lines), text[:800])
    for m in BAD_STDERR_MARKERS:
        assert m not in text, "stderr looks like a crash/traceback dump (%r): %r" % (m, text[:800])
    if phrases:
        # Phrases must come from the message, not from the file names it quotes.
        masked = text
        names = set()
        for a in res.args:
            if os.sep in a:
                names.update([a, os.path.realpath(a), os.path.abspath(a), os.path.basename(a.rstrip(os.sep)), os.path.dirname(a)])
        for nm in sorted((n for n in names if len(n) > 1), key=len, reverse=True):
            masked = masked.replace(nm, "<PATH>")
        text = masked
        low = text.lower()
        hit = False
        for ph in phrases:
            if hasattr(ph, "search"):
                hit = hit or bool(ph.search(text))
            else:
                hit = hit or (ph.lower() in low)
        assert hit, "stderr does not name the problem (wanted one of %s): %r" % (
            [getattr(p, "pattern", p) for p in phrases],
            text.strip(),
        )
    if max_rss_mib is not None:
        assert res.maxrss_kib < max_rss_mib * 1024, "peak RSS %.1f MiB >= %d MiB: %s" % (
            res.maxrss_kib / 1024.0,
            max_rss_mib,
            res.describe(),
        )


# ---------------------------------------------------------------------------------------------
# Tensor bytes / hashes


# torch 2.x dtypes numpy has no type for (or that torch does not hand to numpy): their bits as
# the signed integer of the same size.
_BITS_AS = {
    getattr(torch, n): b
    for n, b in [("float8_e4m3fn", torch.int8), ("float8_e5m2", torch.int8), ("float8_e4m3fnuz", torch.int8),
                 ("float8_e5m2fnuz", torch.int8), ("float8_e8m0fnu", torch.int8), ("uint16", torch.int16),
                 ("uint32", torch.int32), ("uint64", torch.int64), ("complex32", torch.int32)]
    if hasattr(torch, n)
}


def _flat_numpy(t):
    """The tensor's elements in row-major order as a C-contiguous numpy array whose raw
    bytes are the contract's little-endian element bytes (bool 0/1 bytes, bf16 bits,
    complex interleaved)."""
    assert sys.byteorder == "little"
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    t = t.contiguous().view(-1)
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype in _BITS_AS:
        t = t.view(_BITS_AS[t.dtype])
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    elif t.is_complex():
        t = torch.view_as_real(t).contiguous().view(-1)
    a = t.numpy()
    assert a.flags["C_CONTIGUOUS"]
    return a


def tensor_bytes(t):
    return _flat_numpy(t).tobytes()


def tensor_sha256(t):
    a = _flat_numpy(t)
    h = hashlib.sha256()
    if a.size:
        h.update(a)  # buffer protocol: no copy (works for multi-GiB tensors)
    return h.hexdigest()


def dtype_name(dt):
    return str(dt).replace("torch.", "")


def is_storage(x):
    return isinstance(x, STORAGE_TYPES)


def storage_as_tensor(st):
    """A bare storage as the 1-D tensor over all of it (how sgckpt reads a bare storage)."""
    return torch.tensor([], dtype=st.dtype).set_(st)


def storage_identity(t):
    """Stable identity of a tensor's (or bare storage's) StorageImpl (also for 0-byte ones)."""
    st = t if is_storage(t) else t.storage()
    cd = getattr(st, "_cdata", None)
    if cd is None:  # pragma: no cover
        cd = st.data_ptr()
    return cd


def storage_numel(t):
    return t.storage().size()


def whole_storage_bytes(t):
    n = storage_numel(t)
    base = t.detach().as_strided((n,), (1,), 0)
    return tensor_bytes(base)


# ---------------------------------------------------------------------------------------------
# The expected JSON mirror
#
# Normalized representation shared by the expected mirror and the parsed tool output:
#   JSON object -> Obj([(key, value), ...])  (order kept)
#   JSON array  -> list
#   null/true/false/str -> None/True/False/str
#   integer     -> int (exact)
#   number with '.' or exponent -> JFloat(value, text)  (text None on the expected side)
#   tensor      -> TensorJ(dtype, shape, sha256)  (expected side only)


class Obj:
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def keys(self):
        return [k for k, _ in self.pairs]

    def __repr__(self):
        return "Obj(%r)" % (self.pairs,)


class JFloat:
    __slots__ = ("value", "text")

    def __init__(self, value, text=None):
        self.value = value
        self.text = text

    def __repr__(self):
        return "JFloat(%s)" % (self.text if self.text is not None else repr(self.value))


class TensorJ:
    __slots__ = ("dtype", "shape", "sha256")

    def __init__(self, dtype, shape, sha256):
        self.dtype, self.shape, self.sha256 = dtype, list(shape), sha256

    def __repr__(self):
        return "$tensor(%s, %s, %s)" % (self.dtype, self.shape, self.sha256[:12])


class Unsupported(Exception):
    """The object holds something without a JSON mirror or outside sgckpt's value model: the
    tool is expected to refuse it (exit 1, one line on stderr). `bytes` is in the value model
    (convert keeps it) but has no JSON mirror; a set, a complex, a non-str/int dict key, a tuple
    subclass other than torch.Size, a numpy object array... are in neither."""


DICT_TYPES = (dict, collections.OrderedDict, collections.Counter)
TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
STORAGE_TYPES = tuple(t for t in (getattr(torch.storage, "TypedStorage", None), getattr(torch.storage, "_TypedStorage", None)) if t is not None)


def expected_json(obj, path="<root>"):
    t = type(obj)
    if obj is None:
        return None
    if t is bool:
        return obj
    if t is int:
        return obj
    if t is float:
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return JFloat(obj)
    if t is str:
        return obj
    if t in (list, tuple):
        return [expected_json(v, "%s/%d" % (path, i)) for i, v in enumerate(obj)]
    if t in DICT_TYPES:
        pairs = []
        seen = set()
        for k, v in obj.items():
            if type(k) is str:
                ks = k
            elif type(k) is int:
                ks = str(k)
            else:
                raise Unsupported("%s: dict key of type %s" % (path, type(k).__name__))
            if ks in seen:
                raise Unsupported("%s: keys collide in JSON: %r" % (path, ks))
            seen.add(ks)
            pairs.append((ks, expected_json(v, "%s/%s" % (path, ks))))
        return Obj(pairs)
    if t in TENSOR_TYPES:
        if obj.layout != torch.strided or obj.is_quantized or obj.is_sparse:
            raise Unsupported("%s: tensor layout %s" % (path, obj.layout))
        return TensorJ(dtype_name(obj.dtype), list(obj.shape), tensor_sha256(obj))
    if is_storage(obj):
        # A bare storage (torch.save(t.storage())) is read as the 1-D tensor over all of it.
        return expected_json(storage_as_tensor(obj), path)
    if t is bytes:
        raise Unsupported("%s: bytes value (no JSON mirror)" % path)
    if t is torch.Size:
        return [int(d) for d in obj]
    if t is torch.dtype:
        return Obj([("$dtype", dtype_name(obj))])
    if t is torch.device:
        return Obj([("$device", str(obj))])
    if is_numpy_value(obj):
        return numpy_json(obj, path)
    raise Unsupported("%s: value of type %s.%s" % (path, t.__module__, t.__qualname__))


# The numpy dtypes sgckpt reads (plain numeric ones; names as torch spells them).
NUMPY_NAMES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
               "float16", "float32", "float64", "complex64", "complex128")


def is_numpy_value(obj):
    np = sys.modules.get("numpy")
    return np is not None and (type(obj) is np.ndarray or isinstance(obj, np.generic))


def numpy_json(obj, path):
    """{"$numpy": {dtype, shape, scalar, sha256}}: the hash of the elements in C order as
    little-endian bytes, as for tensors."""
    import numpy as np

    a = np.asarray(obj)
    if a.dtype.name not in NUMPY_NAMES or a.dtype.fields is not None:
        raise Unsupported("%s: numpy dtype %s" % (path, a.dtype))
    le = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    return Obj([("$numpy", Obj([("dtype", a.dtype.name), ("shape", list(a.shape)),
                                ("scalar", isinstance(obj, np.generic)),
                                ("sha256", hashlib.sha256(le.tobytes()).hexdigest())]))])


def supported(obj):
    """True if `inspect --json` can mirror the object."""
    try:
        expected_json(obj)
        return True
    except Unsupported:
        return False


def convertible(obj):
    """True if every node is in sgckpt's value model (what `convert` must carry over): the JSON
    types plus bytes."""
    stack = [obj]
    while stack:
        x = stack.pop()
        t = type(x)
        if x is None or t in (bool, int, float, str, bytes, torch.dtype, torch.device) or t in TENSOR_TYPES or is_storage(x):
            continue
        if is_numpy_value(x):
            if supported(x):
                continue
            return False
        if t in (list, tuple, torch.Size):
            stack.extend(x)
        elif t in DICT_TYPES:
            for k, v in x.items():
                if type(k) not in (str, int):
                    return False
                stack.append(v)
            stack.extend(getattr(x, "__dict__", {}).values())
        else:
            return False
    return True


def _no_constants(name):
    raise ValueError("non-standard JSON constant %s" % name)


def parse_tool_json(data):
    """Parses the tool's stdout as exactly ONE JSON document (ints exact, floats keep their
    text, key order kept, duplicate keys an error)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AssertionError("tool JSON output is not valid UTF-8: %s" % e)

    def pairs_hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise AssertionError("duplicate key %r in a JSON object" % k)
            seen.add(k)
        return Obj(pairs)

    try:
        return json.loads(
            data,
            object_pairs_hook=pairs_hook,
            parse_float=lambda s: JFloat(float(s), s),
            parse_int=int,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError) as e:
        raise AssertionError("tool output is not one valid JSON document: %s; output starts %r" % (e, data[:200]))


def _sig_digits(text):
    s = text.strip().lstrip("-+")
    mant = re.split("[eE]", s)[0].replace(".", "")
    return mant.lstrip("0").rstrip("0")


def _fbits(x):
    return struct.pack("<d", x)


def _short(x, n=160):
    r = repr(x)
    return r if len(r) <= n else r[:n] + "..."


def assert_json_equal(exp, act, path="<root>"):
    """Raises AssertionError naming the key path of the first difference."""
    if isinstance(exp, TensorJ):
        assert isinstance(act, Obj), "%s: expected a tensor object, got %s" % (path, _short(act))
        assert act.keys() == ["$tensor"], "%s: tensor object must have exactly the key '$tensor', got %s" % (path, act.keys())
        inner = act.pairs[0][1]
        assert isinstance(inner, Obj), "%s/$tensor: expected an object, got %s" % (path, _short(inner))
        d = dict(inner.pairs)
        assert sorted(d) == ["dtype", "sha256", "shape"], "%s/$tensor: keys must be dtype, shape, sha256; got %s" % (path, inner.keys())
        assert type(d["dtype"]) is str and d["dtype"] == exp.dtype, "%s: dtype %r, expected %r" % (path, d["dtype"], exp.dtype)
        sh = d["shape"]
        assert isinstance(sh, list) and all(type(v) is int for v in sh) and sh == exp.shape, "%s: shape %s, expected %s" % (
            path,
            _short(sh),
            exp.shape,
        )
        assert type(d["sha256"]) is str and d["sha256"].lower() == exp.sha256, "%s: sha256 %s, expected %s (%s %s)" % (
            path,
            d["sha256"],
            exp.sha256,
            exp.dtype,
            exp.shape,
        )
        assert d["sha256"] == d["sha256"].lower(), "%s: sha256 should be lowercase hex" % path
        return
    if isinstance(exp, Obj):
        assert isinstance(act, Obj), "%s: expected an object (dict), got %s" % (path, _short(act))
        ek, ak = exp.keys(), act.keys()
        if ek != ak:
            if sorted(ek) == sorted(ak):
                raise AssertionError("%s: keys in wrong order: %s, expected %s" % (path, _short(ak, 300), _short(ek, 300)))
            raise AssertionError(
                "%s: keys differ: missing %s, unexpected %s" % (path, _short(sorted(set(ek) - set(ak))), _short(sorted(set(ak) - set(ek))))
            )
        for (k, ev), (_, av) in zip(exp.pairs, act.pairs):
            assert_json_equal(ev, av, "%s/%s" % (path, k))
        return
    if isinstance(exp, list):
        assert isinstance(act, list), "%s: expected an array, got %s" % (path, _short(act))
        assert len(act) == len(exp), "%s: array of %d elements, expected %d" % (path, len(act), len(exp))
        for i, (ev, av) in enumerate(zip(exp, act)):
            assert_json_equal(ev, av, "%s/%d" % (path, i))
        return
    if isinstance(exp, JFloat):
        assert isinstance(act, JFloat), "%s: expected a float %r written with '.' or an exponent, got %s" % (path, exp.value, _short(act))
        assert re.search(r"[.eE]", act.text), "%s: float written without '.' or exponent: %s" % (path, act.text)
        assert _fbits(act.value) == _fbits(exp.value), "%s: float %s, expected %r" % (path, act.text, exp.value)
        want = _sig_digits(repr(exp.value))
        got = _sig_digits(act.text)
        assert len(got) == len(want), "%s: float %s is not the shortest round-trip text (%r has %d significant digits)" % (
            path,
            act.text,
            exp.value,
            len(want),
        )
        return
    if exp is None:
        assert act is None, "%s: expected null, got %s" % (path, _short(act))
        return
    if type(exp) is bool:
        assert type(act) is bool and act == exp, "%s: expected %s, got %s" % (path, json.dumps(exp), _short(act))
        return
    if type(exp) is int:
        assert type(act) is int, "%s: expected the integer %d, got %s" % (path, exp, _short(act))
        assert act == exp, "%s: integer %d, expected %d" % (path, act, exp)
        return
    if type(exp) is str:
        assert type(act) is str and act == exp, "%s: expected the string %s, got %s" % (path, _short(exp), _short(act))
        return
    raise AssertionError("%s: internal: unexpected expected-value %r" % (path, exp))


def check_inspect_json(tool, path, obj=None, timeout=60.0):
    """Runs `sgckpt inspect --json path` and compares it with the mirror of `obj`
    (default: torch.load(path, weights_only=False)). Objects outside the value model must be
    refused cleanly instead."""
    if obj is None:
        obj = torch_load_full(path)
    try:
        exp = expected_json(obj)
    except Unsupported as u:
        res = run_tool(tool, ["inspect", "--json", path], timeout=timeout)
        assert_clean_refusal(res)
        return "refused (unsupported: %s)" % u
    res = run_tool(tool, ["inspect", "--json", path], timeout=timeout)
    assert_ok(res)
    act = parse_tool_json(res.stdout)
    assert_json_equal(exp, act)
    return None


def torch_load_full(path):
    return torch.load(str(path), map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------------------------
# Deep equality of torch objects


class _Missing:
    def __repr__(self):
        return "<missing>"


MISSING = _Missing()


def _float_eq(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def assert_deep_equal(a, b, path="<root>", check_storage_bytes=True):
    """Strict equality of two torch-loaded objects `a` (expected) and `b` (actual): exact
    Python types (dict/OrderedDict/Counter, list/tuple, bool/int/float/bytes), OrderedDict
    attributes (`_metadata`), NaN-aware floats (sign of zero included), and for tensors:
    type (Tensor vs Parameter), dtype, shape, stride, storage_offset, requires_grad, storage
    size, exact bytes of the view and of the whole storage, plus storage sharing across the
    whole tree (a bijection between the two trees' storages). A bare storage in `a` must be
    a plain 1-D tensor over all of it in `b` (sgckpt reads bare storages as tensors)."""
    ta, tb = [], []
    _deep(a, b, path, ta, tb, check_storage_bytes)
    fwd, bwd = {}, {}
    for (pa, x), (_, y) in zip(ta, tb):
        ia, ib = storage_identity(x), storage_identity(y)
        if ia in fwd:
            assert fwd[ia][0] == ib, "%s: should share its storage with %s (as in the original), but does not" % (pa, fwd[ia][1])
        else:
            fwd[ia] = (ib, pa)
        if ib in bwd:
            assert bwd[ib][0] == ia, "%s: shares its storage with %s, but in the original they are separate" % (pa, bwd[ib][1])
        else:
            bwd[ib] = (ia, pa)


def _deep(a, b, path, ta, tb, sb):
    if is_storage(a):
        assert type(b) is torch.Tensor, "%s: a bare storage should come back as a plain tensor, got %s" % (path, type(b).__qualname__)
        a = storage_as_tensor(a)
        assert b.dim() == 1 and b.storage_offset() == 0 and b.stride() == (1,), "%s: bare storage should be a 1-D contiguous tensor at offset 0" % path
    assert type(a) is type(b), "%s: type %s, expected %s" % (path, type(b).__qualname__, type(a).__qualname__)
    t = type(a)
    if a is None:
        return
    if t in (bool, int, str):
        assert a == b, "%s: %s, expected %s" % (path, _short(b), _short(a))
        return
    if t is float:
        assert _float_eq(a, b), "%s: float %r, expected %r" % (path, b, a)
        return
    if t in (list, tuple):
        assert len(a) == len(b), "%s: %s of %d elements, expected %d" % (path, t.__name__, len(b), len(a))
        for i, (x, y) in enumerate(zip(a, b)):
            _deep(x, y, "%s/%d" % (path, i), ta, tb, sb)
        return
    if t in DICT_TYPES:
        ka, kb = list(a.keys()), list(b.keys())
        assert [(type(k), k) for k in ka] == [(type(k), k) for k in kb], "%s: keys %s, expected %s (order and key types matter)" % (
            path,
            _short(kb, 300),
            _short(ka, 300),
        )
        for k in ka:
            _deep(a[k], b[k], "%s/%s" % (path, k), ta, tb, sb)
        da, db = getattr(a, "__dict__", {}), getattr(b, "__dict__", {})
        assert sorted(da) == sorted(db), "%s: %s attributes %s, expected %s" % (path, t.__name__, sorted(db), sorted(da))
        for k in da:
            _deep(da[k], db[k], "%s.%s" % (path, k), ta, tb, sb)
        return
    if t in TENSOR_TYPES:
        assert a.dtype == b.dtype, "%s: dtype %s, expected %s" % (path, b.dtype, a.dtype)
        assert tuple(a.shape) == tuple(b.shape), "%s: shape %s, expected %s" % (path, tuple(b.shape), tuple(a.shape))
        assert a.stride() == b.stride(), "%s: stride %s, expected %s" % (path, b.stride(), a.stride())
        assert a.storage_offset() == b.storage_offset(), "%s: storage_offset %d, expected %d" % (path, b.storage_offset(), a.storage_offset())
        assert a.requires_grad == b.requires_grad, "%s: requires_grad %s, expected %s" % (path, b.requires_grad, a.requires_grad)
        assert isinstance(a, torch.nn.Parameter) == isinstance(b, torch.nn.Parameter), "%s: Parameter-ness differs" % path
        assert b.device.type == "cpu", "%s: device %s" % (path, b.device)
        assert a.is_conj() == b.is_conj() and a.is_neg() == b.is_neg(), "%s: conj/neg bits differ" % path
        assert storage_numel(a) == storage_numel(b), "%s: storage of %d elements, expected %d" % (path, storage_numel(b), storage_numel(a))
        # Equal metadata and equal storage bytes imply equal values, without materializing
        # the view (a stride-0 view of 2**62 elements over one byte is legal).
        if sb:
            assert whole_storage_bytes(a) == whole_storage_bytes(b), "%s: bytes of the underlying storage differ" % path
        else:
            assert tensor_bytes(a) == tensor_bytes(b), "%s: tensor values differ (%s %s)" % (path, a.dtype, tuple(a.shape))
        ta.append((path, a))
        tb.append((path, b))
        return
    # Anything else (bytes, set, complex, device...): plain ==.
    assert a == b, "%s: %s, expected %s" % (path, _short(b), _short(a))


def contains(obj, pred):
    """True if pred(x) holds for any node of the tree (dict keys and OrderedDict attributes too)."""
    stack = [obj]
    seen = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if pred(x):
            return True
        if type(x) in (list, tuple):
            stack.extend(x)
        elif type(x) in DICT_TYPES:
            stack.extend(x.keys())
            stack.extend(x.values())
            stack.extend(getattr(x, "__dict__", {}).values())
    return False


def has_python_float(obj):
    return contains(obj, lambda x: type(x) is float)


def has_counter(obj):
    return contains(obj, lambda x: type(x) is collections.Counter)


def has_bytes(obj):
    return contains(obj, lambda x: type(x) is bytes)


def has_dtype_2x(obj):
    """Holds a tensor of a dtype torch 2.x added (written with _rebuild_tensor_v3)."""
    return contains(obj, lambda x: isinstance(x, TENSOR_TYPES) and x.dtype in _BITS_AS)


# ---------------------------------------------------------------------------------------------
# Optimizer state dicts across torch versions

# Param-group options that torch versions after 1.13 added. sgckpt's engine and lifecycle write
# torch 1.13's layout, which every later torch loads: its load_state_dict fills these with their
# defaults (optimizer __setstate__). torch 1.13's Adam says fused=False where 2.x says None.
LATER_GROUP_KEYS = frozenset(["fused", "differentiable", "capturable", "foreach", "maximize", "decoupled_weight_decay"])


def assert_group_keys_match(saved, want, what="param group"):
    """Keys of a param group sgckpt wrote (saved) against torch's own (want): the same list
    under torch 1.13; under a later torch, saved in torch's order and missing only options
    that torch added after 1.13."""
    if TORCH_VERSION < (2, 0):
        assert saved == want, "%s: keys %s vs torch %s" % (what, saved, want)
        return
    extra = [k for k in saved if k not in want]
    assert not extra, "%s: keys %s that torch %s lacks" % (what, extra, torch.__version__)
    assert saved == [k for k in want if k in saved], "%s: key order %s vs torch %s" % (what, saved, want)
    missing = [k for k in want if k not in saved and k not in LATER_GROUP_KEYS]
    assert not missing, "%s: missing %s (torch has %s)" % (what, missing, want)


def assert_groups_match(saved, want, what="param_groups"):
    """The param groups sgckpt wrote (saved) against torch's own (want): equal, key order
    included, under torch 1.13; under a later torch, keys as assert_group_keys_match says, every
    saved value equal to torch's and the options only torch has at their default (falsy; torch
    1.13's Adam says fused=False where 2.x says None)."""
    if TORCH_VERSION < (2, 0):
        assert saved == want, "%s: %r vs torch %r" % (what, saved, want)
        return
    assert len(saved) == len(want), "%s: %d groups vs torch %d" % (what, len(saved), len(want))
    for i, (g, w) in enumerate(zip(saved, want)):
        assert_group_keys_match(list(g), list(w), "%s/%d" % (what, i))
        for k in w:
            if k not in g:
                assert not w[k], "%s/%d/%s: torch has %r, sgckpt nothing" % (what, i, k, w[k])
            elif not (g[k] == w[k] or (k in LATER_GROUP_KEYS and not g[k] and not w[k])):
                raise AssertionError("%s/%d/%s: %r vs torch %r" % (what, i, k, g[k], w[k]))
