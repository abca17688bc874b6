#!/usr/bin/env python3
"""sgckpt writes -> torch reads.

For every file of the corpus (corpus.py, written by torch.save at test time; includes legacy
pre-1.6 files) and of $SGCKPT_SHARED_DIR/fixtures/torch-1.13/:
  1. `sgckpt convert IN OUT` (exit 0; files holding values outside sgckpt's model (a set, a
     complex, ...) must instead be refused cleanly and leave no OUT behind; bytes are in the
     model and must be kept; a bare storage comes back as the 1-D tensor over all of it);
  2. OUT's zip layout (Python zipfile): testzip() passes (real CRCs), every entry under one
     root folder = OUT's file name minus its last extension, stored (not compressed), every
     payload's data offset (from the local header) % 64 == 0, `version` is b"3\\n", only
     known records, every `data/<key>` referenced and sized numel x itemsize, no orphans;
  3. OUT's data.pkl (pickletools.genops) uses only the weights_only-safe subset (docs/security.md):
     protocol 2, the listed opcodes, the listed GLOBALs (`collections Counter` only when the
     original holds a Counter, `_codecs encode`/`__builtin__ bytes` only when it holds bytes,
     BINFLOAT only when it holds a Python float), and every
     _rebuild_tensor_v2 / _rebuild_parameter call has exactly 6 / 3 well-typed arguments;
     only a file holding a dtype torch 2.x added has _rebuild_tensor_v3 calls (7 arguments,
     an UntypedStorage counted in bytes, the dtype last), as torch 2.x writes them;
  4. torch.load(OUT, weights_only=True) succeeds unless the object holds a Python float
     (torch < 2.0), a Counter (torch < 2.1) or bytes (torch < 2.6); weights_only=False always;
  5. both loads deep-equal the original torch.load(IN) (oracle.assert_deep_equal: types,
     dtypes, shapes, strides, offsets, storage sharing, Parameter/requires_grad, dict kinds,
     _metadata, int/bool/float, NaN-aware floats, exact bytes);
  6. `sgckpt inspect --json OUT` equals the original's JSON mirror;
and `convert --layout torch2` writes the records torch 2.x writes, in its order.

Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_sgckpt_writes.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/sgckpt_writes, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import codecs  # noqa: E402
import collections  # noqa: E402
import pickle  # noqa: E402
import pickletools  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

import corpus  # noqa: E402
import oracle  # noqa: E402
from oracle import torch  # noqa: E402

STORAGE_ITEMSIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "UntypedStorage": 1,
}

SAFE_OPCODES = {
    "PROTO", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "SETITEM", "SETITEMS",
    "APPEND", "APPENDS", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "BININT1", "BININT2", "BININT",
    "LONG1", "BINUNICODE", "NONE", "NEWTRUE", "NEWFALSE", "BINPERSID", "GLOBAL", "REDUCE",
    "BUILD", "BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET", "BINFLOAT",
}  # fmt: skip
SAFE_GLOBALS = {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter", "collections OrderedDict", "collections Counter"}
SAFE_GLOBALS |= {"torch " + c for c in STORAGE_ITEMSIZE if c != "UntypedStorage"}
# Only when the original holds a torch 2.x dtype (float8, uint16-64, complex32), as torch 2.x
# writes them: an UntypedStorage (numel in bytes) and _rebuild_tensor_v3(..., dtype).
DTYPES_2X = {oracle.dtype_name(dt) for dt in corpus.DTYPES_2X}
V3_GLOBALS = {"torch._utils _rebuild_tensor_v3", "torch.storage UntypedStorage"} | {"torch " + n for n in DTYPES_2X}
# Only when the original holds bytes (protocol 2 has no bytes opcode; this is how Python and
# torch write them; not weights_only-loadable before torch ~2.6).
BYTES_GLOBALS = {"_codecs encode", "__builtin__ bytes", "builtins bytes"}
OPTIONAL_RECORDS = {"byteorder", ".data/serialization_id", ".format_version", ".storage_alignment"}


def expected_root(out_path):
    base = os.path.basename(out_path)
    stem, dot, _ = base.rpartition(".")
    return stem if dot and stem else base


# -- data.pkl analysis ------------------------------------------------------------------------


class _StorageRef:
    def __init__(self, cls, key, location, numel):
        self.cls, self.key, self.location, self.numel = cls, key, location, numel


class _StorageClass:
    def __init__(self, name):
        self.name = name


class _TensorStub:
    def __init__(self, args):
        self.args = args


def scan_pickle(data, allow_float, allow_counter, allow_bytes=False, allow_v3=False):
    """Opcode/GLOBAL allowlist check, then a stub unpickling that validates the rebuild calls.
    Returns the list of storage references (one per persistent id)."""
    ops = list(pickletools.genops(data))
    assert ops, "empty data.pkl"
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2, "data.pkl must start with PROTO 2, starts with %s %r" % (ops[0][0].name, ops[0][1])
    assert ops[-1][0].name == "STOP", "data.pkl must end with STOP"
    for op, arg, pos in ops:
        n = op.name
        assert n in SAFE_OPCODES, "opcode %s at byte %d is outside the weights_only-safe subset" % (n, pos)
        if n == "BINFLOAT":
            assert allow_float, "BINFLOAT at byte %d but the original holds no Python float" % pos
        if n == "GLOBAL":
            if arg in BYTES_GLOBALS:
                assert allow_bytes, "GLOBAL %r at byte %d but the original holds no bytes" % (arg, pos)
                continue
            if arg in V3_GLOBALS:
                assert allow_v3, "GLOBAL %r at byte %d but the original holds no torch 2.x dtype" % (arg, pos)
                continue
            assert arg in SAFE_GLOBALS, "GLOBAL %r at byte %d is outside the safe set" % (arg, pos)
            if arg == "collections Counter":
                assert allow_counter, "GLOBAL collections Counter but the original holds no Counter"
        if n == "PROTO":
            assert pos == 0, "second PROTO at byte %d" % pos
    end = ops[-1][2] + 1
    assert end == len(data), "%d trailing bytes after STOP in data.pkl" % (len(data) - end)

    refs = []

    def rebuild_tensor_v3(*args):
        assert len(args) == 7, "_rebuild_tensor_v3 called with %d args (must be exactly 7)" % len(args)
        dt = args[6]
        assert isinstance(dt, _StorageClass) and dt.name in DTYPES_2X, "_rebuild_tensor_v3 dtype %r is not a torch 2.x dtype" % (dt,)
        assert args[0].cls == "UntypedStorage", "_rebuild_tensor_v3 on a %s (must be UntypedStorage)" % args[0].cls
        return check_view(args[:6], getattr(torch, dt.name).itemsize, "_rebuild_tensor_v3")

    def rebuild_tensor_v2(*args):
        assert len(args) == 6, "_rebuild_tensor_v2 called with %d args (must be exactly 6)" % len(args)
        assert args[0].cls != "UntypedStorage", "_rebuild_tensor_v2 on an UntypedStorage"
        return check_view(args, 1, "_rebuild_tensor_v2")

    def check_view(args, bytes_per_element, fn):
        """The six arguments v2 and v3 share; the storage numel counts elements of
        bytes_per_element storage units (an UntypedStorage counts bytes)."""
        st, off, size, stride, rg, hooks = args
        assert isinstance(st, _StorageRef), "%s arg 0 is not a storage persistent id" % fn
        assert type(off) is int and off >= 0, "storage_offset %r" % (off,)
        assert type(size) is tuple and all(type(s) is int and s >= 0 for s in size), "size %r" % (size,)
        assert type(stride) is tuple and all(type(s) is int and s >= 0 for s in stride), "stride %r" % (stride,)
        assert len(size) == len(stride), "size %r vs stride %r" % (size, stride)
        assert type(rg) is bool, "requires_grad %r is not a bool" % (rg,)
        assert type(hooks) is collections.OrderedDict and not hooks, "backward_hooks must be an empty OrderedDict"
        numel = 1
        for s in size:
            numel *= s
        if numel:
            last = off + sum((s - 1) * d for s, d in zip(size, stride))
            assert (last + 1) * bytes_per_element <= st.numel, "tensor view reaches element %d of a %d-unit storage" % (last, st.numel)
        return _TensorStub(args)

    def rebuild_parameter(*args):
        assert len(args) == 3, "_rebuild_parameter called with %d args (must be exactly 3)" % len(args)
        assert isinstance(args[0], _TensorStub), "_rebuild_parameter arg 0 is not a rebuilt tensor"
        assert type(args[1]) is bool, "_rebuild_parameter requires_grad %r is not a bool" % (args[1],)
        assert type(args[2]) is collections.OrderedDict and not args[2], "_rebuild_parameter hooks must be an empty OrderedDict"
        return _TensorStub(args)

    class U(pickle.Unpickler):
        def find_class(self, module, name):
            full = module + " " + name
            if full == "_codecs encode":
                return codecs.encode
            if full in ("__builtin__ bytes", "builtins bytes"):
                return bytes
            assert full in SAFE_GLOBALS or full in V3_GLOBALS, full  # already checked above
            if full == "torch._utils _rebuild_tensor_v2":
                return rebuild_tensor_v2
            if full == "torch._utils _rebuild_tensor_v3":
                return rebuild_tensor_v3
            if full == "torch._utils _rebuild_parameter":
                return rebuild_parameter
            if full == "collections OrderedDict":
                return collections.OrderedDict
            if full == "collections Counter":
                return collections.Counter
            return _StorageClass(name)

        def persistent_load(self, pid):
            assert type(pid) is tuple and len(pid) == 5, "persistent id %r must be a 5-tuple" % (pid,)
            tag, cls, key, loc, numel = pid
            assert tag == "storage", "persistent id tag %r" % (tag,)
            assert isinstance(cls, _StorageClass), "persistent id class %r" % (cls,)
            assert type(key) is str and key, "storage key %r" % (key,)
            assert loc == "cpu", "storage location %r (write 'cpu')" % (loc,)
            assert type(numel) is int and numel >= 0, "storage numel %r" % (numel,)
            ref = _StorageRef(cls.name, key, loc, numel)
            refs.append(ref)
            return ref

    import io

    U(io.BytesIO(data)).load()
    return refs


# -- zip layout ---------------------------------------------------------------------------------


def check_layout(out_path, allow_float, allow_counter, allow_bytes=False, allow_v3=False):
    root = expected_root(out_path)
    with zipfile.ZipFile(out_path) as z, open(out_path, "rb") as f:
        bad = z.testzip()
        assert bad is None, "zip CRC/header check failed for %r" % bad
        infos = z.infolist()
        assert infos, "empty archive"
        names = [i.filename for i in infos]
        assert len(set(n.lower() for n in names)) == len(names), "duplicate (case-insensitive) entry names: %s" % names
        records = {}
        for info in infos:
            n = info.filename
            assert n.startswith(root + "/"), "entry %r is not under the root folder %r/ (root = output name minus its last extension)" % (n, root)
            assert info.compress_type == zipfile.ZIP_STORED, "entry %r is compressed (method %d)" % (n, info.compress_type)
            assert info.file_size == info.compress_size, "entry %r: sizes differ" % n
            f.seek(info.header_offset)
            h = f.read(30)
            assert h[:4] == b"PK\x03\x04", "no local header at %d for %r" % (info.header_offset, n)
            method = struct.unpack("<H", h[8:10])[0]
            assert method == 0, "local header of %r: method %d" % (n, method)
            nlen, xlen = struct.unpack("<HH", h[26:30])
            lname = f.read(nlen)
            assert lname == n.encode("utf-8"), "local header name %r != central %r" % (lname, n)
            data_off = info.header_offset + 30 + nlen + xlen
            assert data_off % 64 == 0, "payload of %r starts at offset %d (%% 64 = %d), must be 64-byte aligned" % (n, data_off, data_off % 64)
            records[n[len(root) + 1 :]] = info
        assert "data.pkl" in records, "no %s/data.pkl record" % root
        assert names[0] == root + "/data.pkl", "first entry is %r; torch writes data.pkl first" % names[0]
        assert "version" in records, "no %s/version record" % root
        v = z.read(root + "/version")
        assert v == b"3\n", "version record is %r, must be b'3\\n'" % v
        if "byteorder" in records:
            assert z.read(root + "/byteorder") == b"little", "byteorder record must be b'little'"
        assert "constants.pkl" not in records, "constants.pkl would make torch treat it as TorchScript"
        refs = scan_pickle(z.read(root + "/data.pkl"), allow_float, allow_counter, allow_bytes, allow_v3)
        by_key = {}
        for r in refs:
            if r.key in by_key:
                o = by_key[r.key]
                assert (o.cls, o.numel) == (r.cls, r.numel), "storage key %r used as %s[%d] and %s[%d]" % (r.key, o.cls, o.numel, r.cls, r.numel)
            by_key[r.key] = r
        for key, r in by_key.items():
            rec = "data/" + key
            assert rec in records, "persistent id references missing record %s" % rec
            want = r.numel * STORAGE_ITEMSIZE[r.cls]
            got = records[rec].file_size
            assert got == want, "record %s has %d bytes, numel %d x %s itemsize = %d" % (rec, got, r.numel, r.cls, want)
        for rec in records:
            if rec.startswith("data/"):
                assert rec[5:] in by_key, "orphan record %s (no tensor references it)" % rec
            else:
                assert rec in ("data.pkl", "version") or rec in OPTIONAL_RECORDS, "unexpected record %r" % rec


# -- per-file check -----------------------------------------------------------------------------


def weights_only_expected(obj):
    if oracle.has_python_float(obj) and oracle.TORCH_VERSION < (2, 0):
        return False
    if oracle.has_counter(obj) and oracle.TORCH_VERSION < (2, 1):
        return False
    if oracle.has_bytes(obj) and oracle.TORCH_VERSION < (2, 6):
        return False
    return True


def check_convert(tool, name, in_path, out_path):
    orig = oracle.torch_load_full(in_path)
    res = oracle.run_tool(tool, ["convert", in_path, out_path], timeout=60)
    if not oracle.convertible(orig):
        oracle.assert_clean_refusal(res)
        assert not os.path.exists(out_path), "failed convert left a file behind at %s" % out_path
        return
    oracle.assert_ok(res)
    assert os.path.isfile(out_path), "convert exited 0 but wrote no %s" % out_path
    check_layout(out_path, oracle.has_python_float(orig), oracle.has_counter(orig), oracle.has_bytes(orig), oracle.has_dtype_2x(orig))
    if weights_only_expected(orig):
        try:
            wo = torch.load(out_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise AssertionError("torch.load(weights_only=True) failed: %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        oracle.assert_deep_equal(orig, wo, "<weights_only>")
    full = torch.load(out_path, map_location="cpu", weights_only=False)
    oracle.assert_deep_equal(orig, full)
    # sgckpt reads its own output back to the same mirror (or refuses the mirror, for bytes).
    res2 = oracle.run_tool(tool, ["inspect", "--json", out_path], timeout=60)
    if not oracle.supported(orig):
        oracle.assert_clean_refusal(res2)
        return
    oracle.assert_ok(res2)
    oracle.assert_json_equal(oracle.expected_json(orig), oracle.parse_tool_json(res2.stdout), "<reread>")


def check_torch2_layout(tool, d):
    """`convert --layout torch2`: the records torch 2.x writes, in its order, readable by this
    torch with weights_only=True; this torch's own file, where it writes more than torch 1.13
    did, has no record we lack and the same relative order."""
    obj = {"w": torch.arange(6.0).view(2, 3), "n": torch.arange(3), "step": 7}
    src, out, ref = (os.path.join(d, n) for n in ("l_in.pt", "l_out.pt", "l_ref.pt"))
    torch.save(obj, src)
    torch.save(obj, ref)
    oracle.assert_ok(oracle.run_tool(tool, ["convert", "--layout", "torch2", src, out], timeout=60))
    check_layout(out, False, False)
    with zipfile.ZipFile(out) as z:
        ours = [n.split("/", 1)[1] for n in z.namelist()]
        sid = z.read("l_out/.data/serialization_id")
        alignment = z.read("l_out/.storage_alignment")
    assert ours == ["data.pkl", ".format_version", ".storage_alignment", "byteorder", "data/0", "data/1", "version", ".data/serialization_id"], ours
    assert alignment == b"64", alignment
    assert len(sid) == 40 and sid.isdigit(), "serialization_id %r is not 40 digits" % sid
    with zipfile.ZipFile(ref) as z:
        theirs = [n.split("/", 1)[1] for n in z.namelist()]
    missing = [n for n in theirs if n not in ours]
    assert not missing, "torch %s writes records %s that --layout torch2 lacks" % (torch.__version__, missing)
    assert [n for n in ours if n in theirs] == theirs, "record order %s vs torch's %s" % (ours, theirs)
    oracle.assert_deep_equal(torch.load(src, weights_only=True), torch.load(out, weights_only=True))


def out_name(name):
    safe = name.replace("fixture:", "fx_").replace("/", "_")
    if safe == "noext":
        return "noext_out"  # no extension: root = the whole name
    return safe + ".sg.pth"  # several dots: root = "<safe>.sg"


def main():
    r = oracle.Runner("test_sgckpt_writes: sgckpt convert -> torch.load")
    tool = oracle.require_tool()
    with tempfile.TemporaryDirectory(prefix="sgckpt_sw_") as d:
        src = os.path.join(d, "in")
        dst = os.path.join(d, "out")
        os.mkdir(src)
        os.mkdir(dst)
        files = []
        r.check("build corpus with torch.save", lambda: files.extend(corpus.build_corpus(src)))
        files += [("fixture:" + p.name, str(p)) for p in oracle.fixture_files()]
        for name, path in files:
            r.check("convert " + name, check_convert, tool, name, path, os.path.join(dst, out_name(name)))
        r.check("convert --layout torch2: torch 2.x's records and order", check_torch2_layout, tool, d)
    r.finish()


if __name__ == "__main__":
    main()
