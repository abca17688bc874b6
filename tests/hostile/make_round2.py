#!/usr/bin/env python3
"""Writes the round-2 hostile family: tests/hostile/round2/*.pt and round2/MANIFEST.tsv.

    /usr/bin/python3 tests/hostile/make_round2.py [OUT_DIR]      (default: tests/hostile/round2)
    /usr/bin/python3 tests/hostile/make_round2.py --probe [DIR]  (load every file with torch, print)

Every file is generated here from make_corpus.py's pickle assembler and torch/miniz-exact zip
writer (nothing is hand-edited), deterministically. MANIFEST.tsv has one line per file:

    file<TAB>refuse<TAB>kind<TAB>phrase
                                   loading must throw sgckpt::Error of that kind (docs/errors.md)
                                   whose message contains the phrase (case-insensitive); the CLI
                                   exits 1 with one line
    file<TAB>accept                loading must succeed in bounded time and memory (the tools
                                   may still refuse an output they cannot bound, cleanly);
                                   tests/python/test_differential.py compares it with torch

Families: rec_ (recursion through _rebuild_from_type_v2), size_ (numel * itemsize wrapping
2**64), diff_ (files torch and a naive reader read differently), amp_ (algorithmic, memory
and output amplification), torch_refuses_ (records that newer torch releases are said to
check; not verified here: torch 1.13 reads both files).

The comment above each file says what Debian's torch 1.13 (`torch.load(f, weights_only=True,
map_location='cpu')`, /usr/bin/python3) does with it, as observed with `--probe`. Things torch
1.13's weights_only unpickler does not have at all, so that it refuses them before the attack
matters: the globals torch._tensor._rebuild_from_type_v2 and
torch._utils._rebuild_parameter_with_state, and the opcodes LONG4, BINSTRING, POP, LIST.
"""
import os
import struct
import sys
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_corpus import FALSE, G, I, NONE, ODICT, PROTO2, STOP, Rec, S, T, Zip, checkpoint, pid, rebuild, u32  # noqa: E402

F6 = struct.pack("<6f", *range(6))  # storage '0': 0 1 2 3 4 5
G6 = struct.pack("<6f", *range(100, 106))  # storage '1': 100 ... 105

entries = []  # (file name, bytes, expectation: ("refuse", phrase) or ("accept",))


KINDS = ("io", "truncated", "corrupt", "refused", "limit", "schema", "mismatch", "usage")  # docs/errors.md


def refuse(name, data, phrase, kind):
    assert isinstance(data, (bytes, bytearray)), name
    assert "\t" not in phrase and "\n" not in phrase
    assert kind in KINDS, (name, kind)
    entries.append((name, bytes(data), ("refuse", kind, phrase)))


def accept(name, data):
    assert isinstance(data, (bytes, bytearray)), name
    entries.append((name, bytes(data), ("accept",)))


def deflate(data):
    """Raw deflate (zip method 8), level 9: deterministic for a given zlib."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return c.compress(data) + c.flush()


def drec(name, data):
    """A deflated record (method 8), as torch/miniz reads them."""
    return Rec(name, data, method=8, compressed=deflate(data))


def archive(recs):
    return bytes(Zip(recs).bytes)


def ckpt(pkl, storages=None, deflate_pkl=False, deflate_storages=(), extra=(), version=b"3\n"):
    """A torch-style checkpoint around `pkl`; chosen records deflated."""
    recs = checkpoint(pkl, storages if storages is not None else {"0": F6}, version=version, extra=extra)
    out = []
    for r in recs:
        name = r.name.decode("utf-8")
        key = name[len("archive/data/"):] if name.startswith("archive/data/") else None
        if (deflate_pkl and name == "archive/data.pkl") or (key is not None and key in deflate_storages):
            out.append(drec(name, r.data))
        else:
            out.append(r)
    return archive(out)


def T4(*items):
    return T(*items)  # MARK ... TUPLE for 4+ items (make_corpus.T)


def state_dict(*pairs):
    """data.pkl of a plain dict {key: value, ...} (already encoded values), SETITEM each."""
    return PROTO2 + b"}" + b"".join(S(k) + v + b"s" for k, v in pairs) + STOP


def tensor6(key="0", size=(6,), stride=(1,), cls="FloatStorage", numel=6, offset=0):
    return rebuild(pid(key, numel, cls), offset, size, stride)


REBUILD_FROM_TYPE = G("torch._tensor", "_rebuild_from_type_v2")
REBUILD_V2 = G("torch._utils", "_rebuild_tensor_v2")


def rebuild_args(key="0", numel=6, size=(6,), stride=(1,)):
    """The argument tuple of _rebuild_tensor_v2 (storage, offset, size, stride, False, OrderedDict())."""
    return b"(" + pid(key, numel) + I(0) + T(*[I(s) for s in size]) + T(*[I(s) for s in stride]) + FALSE + ODICT + b"t"


def build():
    # ================================================================== 1. recursion
    # _rebuild_from_type_v2(F, Tensor, (F, Tensor, (... (_rebuild_tensor_v2, Tensor, (args), {}) ...), {}), {})
    # with F = _rebuild_from_type_v2, 20000 calls deep. Level k's argument tuple is
    # MARK F(memo 0) Tensor(memo 1) <level k+1> {} TUPLE: 7 bytes a level.
    # torch 1.13: refuses (weights_only: "Unsupported class torch._tensor._rebuild_from_type_v2").
    depth = 20_000
    innermost = b"(" + REBUILD_V2 + b"h\x01" + rebuild_args() + b"}" + b"t"
    levels = b"(h\x00h\x01" * (depth - 2)  # levels 1 .. depth-2 (0 and depth-1 are written out)
    body = levels + innermost + b"}t" * (depth - 2)
    outer_args = b"(" + b"h\x00" + G("torch", "Tensor") + b"q\x01" + body + b"}" + b"t"
    pkl = PROTO2 + b"}" + S("w") + REBUILD_FROM_TYPE + b"q\x00" + outer_args + b"R" + b"s" + STOP
    refuse("rec_rebuild_from_type_nested.pt", ckpt(pkl), "tensor rebuild function", "refused")

    # _rebuild_from_type_v2(collections.OrderedDict, torch.Tensor, (), {}): the "tensor" is a dict.
    # torch 1.13: refuses (Unsupported class torch._tensor._rebuild_from_type_v2).
    pkl = PROTO2 + b"}" + S("w") + REBUILD_FROM_TYPE + b"(" + G("collections", "OrderedDict") + G("torch", "Tensor") \
        + b")" + b"}" + b"tR" + b"s" + STOP
    refuse("rec_rebuild_from_type_yields_dict.pt", ckpt(pkl), "tensor rebuild function", "refused")

    # ================================================================== 2. numel * itemsize wraps 2**64
    # float32, storage of 1 element, shape (2**62,) stride (0,): numel * 4 = 2**64 = 0 (mod 2**64).
    # torch 1.13: reads it: an expanded float32 tensor of shape (4611686018427387904,) stride (0,)
    # over the 1-element storage (set_ only needs offset + sum((size-1)*stride) + 1 = 1 element).
    f1 = struct.pack("<f", 1.5)
    refuse("size_stride0_wraps.pt",
           ckpt(state_dict(("w", tensor6(numel=1, size=(2**62,), stride=(0,)))), {"0": f1}), "too large", "limit")
    # shape (2**31, 2**31) strides (0, 0): numel 2**62, * 4 wraps to 0.
    # torch 1.13: reads it (shape (2147483648, 2147483648), strides (0, 0)).
    refuse("size_stride0_2d_wraps.pt",
           ckpt(state_dict(("w", tensor6(numel=1, size=(2**31, 2**31), stride=(0, 0)))), {"0": f1}), "too large", "limit")
    # float64 shape (2**61,) stride (0,): numel fits in 63 bits, numel * 8 = 2**64 wraps to 0.
    # torch 1.13: reads it (float64, shape (2305843009213693952,), stride (0,)).
    refuse("size_numel_times_itemsize_63bits.pt",
           ckpt(state_dict(("w", tensor6(numel=1, size=(2**61,), stride=(0,), cls="DoubleStorage"))),
                {"0": struct.pack("<d", 2.5)}), "too large", "limit")

    # ================================================================== 3. differentials with torch
    # {"w": t} then BUILD on t with the legacy 4-tuple state (storage '1', 0, (6,), (1,)).
    # torch 1.13: reads {"w": [100., ..., 105.]} (weights_only's BUILD calls inst.set_(*state):
    # the weights are silently replaced by storage '1').
    pkl = PROTO2 + b"}" + S("w") + tensor6(size=(2, 3), stride=(3, 1)) + T4(pid("1", 6), I(0), T(I(6)), T(I(1))) + b"b" \
        + b"s" + STOP
    refuse("diff_build_on_tensor.pt", ckpt(pkl, {"0": F6, "1": G6}), "BUILD on a tensor", "refused")
    # BUILD with state {} on a tensor.
    # torch 1.13: reads {"w": tensor([])} (inst.set_(*{}) is set_() with no arguments: the
    # tensor becomes empty, float32 shape (0,)).
    pkl = PROTO2 + b"}" + S("w") + tensor6() + b"}" + b"b" + b"s" + STOP
    refuse("diff_build_on_tensor_dict_state.pt", ckpt(pkl), "BUILD on a tensor", "refused")
    # BUILD on a Parameter (torch._utils._rebuild_parameter(t, False, OrderedDict())) with the
    # legacy 4-tuple state (storage '1', 0, (6,), (1,)).
    # torch 1.13: reads {"w": Parameter([100., ..., 105.])} (Parameter.__setstate__ is
    # Tensor.__setstate__: a 4-tuple is passed to set_).
    param = G("torch._utils", "_rebuild_parameter") + b"(" + tensor6(size=(2, 3), stride=(3, 1)) + FALSE + ODICT + b"tR"
    pkl = PROTO2 + b"}" + S("w") + param + T4(pid("1", 6), I(0), T(I(6)), T(I(1))) + b"b" + b"s" + STOP
    refuse("diff_build_on_parameter.pt", ckpt(pkl, {"0": F6, "1": G6}), "BUILD on a tensor", "refused")
    # The same with a dict state {"requires_grad": True}.
    # torch 1.13: refuses (Tensor.__setstate__ unpacks the 1-entry dict into 3 names: ValueError).
    pkl = PROTO2 + b"}" + S("w") + param + b"}" + S("requires_grad") + b"\x88" + b"s" + b"b" + b"s" + STOP
    refuse("diff_build_on_parameter_dict_state.pt", ckpt(pkl), "BUILD on a tensor", "refused")
    # _rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, (args), {"data": other_tensor}).
    # torch 1.13: refuses (Unsupported class torch._tensor._rebuild_from_type_v2; 1.13's
    # _rebuild_from_type_v2 itself returns func(*args) for new_type Tensor, ignoring the state,
    # and applies it with setattr (t.data = other_tensor) for other types).
    pkl = PROTO2 + b"}" + S("w") + REBUILD_FROM_TYPE + b"(" + REBUILD_V2 + G("torch", "Tensor") + rebuild_args() \
        + b"}" + S("data") + tensor6(key="1") + b"s" + b"tR" + b"s" + STOP
    refuse("diff_from_type_state.pt", ckpt(pkl, {"0": F6, "1": G6}), "non-empty state", "refused")
    # torch._utils._rebuild_parameter_with_state(t, False, OrderedDict(), {"data": other_tensor}).
    # torch 1.13: refuses (Unsupported class torch._utils._rebuild_parameter_with_state: 1.13's
    # torch._utils has no such function).
    pkl = PROTO2 + b"}" + S("w") + G("torch._utils", "_rebuild_parameter_with_state") + b"(" + tensor6() + FALSE + ODICT \
        + b"}" + S("data") + tensor6(key="1") + b"s" + b"tR" + b"s" + STOP
    refuse("diff_param_with_state.pt", ckpt(pkl, {"0": F6, "1": G6}), "non-empty state", "refused")

    # Names that differ only in letter case: miniz (torch's zip reader) looks names up
    # case-insensitively, so which record torch reads depends on its sorted directory.
    pkl_a = state_dict(("w", tensor6()))
    pkl_b = state_dict(("w", tensor6(key="1")))
    # archive/data.pkl ({"w": storage 0}) and archive/Data.pkl ({"w": storage 1}).
    # torch 1.13: reads {"w": [100., ..., 105.]}: archive/Data.pkl, the second record (with the
    # two records swapped it reads archive/data.pkl, again the second: whatever miniz's binary
    # search over its case-insensitively sorted directory lands on).
    recs = [Rec("archive/data.pkl", pkl_a), Rec("archive/Data.pkl", pkl_b), Rec("archive/data/0", F6),
            Rec("archive/data/1", G6), Rec("archive/version", b"3\n")]
    refuse("diff_zip_case_data_pkl.pt", archive(recs), "letter case", "refused")
    # archive/data/0 (0..5) and archive/DATA/0 (100..105).
    # torch 1.13: reads {"w": [100., ..., 105.]}: archive/DATA/0 (the second record).
    recs = [Rec("archive/data.pkl", pkl_a), Rec("archive/data/0", F6), Rec("archive/DATA/0", G6),
            Rec("archive/version", b"3\n")]
    refuse("diff_zip_case_storage.pt", archive(recs), "letter case", "refused")
    # archive/byteorder = "little" and archive/BYTEORDER = "big".
    # torch 1.13: reads {"w": [0., ..., 5.]} (1.13's torch.load never looks at a byteorder record).
    refuse("diff_zip_case_byteorder.pt",
           ckpt(pkl_a, extra=[("byteorder", b"little"), ("BYTEORDER", b"big")]), "letter case", "refused")
    # archive/version = "3\n" and archive/VERSION = "99\n" (a version torch does not support).
    # torch 1.13: reads {"w": [0., ..., 5.]}: it read archive/version, the FIRST record here
    # (with VERSION written first it reads VERSION and refuses: "Attempted to read a PyTorch
    # file with version 99, but the maximum supported version for reading is 10").
    refuse("diff_zip_case_version.pt", ckpt(pkl_a, extra=[("VERSION", b"99\n")]), "letter case", "refused")
    # archive/version = "3\n", archive/.data/version = "2\n".
    # torch 1.13: reads {"w": [0., ..., 5.]}: it uses .data/version when present and ignores
    # version (checked: version 3 + .data/version 99 is refused for version 99; version 99 +
    # .data/version 3 reads).
    refuse("diff_two_version_records.pt", ckpt(pkl_a, extra=[(".data/version", b"2\n")]), "disagree", "refused")

    # Dict keys with bytes that are not UTF-8.
    # SHORT_BINSTRING b"w\xff".
    # torch 1.13: refuses (UnicodeDecodeError: torch.load decodes BINSTRINGs as utf-8, strict).
    pkl = PROTO2 + b"}" + b"U\x02w\xff" + tensor6() + b"s" + STOP
    refuse("diff_binstring_invalid_utf8.pt", ckpt(pkl), "UTF-8", "refused")
    # BINUNICODE b"\xc3\x28".
    # torch 1.13: refuses (UnicodeDecodeError, "invalid continuation byte").
    pkl = PROTO2 + b"}" + b"X" + u32(2) + b"\xc3\x28" + tensor6() + b"s" + STOP
    refuse("diff_binunicode_invalid_utf8.pt", ckpt(pkl), "UTF-8", "corrupt")
    # {"é" (SHORT_BINSTRING c3 a9): tensor A, "é" (BINUNICODE): tensor B}: one key.
    # torch 1.13: reads {"é": [100., ..., 105.]} (B; one key: both decode to the same str).
    pkl = PROTO2 + b"}" + b"U\x02\xc3\xa9" + tensor6() + b"s" + S("\u00e9") + tensor6(key="1") + b"s" + STOP
    accept("diff_binstring_vs_binunicode_same_key.pt", ckpt(pkl, {"0": F6, "1": G6}))

    # ================================================================== 4. algorithmic amplification
    # {"w": t, "d": {k * B: 0 for k in 1..170000}} with B = 172933, the bucket count libstdc++'s
    # std::unordered_map<int64_t, ...> reaches when it grows past 85229 entries (13, 29, ...,
    # 42043, 85229, 172933; reserve(170000) also gives 172933). std::hash<int64_t> is the
    # identity and the bucket is key % bucket_count: from entry 85230 on, every key lands in one
    # bucket and each insert walks a chain of 85k-170k keys. Measured (g++ -O2, this machine):
    # inserting these keys 31 s, 1..170000 0.01 s (also multiplying by 85229, the previous
    # bucket count: 33 s, but 7-byte keys make the file 1 MB; with 5-byte keys it is ~650 KB
    # deflated: the products are incompressible). data.pkl is deflated.
    # torch 1.13: reads it (a dict of 170000 int keys, values 0; LONG1 keys).
    B = 172933
    items = []
    for k in range(1, 170_001):
        items.append(I(k * B) + b"K\x00")
    d = b"}"
    for i in range(0, len(items), 1000):  # SETITEMS in batches of 1000, like Python's pickler
        d += b"(" + b"".join(items[i:i + 1000]) + b"u"
    pkl = PROTO2 + b"}" + S("w") + tensor6() + b"s" + S("d") + d + b"s" + STOP
    accept("amp_dict_int_collisions.pt", ckpt(pkl, deflate_pkl=True))

    # A list of 200 LONG4 ints of 4096 bytes each (the reader's limit is 4096 bytes): printing
    # them in decimal naively is quadratic in their length. data.pkl deflated.
    # torch 1.13: refuses ("Unsupported operand 139": weights_only has LONG1 only).
    longs = []
    for i in range(200):
        mag = bytes([(i + 1) & 0xFF]) + bytes([0x9E, 0x37, 0x79, 0xB9, 0x7F, 0x4A, 0x7C, 0x15]) * 511 + bytes([0x1B, 0x56, 0x5C, 0x3A, 0x21, 0x44, 0x66])
        assert len(mag) == 4096
        if i % 2:  # negative: the sign bit of the top byte
            mag = mag[:-1] + bytes([0xC1])
        longs.append(b"\x8b" + u32(4096) + mag)
    pkl = PROTO2 + b"}" + S("w") + tensor6() + b"s" + S("ints") + b"](" + b"".join(longs) + b"e" + b"s" + STOP
    accept("amp_long4_many.pt", ckpt(pkl, deflate_pkl=True))

    # One 16 MiB float32 storage (4Mi elements, a 1 KiB repeating pattern, deflated) and 2000
    # tensors that each view all of it: a naive `inspect --json` hashes 32 GB.
    # torch 1.13: reads it (2000 tensors sharing one storage).
    n = 4 << 20
    pattern = struct.pack("<256f", *[float(i) for i in range(256)])
    big = pattern * (n // 256)
    views = b"".join(S("t%04d" % i) + tensor6(numel=n, size=(n,), stride=(1,)) for i in range(2000))
    pkl = PROTO2 + b"}(" + views + b"u" + STOP
    accept("amp_json_many_views.pt", ckpt(pkl, {"0": big}, deflate_pkl=True, deflate_storages=("0",)))

    # uint8 tensor over a 1-byte storage, shape (2**62,) stride (0,): numel * 1 fits in 63 bits,
    # so it loads; nothing may walk its 2**62 elements (hashing, printing, converting).
    # torch 1.13: reads it (uint8, shape (4611686018427387904,), stride (0,)).
    accept("amp_stride0_hash.pt",
           ckpt(state_dict(("w", tensor6(numel=1, size=(2**62,), stride=(0,), cls="ByteStorage"))), {"0": b"\x07"}))

    # ================================================================== 5. memory amplification
    # data.pkl deflated: EMPTY_LIST MARK + 5,000,000 EMPTY_DICT + APPENDS: a file of a few KB
    # makes 5 million nodes.
    # torch 1.13: reads it (a list of 5,000,000 empty dicts; several seconds).
    pkl = PROTO2 + b"}" + S("w") + tensor6() + b"s" + S("x") + b"](" + b"}" * 5_000_000 + b"e" + b"s" + STOP
    refuse("amp_nodes_deflated.pt", ckpt(pkl, deflate_pkl=True), "memory", "limit")

    # A 1000-byte key (memoized) at each of 900 nesting levels, and at the bottom a list of 1200
    # Nones: `inspect` prints one line per node with its full key path: 900 * 1200 * 1001 bytes
    # (1.08 GB) for the list items plus 405 MB for the levels. data.pkl deflated.
    # torch 1.13: reads it (900 nested dicts, then the list of 1200 Nones).
    key = ("k" * 999 + "/")
    levels = 900
    pkl = PROTO2 + b"}" + S(key) + b"q\x00" + b"}h\x00" * (levels - 1) + b"](" + NONE * 1200 + b"e" + b"s" * levels + STOP
    accept("amp_inspect_long_keypath.pt", ckpt(pkl, deflate_pkl=True))

    # A 16 KiB str of control characters (\x00..\x1f), memoized and listed 3000 times, plus
    # 250,000 Nones: `inspect --json` escapes most of these characters as \u00XX (6 bytes; a
    # few as \n, \t ...): ~270-295 MB of output. The copies (48 MiB) stay within the reader's
    # copy allowance (16 values per node created) and memory allowance, so the reader loads it:
    # bounding the output is up to the tool. data.pkl deflated.
    # torch 1.13: reads it (a list of 253000 items: the same str object 3000 times, then Nones).
    ctrl = "".join(chr(i % 32) for i in range(16384))
    pkl = PROTO2 + b"}" + S("w") + tensor6() + b"s" + S("s") + b"](" + S(ctrl) + b"q\x00" + b"h\x00" * 2999 \
        + NONE * 250_000 + b"e" + b"s" + STOP
    accept("amp_json_escapes.pt", ckpt(pkl, deflate_pkl=True))

    # ================================================================== 7. what newer torch refuses
    # A normal checkpoint plus archive/.storage_alignment = "abc".
    # torch 1.13: reads {"w": [0., ..., 5.]} (it never looks at a .storage_alignment record).
    refuse("torch_refuses_storage_alignment.pt", ckpt(pkl_a, extra=[(".storage_alignment", b"abc")]), "storage_alignment", "corrupt")
    # archive/.data/version = "6\n" while archive/version = "3\n".
    # torch 1.13: reads {"w": [0., ..., 5.]} (it uses .data/version, 6, which is <= 10).
    refuse("torch_refuses_data_version_disagrees.pt", ckpt(pkl_a, extra=[(".data/version", b"6\n")]), "disagree", "refused")

    # ================================================================== 8. safetensors
    # safetensors files (recognized by content: the .pt name does not matter) whose header lies.
    # torch 1.13: not a torch file at all. The safetensors package refuses each too, except the
    # duplicate name (it keeps the last); tests/python/test_safetensors.py checks that.
    def st(header, data=b"", claimed=None):
        h = header.encode() if isinstance(header, str) else header
        return struct.pack("<Q", len(h) if claimed is None else claimed) + h + data

    f4 = '"dtype":"F32","shape":[1],'
    refuse("st_header_terabytes.pt", st("{}", claimed=1 << 40), "more than the format", "limit")
    refuse("st_header_past_end.pt", st("{}", claimed=100), "claims 100 bytes", "truncated")
    refuse("st_bad_json.pt", st('{"a":{' + f4 + '"data_offsets":[0,4]}', b"abcd"), "invalid JSON", "corrupt")
    refuse("st_duplicate_name.pt", st('{"a":{' + f4 + '"data_offsets":[0,4]},"a":{' + f4 + '"data_offsets":[4,8]}}',
                                      b"abcdefgh"), "twice", "corrupt")
    refuse("st_overlap.pt", st('{"a":{' + f4 + '"data_offsets":[0,4]},"b":{' + f4 + '"data_offsets":[2,6]}}', b"abcdef"),
           "overlaps", "corrupt")
    refuse("st_out_of_range.pt", st('{"a":{' + f4 + '"data_offsets":[0,4]}}', b"ab"), "past the data area", "truncated")
    refuse("st_shape_lies.pt", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"abcd"), "need 8", "corrupt")
    refuse("st_huge_shape.pt", st('{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}', b"abcdefgh"),
           "tensor 'a'", "corrupt")
    refuse("st_deep_nesting.pt", st('{"a":{"x":' + "[" * 5000 + "]" * 5000 + "}}"), "nesting", "corrupt")
    refuse("st_many_names_gap.pt", st("{" + ",".join('"t%d":{' % i + f4 + '"data_offsets":[%d,%d]}' % (4 * i, 4 * i + 4)
                                                     for i in range(10000)) + "}", b"x" * (4 * 10000 - 1)),
           "past the data area", "truncated")


def write(out_dir):
    names = [n for n, _, _ in entries]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, dup
    for name, data, _ in entries:
        assert len(data) < 1_000_000, (name, len(data))
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith(".pt"):
            os.remove(os.path.join(out_dir, old))
    for name, data, _ in entries:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out_dir, "MANIFEST.tsv"), "w") as f:
        f.write("# file\trefuse\tkind\tphrase (sgckpt::Error of that kind containing it, case-insensitive)"
                " | file\taccept; generated by make_round2.py\n")
        for name, _, exp in entries:
            f.write("%s\t%s\n" % (name, "\t".join(exp)))
    total = sum(len(d) for _, d, _ in entries)
    print("make_round2: %d files, %d bytes in %s" % (len(entries), total, out_dir))


def probe(out_dir):
    """Loads every file of out_dir's MANIFEST with torch (weights_only) and prints the result."""
    import subprocess

    code = r"""
import sys, torch, warnings
warnings.simplefilter("ignore")
sys.setrecursionlimit(100000)
def show(x, depth=0):
    if isinstance(x, torch.Tensor):
        s = "%s %s %s stride %s" % (type(x).__name__, x.dtype, tuple(x.shape), x.stride())
        if x.numel() <= 8:
            s += " " + repr(x.detach().flatten().tolist())
        return s
    if isinstance(x, dict):
        if len(x) > 4:
            return "%s of %d items" % (type(x).__name__, len(x))
        return "%s{%s}" % (type(x).__name__, ", ".join("%r: %s" % (k if len(repr(k)) < 40 else repr(k)[:40] + "...", show(v, depth + 1))
                                                   for k, v in x.items()))
    if isinstance(x, list):
        return "list of %d" % len(x)
    return repr(x)[:80]
try:
    obj = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
    print("reads " + show(obj))
except BaseException as e:
    print("refuses: %s: %s" % (type(e).__name__, str(e).splitlines()[0][:300] if str(e) else ""))
"""
    with open(os.path.join(out_dir, "MANIFEST.tsv")) as f:
        names = [l.split("\t")[0] for l in f if l.strip() and not l.startswith("#")]
    for name in names:
        try:
            r = subprocess.run([sys.executable, "-c", code, os.path.join(out_dir, name)], capture_output=True,
                               text=True, timeout=120)
            res = (r.stdout.strip() or r.stderr.strip().splitlines()[-1:] or ["(no output, rc %d)" % r.returncode])
            res = res if isinstance(res, str) else res[0]
        except subprocess.TimeoutExpired:
            res = "timed out (120 s)"
        print("%-45s %s" % (name, res), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "round2")
    if args and args[0] == "--probe":
        probe(args[1] if len(args) > 1 else default)
    else:
        build()
        write(args[0] if args else default)
