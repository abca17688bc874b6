#!/usr/bin/env python3
"""Hostile and broken files: sgckpt must refuse them cleanly.

For every case, `sgckpt inspect FILE` and `sgckpt convert FILE OUT` must: exit with status
exactly 1 (not 0, not a signal) within 10 s; print exactly one non-empty line on stderr that
names the problem (one of the listed phrases, case-insensitive) and does not look like a
crash/traceback dump; keep the child's peak RSS under 512 MiB (measured with wait4) while
running under RLIMIT_AS = 2 GiB (SGCKPT_TEST_RLIMIT_AS; 0 disables it, e.g. for sanitizer
builds); and (convert) leave no OUT file behind. Payloads that would run a shell command
create a marker file if ever executed: the marker must never appear.

A few controls built with the same machinery must be ACCEPTED (exit 0, JSON equal to the
torch mirror), so that a refusal is known to come from the hostile part.

Hostile pickles are never unpickled by this script.

Run: SGCKPT_TOOL=build/tools/sgckpt/sgckpt /usr/bin/python3 tests/python/test_refusals.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/refusals, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import io  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import struct  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

TIMEOUT = 10.0
MAX_RSS_MIB = 512

# ---- pickle building blocks (protocol 2 unless stated) ----------------------------------------

P2 = b"\x80\x02"
STOP = b"."
MARK = b"("


def u(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def i(n):
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    nb = (n.bit_length() + 8) // 8
    return b"\x8a" + bytes([nb]) + n.to_bytes(nb, "little", signed=True)


def tup(items):
    return MARK + b"".join(items) + b"t"


def ints(t):
    return tup([i(x) for x in t])


def odict():
    return glob("collections", "OrderedDict") + b")R"


def pid(cls, key, numel, loc="cpu", tag="storage"):
    return MARK + u(tag) + glob("torch", cls) + u(key) + u(loc) + i(numel) + b"tQ"


def tensor(cls, key, numel, offset, size, stride, rg=False, args=None):
    if args is None:
        args = [pid(cls, key, numel), i(offset), ints(size), ints(stride), b"\x88" if rg else b"\x89", odict()]
    return glob("torch._utils", "_rebuild_tensor_v2") + tup(args) + b"R"


def dict_of(pairs):
    out = b"}"
    if pairs:
        out += MARK + b"".join(u(k) + v for k, v in pairs) + b"u"
    return out


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def zip_archive(path, pkl, records=None, root="archive", version=b"3\n", extra_entries=None, first=None, compress=zipfile.ZIP_STORED):
    """An otherwise valid torch-style zip built with Python's zipfile (stored, real CRCs)."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        if first is not None:
            z.writestr(first[0], first[1])
        if pkl is not None:
            z.writestr(root + "/data.pkl", pkl)
        for k, v in (records or {}).items():
            z.writestr(root + "/data/" + k, v)
        if version is not None:
            z.writestr(root + "/version", version)
        for n, v in (extra_entries or []):
            z.writestr(n, v)


def legacy_stream(obj_pickle):
    """The pre-1.6 stream: magic, protocol, sys_info pickles, then the object pickle, then the
    (empty) storage key list."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    proto = pickle.dumps(1001, protocol=2)
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    return magic + proto + info + obj_pickle + pickle.dumps([], protocol=2)


# ---- phrase sets --------------------------------------------------------------------------------

TRUNC = ["truncat", "end of central directory", "end-of-central-directory", "eocd", "zip", "too short", "unexpected end",
         "end of file", "eof", "not a", "unrecognized", "unknown", "magic", "empty", "corrupt", "incomplete", "short"]  # fmt: skip
OOB = ["outside", "out of bounds", "out-of-bounds", "past the end", "beyond", "exceed", "out of range", "overflow", "too large"]
SIZE_LIE = ["size", "bytes", "numel", "length", "mismatch", "short", "long"]
HUGE_LEN = ["truncat", "string", "length", "too long", "too large", "exceed", "end of", "limit", "beyond", "past", "size", "eof"]
DEPTH = ["depth", "nest", "deep", "stack", "limit"]
CYCLE = ["cycle", "cyclic", "itself", "recurs", "self-ref", "self ref", "refers to"]
LAUGHS = ["limit", "too many", "nodes", "memo", "expan", "exceed", "too large", "budget", "amplif"]
REBUILD_ARGS = ["_rebuild_tensor_v2", "argument", "args"]


def rx(*names):
    """A global's name in dotted (preferred) or `module name` / `module:name` form."""
    pats = []
    for n in names:
        mod, _, attr = n.rpartition(".")
        pats.append(re.compile(re.escape(mod) + r"[.: ]" + re.escape(attr), re.I))
    return pats


# ---- the cases ------------------------------------------------------------------------------------


def build_cases(d, marker):
    """Returns [(name, path, phrases)] of hostile files and [(name, path)] of controls."""
    hostile = []
    controls = []
    n = [0]

    def path(name):
        # Neutral file names: the tool's message may quote the path, and the phrase check
        # must not be satisfied by the case's name.
        n[0] += 1
        return os.path.join(d, "case%03d.pt" % n[0])

    def add_zip(name, pkl, phrases, **kw):
        p = path(name + ".pt")
        zip_archive(p, pkl, **kw)
        hostile.append((name, p, phrases))

    def add_raw(name, data, phrases):
        p = path(name)
        with open(p, "wb") as f:
            f.write(data)
        hostile.append((name, p, phrases))

    cmd = "touch " + marker
    good_t = tensor("FloatStorage", "0", 3, 0, (3,), (1,))
    good_rec = {"0": f32([1.0, 2.0, 3.0])}

    # -- controls (must be accepted) --
    p = path("control_valid.pt")
    zip_archive(p, P2 + dict_of([("w", good_t), ("n", i(7))]) + STOP, records=good_rec)
    controls.append(("control: valid pickle in a Python-zipfile archive", p))
    p = path("control_sparse_memo.pt")
    zip_archive(p, P2 + b"]" + b"r" + struct.pack("<I", 0xFFFFFFF0) + b"K\x01a" + b"j" + struct.pack("<I", 0xFFFFFFF0) + b"\x86" + STOP)
    controls.append(("control: sparse memo index 0xFFFFFFF0 (LONG_BINPUT/LONG_BINGET)", p))
    p = path("control_memo_reuse.pt")
    t = torch.arange(4.0)
    torch.save({"s": ["cpu"] * 300000, "t": [t] * 1000, "d": [{"k": 1}] * 1000}, p)
    controls.append(("control: legit memo reuse by torch.save (300k x one str, 1000 x one tensor)", p))

    # -- real torch files, truncated / corrupted --
    real = path("real.pt")
    torch.save({"a": torch.arange(200, dtype=torch.float32), "b": torch.ones(3, 4, dtype=torch.int64), "lr": 0.1, "epoch": 3}, real)
    data = open(real, "rb").read()
    L = len(data)
    cuts = sorted(set([1, 2, 3, 4, 10, 30, 63, 64, 100, L // 4, L // 3, L // 2, 2 * L // 3, 3 * L // 4, L - 98, L - 76, L - 56, L - 22, L - 10, L - 1]))
    for c in cuts:
        add_raw("truncated_at_%d_of_%d.pt" % (c, L), data[:c], TRUNC)
    with zipfile.ZipFile(real) as z:
        infos = {x.filename.split("/", 1)[1]: x for x in z.infolist()}
        real_root = z.infolist()[0].filename.split("/", 1)[0]
    for rec in ("data/0", "data.pkl"):
        info = infos[rec]
        hdr = data[info.header_offset : info.header_offset + 30]
        nlen, xlen = struct.unpack("<HH", hdr[26:30])
        off = info.header_offset + 30 + nlen + xlen + min(5, info.file_size - 1)
        flipped = bytearray(data)
        flipped[off] ^= 0x01
        add_raw("flipped_byte_in_%s.pt" % rec.replace("/", "_"), bytes(flipped), ["crc"])

    # zip-structure lies on the real file
    z64 = data.rfind(b"PK\x06\x06")
    eocd = data.rfind(b"PK\x05\x06")
    assert z64 >= 0 and eocd >= 0, "torch's file has no zip64 end record?"
    b = bytearray(data)
    b[z64 + 24 : z64 + 40] = struct.pack("<QQ", 2**40, 2**40)
    b[eocd + 8 : eocd + 12] = struct.pack("<HH", 0xFFFF, 0xFFFF)
    add_raw("zip64_eocd_claims_2e40_entries.pt", bytes(b), ["entr", "central directory", "zip", "corrupt", "limit", "too many", "truncat", "record"])
    # central-directory entry of data/0: local header offset far beyond the file
    name0 = (real_root + "/data/0").encode()
    pos = data.find(b"PK\x01\x02")
    made = False
    while pos >= 0:
        nl = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + nl] == name0:
            b = bytearray(data)
            b[pos + 42 : pos + 46] = struct.pack("<I", 0x7FFFFF00)
            add_raw("cd_local_offset_beyond_file.pt", bytes(b), ["offset", "beyond", "outside", "past", "truncat", "local header", "end of file", "out of range", "bounds", "eof"])
            made = True
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    assert made, "central directory entry %r not found" % name0

    # legacy stream truncated
    leg = path("real_legacy.pt")
    torch.save({"a": torch.arange(100, dtype=torch.float64), "s": "x"}, leg, _use_new_zipfile_serialization=False)
    ldata = open(leg, "rb").read()
    for c in sorted(set([5, 20, 60, len(ldata) // 2, len(ldata) - 100, len(ldata) - 1])):
        add_raw("legacy_truncated_at_%d_of_%d.pt" % (c, len(ldata)), ldata[:c], TRUNC + ["legacy"])

    # -- refused globals / opcodes --
    add_zip("global_os_system", P2 + glob("os", "system") + tup([u(cmd)]) + b"R" + STOP, rx("os.system"))
    add_zip("global_posix_system", P2 + glob("posix", "system") + tup([u(cmd)]) + b"R" + STOP, rx("posix.system"))
    add_zip("global_builtins_eval", P2 + glob("builtins", "eval") + tup([u("__import__('os').system(%r)" % cmd)]) + b"R" + STOP, rx("builtins.eval"))
    add_zip(
        "global___builtin___getattr",
        P2 + glob("__builtin__", "getattr") + tup([glob("collections", "OrderedDict"), u("__init__")]) + b"R" + STOP,
        rx("__builtin__.getattr", "builtins.getattr"),
    )
    add_zip(
        "global_os_system_late",
        P2 + dict_of([("w", good_t), ("x", glob("os", "system") + tup([u(cmd)]) + b"R")]) + STOP,
        rx("os.system"),
        records=good_rec,
    )
    add_zip("opcode_INST", P2 + MARK + u(cmd) + b"ios\nsystem\n" + STOP, ["inst", "opcode", "os.system", "os system"])
    add_zip("opcode_OBJ", P2 + MARK + glob("os", "system") + u(cmd) + b"o" + STOP, ["obj", "opcode", "os.system", "os system"])
    add_zip(
        "opcode_STACK_GLOBAL_protocol4",
        b"\x80\x04" + b"\x8c\x02os\x94" + b"\x8c\x06system\x94" + b"\x93\x94" + b"\x8c" + bytes([len(cmd)]) + cmd.encode() + b"\x85R" + STOP,
        ["stack_global", "opcode", "protocol", "os.system"],
    )
    add_zip("opcode_unknown_0xff", P2 + b"\xff" + STOP, ["opcode", "0xff", "unknown", "invalid"])
    p = path("whole_module_pickled.pt")
    torch.save(torch.nn.Linear(2, 2), p)
    hostile.append(("whole_nn_Module_pickled (torch.save(nn.Linear))", p, ["torch.nn.modules.linear", "linear"]))

    # -- _rebuild_tensor_v2 misuse --
    st = pid("FloatStorage", "0", 3)
    add_zip("rebuild_v2_5_args", P2 + tensor(None, None, None, None, None, None, args=[st, i(0), ints((3,)), ints((1,)), b"\x89"]) + STOP, REBUILD_ARGS, records=good_rec)
    add_zip("rebuild_v2_3_args", P2 + tensor(None, None, None, None, None, None, args=[st, i(0), ints((3,))]) + STOP, REBUILD_ARGS, records=good_rec)
    add_zip(
        "rebuild_v2_size_is_str",
        P2 + tensor(None, None, None, None, None, None, args=[st, i(0), u("3"), ints((1,)), b"\x89", odict()]) + STOP,
        REBUILD_ARGS + ["type", "expected", "size", "tuple"],
        records=good_rec,
    )
    add_zip(
        "rebuild_v2_offset_is_float",
        P2 + tensor(None, None, None, None, None, None, args=[st, b"G" + struct.pack(">d", 0.0), ints((3,)), ints((1,)), b"\x89", odict()]) + STOP,
        REBUILD_ARGS + ["type", "expected", "offset", "int"],
        records=good_rec,
    )
    add_zip(
        "rebuild_v2_storage_is_int",
        P2 + tensor(None, None, None, None, None, None, args=[i(5), i(0), ints((3,)), ints((1,)), b"\x89", odict()]) + STOP,
        REBUILD_ARGS + ["type", "expected", "storage"],
        records=good_rec,
    )
    add_zip(
        "rebuild_v2_args_not_tuple",
        P2 + glob("torch._utils", "_rebuild_tensor_v2") + b"]" + b"R" + STOP,
        REBUILD_ARGS + ["tuple", "reduce"],
    )

    # -- container / stack misuse --
    add_zip("SETITEM_on_list", P2 + b"]" + u("a") + i(1) + b"s" + STOP, ["setitem", "list", "dict"])
    add_zip("SETITEMS_on_tuple", P2 + b")" + MARK + u("a") + i(1) + b"u" + STOP, ["setitem", "tuple", "dict"])
    add_zip("APPEND_on_dict", P2 + b"}" + i(1) + b"a" + STOP, ["append", "dict", "list"])
    add_zip("APPENDS_on_str", P2 + u("s") + MARK + i(1) + i(2) + b"e" + STOP, ["append", "str", "list"])
    add_zip("REDUCE_non_callable", P2 + u("a") + b")R" + STOP, ["reduce", "callable", "call", "str"])
    add_zip("BUILD_on_list", P2 + b"]" + b"}" + b"b" + STOP, ["build", "state", "list"])
    add_zip("stack_underflow", P2 + b"s" + STOP, ["stack", "underflow", "empty", "setitem"])
    add_zip("no_STOP", P2 + b"]" + i(1) + b"a", ["stop", "end", "truncat", "unexpected", "eof"])
    add_zip("BINGET_undefined", P2 + b"h\x05" + STOP, ["memo", "binget", "undefined"])
    add_zip("persistent_id_wrong_tag", P2 + tensor(None, None, None, None, None, None, args=[pid("FloatStorage", "0", 3, tag="module"), i(0), ints((3,)), ints((1,)), b"\x89", odict()]) + STOP, ["persistent", "module", "tag", "storage"], records=good_rec)
    add_zip("unknown_storage_class", P2 + tensor("FooStorage", "0", 3, 0, (3,), (1,)) + STOP, ["foostorage"], records=good_rec)

    # -- storage / view lies --
    add_zip("storage_numel_too_small_for_record", P2 + tensor("FloatStorage", "0", 2, 0, (2,), (1,)) + STOP, SIZE_LIE, records=good_rec)
    add_zip("storage_numel_too_big_for_record", P2 + tensor("FloatStorage", "0", 10, 0, (3,), (1,)) + STOP, SIZE_LIE, records=good_rec)
    add_zip("storage_record_not_multiple_of_itemsize", P2 + tensor("LongStorage", "0", 1, 0, (1,), (1,)) + STOP, SIZE_LIE, records={"0": b"\x01" * 12})
    add_zip("view_offset_oob", P2 + tensor("FloatStorage", "0", 3, 5, (1,), (1,)) + STOP, OOB, records=good_rec)
    add_zip("view_offset_oob_empty_view", P2 + tensor("FloatStorage", "0", 3, 9, (0,), (1,)) + STOP, OOB, records=good_rec)
    add_zip("view_size_oob", P2 + tensor("FloatStorage", "0", 3, 0, (4,), (1,)) + STOP, OOB, records=good_rec)
    add_zip("view_stride_oob", P2 + tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 2)) + STOP, OOB, records={"0": f32([0.0] * 6)})
    add_zip("view_stride_overflow_int64", P2 + tensor("FloatStorage", "0", 3, 0, (3,), (2**62,)) + STOP, OOB, records=good_rec)
    add_zip("view_numel_overflow", P2 + tensor("FloatStorage", "0", 3, 0, (2**40, 2**40, 2**40), (0, 0, 0)) + STOP, OOB + ["numel", "size", "elements"], records=good_rec)
    add_zip("view_negative_stride", P2 + tensor("FloatStorage", "0", 3, 2, (3,), (-1,)) + STOP, ["negative", "stride"], records=good_rec)
    add_zip("view_negative_offset", P2 + tensor("FloatStorage", "0", 3, -1, (1,), (1,)) + STOP, ["negative", "offset"], records=good_rec)
    add_zip("view_negative_size", P2 + tensor("FloatStorage", "0", 3, 0, (-1,), (1,)) + STOP, ["negative", "size", "shape"], records=good_rec)
    add_zip("storage_negative_numel", P2 + tensor("FloatStorage", "0", -3, 0, (1,), (1,)) + STOP, ["negative", "numel", "size"], records=good_rec)
    add_zip("view_rank_mismatch", P2 + tensor("FloatStorage", "0", 3, 0, (1, 3), (1,)) + STOP, ["dimension", "stride", "rank", "mismatch", "length"], records=good_rec)
    add_zip("missing_data_record", P2 + tensor("FloatStorage", "0", 3, 0, (3,), (1,)) + STOP, ["data/0", "missing", "not found", "no record", "locat"], records={})
    add_zip(
        "same_key_two_storage_classes",
        P2 + b"]" + MARK + tensor("FloatStorage", "0", 2, 0, (2,), (1,)) + tensor("LongStorage", "0", 1, 0, (1,), (1,)) + b"e" + STOP,
        ["class", "dtype", "differ", "conflict", "inconsistent", "mismatch", "different", "type"],
        records={"0": f32([1.0, 2.0])},
    )
    add_zip(
        "same_key_two_numels",
        P2 + b"]" + MARK + tensor("FloatStorage", "0", 3, 0, (3,), (1,)) + tensor("FloatStorage", "0", 2, 0, (2,), (1,)) + b"e" + STOP,
        ["numel", "size", "differ", "conflict", "inconsistent", "mismatch", "different"],
        records=good_rec,
    )

    # -- huge lengths --
    add_zip("BINUNICODE_len_2e31m1_short_file", P2 + b"X" + struct.pack("<I", 2**31 - 1) + b"abc" + STOP, HUGE_LEN)
    add_zip("BINUNICODE_len_0xffffffff_short_file", P2 + b"X" + struct.pack("<I", 0xFFFFFFFF) + b"abc" + STOP, HUGE_LEN)
    long4 = ["long4", "opcode", "truncat", "length", "too long", "exceed", "limit", "end of", "negative", "size", "eof"]
    add_zip("LONG4_len_2e31m1_short_file", P2 + b"\x8b" + struct.pack("<I", 2**31 - 1) + b"\x01\x02" + STOP, long4)
    add_zip("LONG4_len_2e31_short_file", P2 + b"\x8b" + struct.pack("<I", 2**31) + b"\x01\x02" + STOP, long4)
    add_zip("LONG1_len_255_short_file", P2 + b"\x8a\xff" + b"\x01\x02", HUGE_LEN + ["long1"])
    add_zip("BINPERSID_key_len_huge", P2 + MARK + u("storage") + glob("torch", "FloatStorage") + b"X" + struct.pack("<I", 0x7FFFFFF0) + b"0", HUGE_LEN)

    # -- structural bombs --
    N = 200000
    add_zip("deep_nesting_200k_lists", P2 + b"]" * N + b"a" * (N - 1) + STOP, DEPTH)
    add_zip("deep_nesting_200k_dicts", P2 + b"}" + (i(0) + b"}") * (N - 1) + b"s" * (N - 1) + STOP, DEPTH)
    add_zip("deep_nesting_200k_tuples", P2 + b")" + b"\x85" * N + STOP, DEPTH)
    add_zip("deep_nesting_200k_lists_memo", P2 + (b"]q\x00") * N + b"a" * (N - 1) + STOP, DEPTH)
    add_zip("self_referencing_list", P2 + b"]q\x00h\x00a" + STOP, CYCLE)
    add_zip("self_referencing_dict", P2 + b"}q\x00" + u("me") + b"h\x00s" + STOP, CYCLE)
    add_zip("indirect_cycle_list_dict", P2 + b"]q\x00" + b"}q\x01" + u("k") + b"h\x00s" + b"a" + STOP, CYCLE)
    add_zip("self_referencing_list_in_tensor_dict", P2 + dict_of([("w", good_t), ("l", b"]q\x05h\x05a")]) + STOP, CYCLE, records=good_rec)
    # Billion laughs: level k is a list of 10 memo references to level k-1. All levels are
    # collected in one outer list so that the pickle is well-formed (one value at STOP).
    laughs = P2 + b"]" + MARK + b"]" + MARK + i(0) * 10 + b"e" + b"q\x00"
    for lvl in range(1, 11):
        laughs += b"]" + MARK + (b"h" + bytes([lvl - 1])) * 10 + b"e" + b"q" + bytes([lvl])
    add_zip("billion_laughs_memo_10e10", laughs + b"e" + STOP, LAUGHS)
    laughs_t = P2 + b"]" + MARK + tensor("FloatStorage", "0", 3, 0, (3,), (1,)) + b"q\x00"
    for lvl in range(1, 10):
        laughs_t += b"]" + MARK + (b"h" + bytes([lvl - 1])) * 10 + b"e" + b"q" + bytes([lvl])
    add_zip("billion_laughs_of_tensors_10e9", laughs_t + b"e" + STOP, LAUGHS, records=good_rec)
    # Amplification through a memoized string: 2-byte BINGETs of a 1 MiB str, 2**20 times.
    amp = P2 + b"]" + MARK + u("x" * (1 << 20)) + b"q\x00" + b"h\x00" * (1 << 20) + b"e" + STOP
    add_zip("memo_amplification_1MiB_str_x_1M", amp, LAUGHS)

    # -- archive-level problems --
    p = path("torchscript.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)
    with zipfile.ZipFile(p) as z:
        assert any(n.endswith("constants.pkl") for n in z.namelist()), "torch.jit.save wrote no constants.pkl?"
    hostile.append(("torchscript_archive", p, ["torchscript", "constants.pkl", "jit", "script"]))
    p = path("archive.tar")
    with tarfile.open(p, "w") as t:
        for name, payload in (("storages", b"\x80\x02K\x00."), ("tensors", b"\x80\x02K\x00."), ("pickle", b"\x80\x02}.")):
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            t.addfile(ti, io.BytesIO(payload))
    hostile.append(("tar_archive", p, ["tar"]))
    rnd = random.Random(1234)
    rb = bytes(rnd.randrange(256) for _ in range(4096))
    rb = b"\x13\x37" + rb[2:]
    add_raw("random_bytes.bin", rb, ["not a", "unrecognized", "unknown", "magic", "format", "zip", "legacy", "invalid", "pickle"])
    add_raw("empty_file.pt", b"", ["empty", "too short", "truncat", "0 bytes", "zero", "not a", "unrecognized", "unknown format", "size 0"])
    add_raw("legacy_stream_os_system.pt", legacy_stream(P2 + glob("os", "system") + tup([u(cmd)]) + b"R" + STOP), rx("os.system"))
    add_raw("legacy_bad_magic.pt", pickle.dumps(12345, protocol=2) + b"\x80\x02K\x00.", ["magic", "not a", "unrecognized", "unknown", "format", "legacy", "invalid"])
    good_pkl = P2 + dict_of([("w", good_t)]) + STOP
    add_zip("entry_outside_root", good_pkl, ["outside", "root", "other/x", "folder", "directory", "prefix"], records=good_rec, extra_entries=[("other/x", b"x")])
    add_zip("version_11", good_pkl, ["version"], records=good_rec, version=b"11\n")
    add_zip("version_missing", good_pkl, ["version"], records=good_rec, version=None)
    add_zip("data_pkl_missing", None, ["data.pkl"], records=good_rec)
    add_zip("first_entry_without_slash", good_pkl, ["subdirectory", "root", "folder", "directory", "prefix", "first"], records=good_rec, first=("toplevel_file", b"x"))
    hostile.append(("nonexistent_file", os.path.join(d, "case999.pt"), ["no such", "not found", "cannot open", "can't open", "does not exist", "open", "exist"]))
    hostile.append(("directory_as_file", d, ["directory", "not a regular", "read", "open", "file"]))
    return hostile, controls


def check_refusal(tool, cmd, name, path, phrases, d, marker, rlimit):
    out = os.path.join(d, "converted_out.pth")
    if os.path.exists(out):
        os.unlink(out)
    if cmd == "inspect":
        res = oracle.run_tool(tool, ["inspect", path], timeout=TIMEOUT, rlimit_as=rlimit)
    else:
        res = oracle.run_tool(tool, ["convert", path, out], timeout=TIMEOUT, rlimit_as=rlimit)
    if os.path.exists(marker):
        os.unlink(marker)  # so that later checks are not blamed
        raise AssertionError("a shell command embedded in the file was EXECUTED (it created %s); %s" % (marker, res.describe()))
    oracle.assert_clean_refusal(res, phrases, MAX_RSS_MIB)
    assert not os.path.exists(out), "failed convert left an output file behind"


def check_control(tool, path, rlimit):
    obj = torch.load(path, map_location="cpu", weights_only=True)  # controls are safe by construction
    res = oracle.run_tool(tool, ["inspect", "--json", path], timeout=TIMEOUT, rlimit_as=rlimit)
    oracle.assert_ok(res)
    oracle.assert_json_equal(oracle.expected_json(obj), oracle.parse_tool_json(res.stdout))
    assert res.maxrss_kib < MAX_RSS_MIB * 1024, "peak RSS %.1f MiB" % (res.maxrss_kib / 1024.0)


def main():
    r = oracle.Runner("test_refusals: hostile files are refused cleanly")
    tool = oracle.require_tool()
    rlimit = oracle.default_rlimit_as()
    with tempfile.TemporaryDirectory(prefix="sgckpt_ref_") as d:
        marker = os.path.join(d, "PWNED_marker")
        files = os.path.join(d, "files")
        os.mkdir(files)
        cases = {}
        r.check("build hostile corpus", lambda: cases.update(zip(("hostile", "controls"), build_cases(files, marker))))
        for name, path in cases.get("controls", []):
            r.check(name, check_control, tool, path, rlimit)
        for name, path, phrases in cases.get("hostile", []):
            for cmd in ("inspect", "convert"):
                r.check("%s refuses %s" % (cmd, name), check_refusal, tool, cmd, name, path, phrases, d, marker, rlimit)
    r.finish()


if __name__ == "__main__":
    main()
