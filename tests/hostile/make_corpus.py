#!/usr/bin/env python3
"""Writes the hostile corpus: files that sgckpt must refuse with a clear error.

    /usr/bin/python3 tests/hostile/make_corpus.py [OUT_DIR]      (default: tests/hostile)

Every file is listed in OUT_DIR/MANIFEST.tsv as `file<TAB>phrase`: loading it must throw
sgckpt::Error whose message contains the phrase (case-insensitive), and nothing else
(tests/security/test_hostile.cpp); `sgckpt inspect` must exit 1 with one stderr line, quickly
and in bounded memory (tests/python/test_hostile_cli.py).

torch (Debian's python3-torch, run by /usr/bin/python3) writes the realistic bases (a state
dict, a legacy file, a TorchScript archive, whole pickled modules); everything hostile is
built by hand here: a zip writer that reproduces torch/miniz's layout byte for byte and
reports where every field lies, a pickle assembler, and byte patches on both. Deterministic:
running it twice writes identical files.

Families (file name prefix): exec_ (code execution attempts), type_ (container type
confusion), view_ (storage size and view lies), int_ (integer overflows in zip fields),
bomb_ (resource exhaustion), zip_ (malformed zip structures), trunc_ (truncation), flip_
(bit flips / CRC), legacy_ (pre-1.6 stream attacks), torchscript_/tar_/misc_ (other formats).
"""
import io
import os
import struct
import sys
import tarfile
import zipfile
import zlib

sys.dont_write_bytecode = True

# ============================================================================ pickle assembler


def u8(v):
    return struct.pack("<B", v)


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def S(s):
    """BINUNICODE str."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return b"X" + u32(len(b)) + b


def G(module, name):
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def I(v):
    """An int with the opcode Python's pickler would choose."""
    if 0 <= v < 256:
        return b"K" + u8(v)
    if 0 <= v < 65536:
        return b"M" + u16(v)
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + u8(n) + v.to_bytes(n, "little", signed=True)


def T(*items):
    """A tuple of already-encoded items."""
    if len(items) == 0:
        return b")"
    if len(items) <= 3:
        return b"".join(items) + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(items)]
    return b"(" + b"".join(items) + b"t"


PROTO2 = b"\x80\x02"
STOP = b"."
NONE = b"N"
FALSE = b"\x89"
TRUE = b"\x88"
ODICT = G("collections", "OrderedDict") + b")R"


def pid(key, numel, cls="FloatStorage", location="cpu", module="torch"):
    """A zip-format storage persistent id, followed by BINPERSID."""
    return T(S("storage"), G(module, cls), S(key), S(location), I(numel)) + b"Q"


def rebuild(storage, offset, size, stride, requires_grad=FALSE, extra=b""):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())."""
    args = b"(" + storage + I(offset) + T(*[I(s) for s in size]) + T(*[I(s) for s in stride]) + requires_grad + ODICT + extra + b"t"
    return G("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def tensor_pickle(numel=6, offset=0, size=(2, 3), stride=(3, 1), key="0", cls="FloatStorage"):
    """data.pkl of {'w': tensor}."""
    return PROTO2 + b"}" + S("w") + rebuild(pid(key, numel, cls), offset, size, stride) + b"s" + STOP


# ============================================================================ zip writer (torch/miniz layout)


class Rec:
    def __init__(self, name, data, method=0, compressed=None, local_name=None):
        self.name = name.encode("utf-8") if isinstance(name, str) else name
        self.data = data
        self.method = method
        self.compressed = compressed  # payload bytes as stored (deflated records)
        self.local_name = local_name


class Zip:
    """Writes an archive exactly as torch.save does (stored, 64-byte aligned via the FB extra,
    data descriptors, zip64 end records always) and records where each field lies, so that
    tests can patch any of them. `layout` maps names to byte offsets."""

    def __init__(self, records, zip64_end=True, comment=b""):
        out = bytearray()
        self.local = []  # offset of each local header
        self.payload = []  # offset of each payload
        for r in records:
            h = len(out)
            self.local.append(h)
            payload = r.compressed if r.compressed is not None else r.data
            flags = 0x0808 if len(r.data) else 0x0800
            lname = r.local_name if r.local_name is not None else r.name
            start = h + 30 + len(lname) + 4
            pad = (64 - start % 64) % 64
            extra = b"FB" + u16(pad) + b"Z" * pad
            out += b"PK\x03\x04" + u16(0) + u16(flags) + u16(r.method) + u16(0) + u16(0)
            out += u32(0) + u32(0) + u32(0) + u16(len(lname)) + u16(len(extra)) + lname + extra
            self.payload.append(len(out))
            out += payload
            if len(r.data):
                out += b"PK\x07\x08" + u32(zlib.crc32(r.data)) + u32(len(payload)) + u32(len(r.data))
        self.cd_offset = len(out)
        self.central = []
        for r, h in zip(records, self.local):
            self.central.append(len(out))
            payload = r.compressed if r.compressed is not None else r.data
            flags = 0x0808 if len(r.data) else 0x0800
            out += b"PK\x01\x02" + u16(0) + u16(0) + u16(flags) + u16(r.method) + u16(0) + u16(0)
            out += u32(zlib.crc32(r.data)) + u32(len(payload)) + u32(len(r.data))
            out += u16(len(r.name)) + u16(0) + u16(0) + u16(0) + u16(0) + u32(0) + u32(h) + r.name
        self.cd_size = len(out) - self.cd_offset
        n = len(records)
        self.zip64_eocd = self.zip64_locator = None
        if zip64_end:
            self.zip64_eocd = len(out)
            out += b"PK\x06\x06" + u64(44) + u16(0x031E) + u16(0x2D) + u32(0) + u32(0)
            out += u64(n) + u64(n) + u64(self.cd_size) + u64(self.cd_offset)
            self.zip64_locator = len(out)
            out += b"PK\x06\x07" + u32(0) + u64(self.zip64_eocd) + u32(1)
        self.eocd = len(out)
        out += b"PK\x05\x06" + u16(0) + u16(0) + u16(n) + u16(n) + u32(self.cd_size) + u32(self.cd_offset)
        out += u16(len(comment)) + comment
        self.bytes = bytearray(out)

    def patch(self, offset, fmt, value):
        struct.pack_into(fmt, self.bytes, offset, value)
        return self

    def splice(self, offset, old_len, new):
        """Replaces old_len bytes at offset (shifts what follows; offsets after it go stale)."""
        self.bytes[offset:offset + old_len] = new
        return self


def checkpoint(pkl=None, storages=None, root="archive", version=b"3\n", extra=(), order=None):
    """Records of a torch-style checkpoint: data.pkl, data/<key>..., version (+ extra records)."""
    if pkl is None:
        pkl = tensor_pickle()
    if storages is None:
        storages = {"0": struct.pack("<6f", *range(6))}
    recs = [Rec(root + "/data.pkl", pkl)]
    recs += [Rec(root + "/data/" + k, v) for k, v in sorted(storages.items())]
    if version is not None:
        recs.append(Rec(root + "/version", version))
    recs += [Rec(root + "/" + n if not n.startswith("/") else n[1:], d) for n, d in extra]
    return recs


def zbytes(pkl=None, storages=None, **kw):
    return bytes(Zip(checkpoint(pkl, storages, **kw)).bytes)


def with_pickle(pkl):
    """A well-formed archive around a (hostile) data.pkl, with one 6-float storage '0'."""
    return zbytes(pkl)


# ============================================================================ the corpus

entries = []  # (file name, bytes, expected phrase)


def add(name, data, phrase):
    assert isinstance(data, (bytes, bytearray)), name
    assert "\t" not in phrase and "\n" not in phrase
    entries.append((name, bytes(data), phrase))


def normalize_legacy_keys(data):
    """torch's legacy writer names storages by C pointer values, which change from run to run:
    rename them 10000, 10001, ... (same sort order) so that the corpus is reproducible."""
    import pickle

    f = io.BytesIO(data)
    for _ in range(3):  # magic, protocol version, sys_info
        pickle.load(f)

    class U(pickle.Unpickler):
        def persistent_load(self, pid):
            return pid[1] if pid[0] == "module" else None  # whole modules: the class

        def find_class(self, module, name):  # nothing is imported: any class is a dummy dict
            return type(name, (dict,), {"__init__": lambda self, *a, **k: None, "__setstate__": lambda self, st: None})

    U(f).load()  # the object
    keys = pickle.load(f)
    for i, k in enumerate(sorted(keys)):
        data = data.replace(S(k), S(str(10000 + i)))
    return data


def torch_bases(tmp):
    """Realistic files written by torch itself."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    bases = {}
    sd = nn.Linear(2, 2).state_dict()

    def save(name, obj, **kw):
        path = os.path.join(tmp, name + ".pt")
        torch.save(obj, path, **kw)
        with open(path, "rb") as f:
            bases[name] = f.read()
        if kw.get("_use_new_zipfile_serialization") is False:
            bases[name] = normalize_legacy_keys(bases[name])

    save("base", sd)  # root 'base/'
    save("legacy", {"w": torch.arange(6, dtype=torch.float32)}, _use_new_zipfile_serialization=False)
    save("whole_module", nn.Linear(2, 2))
    save("whole_module_legacy", nn.Linear(2, 2), _use_new_zipfile_serialization=False)
    save("set_value", {"s": {1, 2}})
    save("sparse", {"s": torch.eye(2).to_sparse()})

    class Evil:
        def __reduce__(self):
            import os as _os
            return (_os.system, ("touch /tmp/sgckpt_hostile_PWNED",))

    save("evil_reduce", {"x": Evil()})
    save("evil_reduce_p4", {"x": Evil()}, pickle_protocol=4)
    m = torch.jit.script(nn.Linear(2, 2))
    path = os.path.join(tmp, "ts.pt")
    torch.jit.save(m, path)
    with open(path, "rb") as f:
        bases["torchscript"] = f.read()
    return bases


def build(out_dir):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        bases = torch_bases(tmp)

    # ------------------------------------------------------------------ code execution
    dangerous = [
        ("os", "system"), ("posix", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"),
        ("builtins", "getattr"), ("builtins", "__import__"), ("__builtin__", "eval"), ("subprocess", "Popen"),
        ("torch", "load"), ("torch.serialization", "load"), ("_pickle", "loads"), ("pickle", "loads"),
        ("numpy.core.multiarray", "_reconstruct"), ("torch.storage", "_load_from_bytes"),
        ("builtins", "compile"), ("webbrowser", "open"), ("torch._utils", "_rebuild_tensor_v2.__globals__"),
    ]
    for m, n in dangerous:
        name = "exec_reduce_%s_%s.pt" % (m.replace(".", "_"), n.strip("_").replace(".", "_"))
        # numpy's _reconstruct is allowed (numpy arrays are data), but only as numpy calls it.
        phrase = "called with 1 arguments" if n == "_reconstruct" else "refused global"
        add(name, with_pickle(PROTO2 + G(m, n) + T(S("touch /tmp/sgckpt_hostile_PWNED")) + b"R" + STOP), phrase)
    # numpy's rebuild with a class, dtype or data of the attacker's choosing.
    NP_DTYPE_F8 = (G("numpy", "dtype") + T(S("f8"), FALSE, TRUE) + b"R" + b"(" + I(3) + S("<") + NONE * 3 + I(-1) + I(-1)
                   + I(0) + b"tb")
    add("exec_numpy_reconstruct_os_system.pt", with_pickle(
        PROTO2 + G("numpy.core.multiarray", "_reconstruct") + T(G("os", "system"), T(I(0)), S("b")) + b"R" + STOP),
        "refused global 'os.system'")
    add("exec_numpy_reconstruct_other_class.pt", with_pickle(
        PROTO2 + G("numpy.core.multiarray", "_reconstruct") + T(G("collections", "OrderedDict"), T(I(0)), b"C\x01b")
        + b"R" + STOP), "class other than numpy.ndarray")
    add("exec_numpy_object_dtype.pt", with_pickle(
        PROTO2 + G("numpy", "dtype") + T(S("O8"), FALSE, TRUE) + b"R" + STOP), "object arrays")
    add("exec_numpy_scalar_length_lie.pt", with_pickle(
        PROTO2 + G("numpy.core.multiarray", "scalar") + NP_DTYPE_F8 + b"C\x04abcd" + b"\x86R" + STOP),
        "numpy scalar of 4 bytes for a float64")
    add("exec_numpy_array_length_lie.pt", with_pickle(
        PROTO2 + G("numpy.core.multiarray", "_reconstruct") + T(G("numpy", "ndarray"), T(I(0)), b"C\x01b") + b"R"
        + b"(" + I(1) + T(I(255), I(255)) + NP_DTYPE_F8 + FALSE + b"C\x08abcdefgh" + b"tb" + STOP),
        "numpy array data of 8 bytes for 65025 float64 elements")
    add("exec_reduce_torch_real_os_system.pt", bases["evil_reduce"], "refused global 'posix.system'")
    add("exec_reduce_torch_real_protocol4.pt", bases["evil_reduce_p4"], "refused global 'posix.system'")
    add("exec_stack_global_os_system.pt",
        with_pickle(b"\x80\x04" + b"\x8c\x02os\x8c\x06system\x93" + S("id") + b"\x85R" + STOP), "refused global 'os.system'")
    add("exec_inst.pt", with_pickle(PROTO2 + b"(" + S("id") + b"ios\nsystem\n" + STOP), "INST")
    add("exec_obj.pt", with_pickle(PROTO2 + b"(" + G("collections", "OrderedDict") + b"o" + STOP), "OBJ")
    add("exec_newobj_ordereddict.pt", with_pickle(PROTO2 + G("collections", "OrderedDict") + b")\x81" + STOP),
        "NEWOBJ is only allowed for torch.nn.Parameter")
    add("exec_newobj_str.pt", with_pickle(PROTO2 + S("os") + b")\x81" + STOP), "NEWOBJ is only allowed")
    add("exec_newobj_ex.pt", with_pickle(b"\x80\x04" + G("collections", "OrderedDict") + b")}\x92" + STOP), "NEWOBJ_EX")
    add("exec_ext1.pt", with_pickle(PROTO2 + b"\x82\x01" + STOP), "EXT")
    add("exec_ext2.pt", with_pickle(PROTO2 + b"\x83\x01\x00" + STOP), "EXT")
    add("exec_ext4.pt", with_pickle(PROTO2 + b"\x84\x01\x00\x00\x00" + STOP), "EXT")
    add("exec_persid_text.pt", with_pickle(PROTO2 + b"P0\n" + STOP), "PERSID")
    add("exec_build_plain_dict.pt", with_pickle(PROTO2 + b"}}" + S("__class__") + S("x") + b"sb" + STOP),
        "BUILD on a plain dict")
    add("exec_build_list.pt", with_pickle(PROTO2 + b"]}b" + STOP), "BUILD on a list")
    add("exec_build_str.pt", with_pickle(PROTO2 + S("x") + b"}b" + STOP), "BUILD on a str")
    add("exec_build_global.pt", with_pickle(PROTO2 + G("torch", "Tensor") + b"}b" + STOP), "BUILD on a global")
    add("exec_reduce_str_callable.pt", with_pickle(PROTO2 + S("os.system") + T(S("id")) + b"R" + STOP), "REDUCE of a str")
    add("exec_reduce_storage_class.pt", with_pickle(PROTO2 + G("torch", "FloatStorage") + T(I(1)) + b"R" + STOP),
        "cannot be called")
    add("exec_rebuild_from_type_other_class.pt", with_pickle(
        PROTO2 + G("torch._tensor", "_rebuild_from_type_v2") + b"(" + G("torch._utils", "_rebuild_tensor_v2")
        + G("collections", "OrderedDict") + b")" + b"}" + b"tR" + STOP), "only torch.Tensor and torch.nn.Parameter")
    add("exec_whole_module.pt", bases["whole_module"], "refused global 'torch.nn.modules.linear.Linear'")
    add("exec_whole_module_legacy.pt", bases["whole_module_legacy"], "refused global")
    add("exec_module_persistent_id.pt", with_pickle(PROTO2 + T(S("module"), S("x"), S("y"), S("z")) + b"Q" + STOP),
        "whole nn.Module")
    add("exec_set_value.pt", bases["set_value"], "refused global '__builtin__.set'")
    add("exec_device_bad_type.pt", with_pickle(PROTO2 + G("torch", "device") + T(S("touch /tmp/x")) + b"R" + STOP),
        "is not one torch knows")
    add("exec_sparse_tensor.pt", bases["sparse"], "refused global")
    add("exec_dup.pt", with_pickle(PROTO2 + b"]2" + STOP), "DUP")
    add("exec_empty_set.pt", with_pickle(b"\x80\x04\x8f" + STOP), "set value")
    add("exec_bytearray8.pt", with_pickle(b"\x80\x05\x96" + u64(1) + b"x" + STOP), "bytearray")
    add("exec_next_buffer.pt", with_pickle(b"\x80\x05\x97" + STOP), "out-of-band buffer")
    add("exec_text_global_in_pid.pt", with_pickle(PROTO2 + T(S("storage"), G("os", "system"), S("0"), S("cpu"), I(6)) + b"Q" + STOP),
        "refused global 'os.system'")

    # ------------------------------------------------------------------ container type confusion
    add("type_setitem_on_list.pt", with_pickle(PROTO2 + b"]" + S("k") + S("v") + b"s" + STOP), "SETITEM on a list")
    add("type_setitem_on_tuple.pt", with_pickle(PROTO2 + b")" + S("k") + S("v") + b"s" + STOP), "SETITEM on a tuple")
    add("type_setitems_on_list.pt", with_pickle(PROTO2 + b"](" + S("k") + S("v") + b"u" + STOP), "SETITEMS on a list")
    add("type_setitems_odd.pt", with_pickle(PROTO2 + b"}(" + S("k") + S("v") + S("k2") + b"u" + STOP), "odd number")
    add("type_append_on_dict.pt", with_pickle(PROTO2 + b"}" + S("v") + b"a" + STOP), "APPEND onto a dict")
    add("type_append_on_tuple.pt", with_pickle(PROTO2 + b")" + S("v") + b"a" + STOP), "APPEND onto a tuple")
    add("type_appends_on_dict.pt", with_pickle(PROTO2 + b"}(" + S("v") + b"e" + STOP), "APPENDS onto a dict")
    add("type_setitem_on_tensor.pt", with_pickle(PROTO2 + rebuild(pid("0", 6), 0, (6,), (1,)) + S("k") + S("v") + b"s" + STOP),
        "SETITEM on a tensor")
    add("type_build_ordereddict_list_state.pt", with_pickle(PROTO2 + ODICT + b"]b" + STOP),
        "BUILD state for an OrderedDict must be a dict")
    add("type_dict_key_list.pt", with_pickle(PROTO2 + b"}]" + S("v") + b"s" + STOP), "unsupported dict key")
    add("type_reduce_args_not_tuple.pt", with_pickle(PROTO2 + G("collections", "OrderedDict") + b"]R" + STOP),
        "must be a tuple")
    add("type_pid_not_tuple.pt", with_pickle(PROTO2 + S("storage") + b"Q" + STOP), "persistent id must be a tuple")
    add("type_stack_underflow.pt", with_pickle(PROTO2 + b"s" + STOP), "stack underflow")
    add("type_mark_underflow.pt", with_pickle(PROTO2 + S("x") + b"(s" + STOP), "underflow")
    add("type_stop_two_values.pt", with_pickle(PROTO2 + NONE + NONE + STOP), "STOP with 2 values")
    add("type_memo_get_unset.pt", with_pickle(PROTO2 + b"h\x05" + STOP), "memo index 5 read before it was written")
    add("type_cycle.pt", with_pickle(PROTO2 + b"]q\x00h\x00a" + STOP), "reference cycle")
    add("type_bare_global.pt", with_pickle(PROTO2 + G("torch", "Tensor") + STOP), "bare global")
    add("type_proto_1.pt", with_pickle(b"\x80\x01N" + STOP), "unsupported pickle protocol 1")
    add("type_proto_6.pt", with_pickle(b"\x80\x06N" + STOP), "unsupported pickle protocol 6")

    # ------------------------------------------------------------------ storage size and view lies
    f6 = struct.pack("<6f", *range(6))
    add("view_record_shorter.pt", zbytes(storages={"0": f6[:20]}), "holds 20 bytes but its tensor needs 24")
    add("view_record_one_byte_short.pt", zbytes(storages={"0": f6[:23]}), "holds 23 bytes but its tensor needs 24")
    add("view_record_longer.pt", zbytes(storages={"0": f6 + b"\0" * 4}), "holds 28 bytes but its tensor needs 24")
    add("view_offset_past_end.pt", with_pickle(tensor_pickle(offset=6)), "reaches outside its storage")
    add("view_offset_past_end_empty.pt", with_pickle(tensor_pickle(offset=7, size=(0,), stride=(1,))), "past the end of its storage")
    add("view_size_stride_past_end.pt", with_pickle(tensor_pickle(size=(2, 3), stride=(4, 1))), "reaches outside its storage")
    add("view_transpose_lie.pt", with_pickle(tensor_pickle(size=(3, 3), stride=(1, 3))), "reaches outside its storage")
    add("view_negative_stride.pt", with_pickle(tensor_pickle(size=(2, 3), stride=(-3, 1))), "negative stride")
    add("view_negative_offset.pt", with_pickle(tensor_pickle(offset=-1)), "negative storage offset")
    add("view_negative_size.pt", with_pickle(tensor_pickle(size=(-2, 3))), "negative dimension")
    add("view_negative_numel.pt", with_pickle(tensor_pickle(numel=-6)), "negative storage size")
    add("view_numel_overflows_64_bits.pt", with_pickle(tensor_pickle(numel=2**62)), "overflows 64 bits")
    add("view_numel_bigint.pt", with_pickle(tensor_pickle(numel=2**70)), "does not fit in 64 bits")
    add("view_numel_huge_record_small.pt", with_pickle(tensor_pickle(numel=2**40)), "but its tensor needs")
    add("view_shape_product_overflows.pt", with_pickle(tensor_pickle(size=(2**32, 2**32, 2**32), stride=(0, 0, 0))),
        "tensor shape overflows 64 bits")
    add("view_extent_overflows.pt", with_pickle(tensor_pickle(size=(2, 9), stride=(2**62, 2**62))),
        "tensor view extent overflows 64 bits")
    add("view_stride_count_mismatch.pt", with_pickle(tensor_pickle(size=(2, 3), stride=(1,))), "dimensions but 1 strides")
    add("view_key_two_classes.pt", with_pickle(
        PROTO2 + b"](" + rebuild(pid("0", 6), 0, (6,), (1,)) + rebuild(pid("0", 6, "IntStorage"), 0, (6,), (1,)) + b"e" + STOP),
        "declared twice")
    add("view_key_two_sizes.pt", with_pickle(
        PROTO2 + b"](" + rebuild(pid("0", 6), 0, (6,), (1,)) + rebuild(pid("0", 3), 0, (3,), (1,)) + b"e" + STOP),
        "declared twice")
    add("view_missing_record.pt", with_pickle(tensor_pickle(key="7")), "'archive/data/7' is missing")
    add("view_key_path_traversal.pt", with_pickle(tensor_pickle(key="../../../etc/passwd")), "is missing from the archive")
    add("view_storage_class_unknown.pt", with_pickle(tensor_pickle(cls="EvilStorage")), "refused global 'torch.EvilStorage'")
    add("view_untyped_v2.pt", with_pickle(
        PROTO2 + rebuild(T(S("storage"), G("torch.storage", "UntypedStorage"), S("0"), S("cpu"), I(24)) + b"Q", 0, (6,), (1,)) + STOP),
        "needs _rebuild_tensor_v3")
    add("view_rebuild_wrong_argc.pt", with_pickle(
        PROTO2 + G("torch._utils", "_rebuild_tensor_v2") + T(pid("0", 6), I(0), T(I(6))) + b"R" + STOP), "called with 3 arguments")
    add("view_rebuild_size_not_tuple.pt", with_pickle(
        PROTO2 + G("torch._utils", "_rebuild_tensor_v2") + b"(" + pid("0", 6) + I(0) + S("6") + T(I(1)) + FALSE + ODICT + b"tR" + STOP),
        "tensor size must be a tuple of ints")
    add("view_rebuild_storage_not_storage.pt", with_pickle(PROTO2 + rebuild(S("0"), 0, (6,), (1,)) + STOP),
        "tensor rebuild needs a storage")
    add("view_metadata_conj.pt", with_pickle(
        PROTO2 + G("torch._utils", "_rebuild_tensor_v2") + b"(" + pid("0", 6) + I(0) + T(I(6)) + T(I(1)) + FALSE + ODICT
        + b"}" + S("conj") + b"\x88s" + b"tR" + STOP), "not supported")
    add("view_byteorder_middle.pt", zbytes(extra=[("byteorder", b"middle")]), "unknown byte order 'middle'")
    add("view_byteorder_newline.pt", zbytes(extra=[("byteorder", b"little\n")]), "unknown byte order")

    # ------------------------------------------------------------------ integer overflows in zip fields
    z = Zip(checkpoint())
    add("int_local_offset_ffffffff_no_zip64.pt", z.patch(z.central[1] + 42, "<I", 0xFFFFFFFF).bytes,
        "no zip64 extra field")
    z = Zip(checkpoint())
    add("int_cd_size_ffffffff_no_zip64.pt", z.patch(z.central[1] + 24, "<I", 0xFFFFFFFF).patch(z.central[1] + 20, "<I", 0xFFFFFFFF).bytes,
        "no zip64 extra field")
    z = Zip(checkpoint())
    add("int_cd_csize_ffffffff_no_zip64.pt", z.patch(z.central[1] + 20, "<I", 0xFFFFFFFF).bytes, "no zip64 extra field")

    def zip64_extra_variant(values, fields):
        """data/0's CD entry gets saturated `fields` and a zip64 extra holding `values`."""
        recs = checkpoint()
        z = Zip(recs)
        cd = z.central[1]
        extra = b"\x01\x00" + u16(8 * len(values)) + b"".join(u64(v) for v in values)
        b = z.bytes
        for off in fields:
            struct.pack_into("<I", b, cd + off, 0xFFFFFFFF)
        struct.pack_into("<H", b, cd + 30, len(extra))
        name_end = cd + 46 + struct.unpack_from("<H", b, cd + 28)[0]
        b[name_end:name_end] = extra
        # Everything after grew by len(extra): fix the CD size in the end records.
        grow = len(extra)
        struct.pack_into("<Q", b, z.zip64_eocd + grow + 40, z.cd_size + grow)
        struct.pack_into("<Q", b, z.zip64_locator + grow + 8, z.zip64_eocd + grow)
        struct.pack_into("<I", b, z.eocd + grow + 12, z.cd_size + grow)
        return b

    M64 = 2**64 - 1
    add("int_zip64_size_max.pt", zip64_extra_variant([M64, M64], [24, 20]), "runs past the start of the central directory")
    add("int_zip64_offset_max.pt", zip64_extra_variant([M64], [42]), "runs past the start of the central directory")
    add("int_zip64_offset_2p63.pt", zip64_extra_variant([2**63], [42]), "runs past the start of the central directory")
    add("int_zip64_size_wraps_offset.pt", zip64_extra_variant([M64 - 100, M64 - 100], [24, 20]), "runs past")
    add("int_zip64_extra_too_short.pt", zip64_extra_variant([5], [24, 20]), "too short to hold its compressed size")
    z = Zip(checkpoint())
    add("int_zip64_eocd_cd_offset_max.pt", z.patch(z.zip64_eocd + 48, "<Q", M64).patch(z.eocd + 16, "<I", 0xFFFFFFFF).bytes,
        "runs past the end records")
    z = Zip(checkpoint())
    add("int_zip64_eocd_cd_size_max.pt", z.patch(z.zip64_eocd + 40, "<Q", M64).patch(z.eocd + 12, "<I", 0xFFFFFFFF).bytes,
        "runs past the end records")
    z = Zip(checkpoint())
    add("int_zip64_eocd_entries_max.pt", z.patch(z.zip64_eocd + 24, "<Q", M64).patch(z.zip64_eocd + 32, "<Q", M64)
        .patch(z.eocd + 8, "<H", 0xFFFF).patch(z.eocd + 10, "<H", 0xFFFF).bytes, "more than the limit")
    z = Zip(checkpoint())
    add("int_zip64_eocd_entries_lie.pt", z.patch(z.zip64_eocd + 24, "<Q", 1000).patch(z.zip64_eocd + 32, "<Q", 1000)
        .patch(z.eocd + 8, "<H", 0xFFFF).patch(z.eocd + 10, "<H", 0xFFFF).bytes, "cannot fit in a central directory")
    z = Zip(checkpoint(), zip64_end=False)
    add("int_eocd_cd_offset_past_end.pt", z.patch(z.eocd + 16, "<I", z.cd_offset + 1000).bytes, "runs past the end records")
    z = Zip(checkpoint(), zip64_end=False)
    add("int_eocd_cd_offset_ffffffff_no_zip64.pt", z.patch(z.eocd + 16, "<I", 0xFFFFFFFF).bytes, "no zip64 locator")
    z = Zip(checkpoint(), zip64_end=False)
    add("int_eocd_cd_size_plus_offset_past_end.pt", z.patch(z.eocd + 12, "<I", 0x7FFFFFFF).bytes, "runs past the end records")
    z = Zip(checkpoint())
    add("int_zip64_locator_offset_max.pt", z.patch(z.zip64_locator + 8, "<Q", M64).bytes, "does not fit before it")
    z = Zip(checkpoint())
    add("int_zip64_record_size_max.pt", z.patch(z.zip64_eocd + 4, "<Q", M64).bytes, "declares a size of")

    # ------------------------------------------------------------------ resource bombs
    add("bomb_binunicode_2g.pt", with_pickle(PROTO2 + b"X" + u32(2**31) + b"abc"), "exceeds the limit")
    add("bomb_binunicode_4g.pt", with_pickle(PROTO2 + b"X" + u32(2**32 - 1) + b"abc"), "exceeds the limit")
    add("bomb_binunicode8_huge.pt", with_pickle(b"\x80\x04\x8d" + u64(2**63) + b"abc"), "exceeds the limit")
    add("bomb_binunicode_200m_truncated.pt", with_pickle(PROTO2 + b"X" + u32(200 << 20) + b"abc"), "truncated pickle")
    add("bomb_binbytes8_huge.pt", with_pickle(b"\x80\x04\x8e" + u64(M64) + b"abc"), "exceed the limit")
    add("bomb_long4_huge.pt", with_pickle(PROTO2 + b"\x8b" + u32(2**31) + b"\x01"), "exceeds the limit of 4096 bytes")
    add("bomb_long4_5000.pt", with_pickle(PROTO2 + b"\x8b" + u32(5000) + b"\x01" * 5000 + STOP), "exceeds the limit of 4096 bytes")
    depth = 200_000
    add("bomb_nested_lists_200k.pt", with_pickle(PROTO2 + b"]" * depth + b"a" * (depth - 1) + STOP), "nested deeper than 1000")
    add("bomb_nested_tuples_200k.pt", with_pickle(PROTO2 + b")" + b"\x85" * depth + STOP), "nested deeper than 1000")
    # Dicts: key 0 -> next level, built inside out with SETITEM (K\x00 is a 2-byte key).
    add("bomb_nested_dicts_50k.pt", with_pickle(PROTO2 + (b"}K\x00") * 49_999 + b"}" + b"s" * 49_999 + STOP),
        "nested deeper than 1000")
    add("bomb_deep_chain_failing_append.pt", with_pickle(PROTO2 + b"N" + b"]" * 100_001 + b"a" * 100_000 + b"a" + STOP),
        "APPEND onto a None")
    add("bomb_marks_100k.pt", with_pickle(PROTO2 + b"(" * 100_000 + STOP), "STOP with 0 values")
    # Billion laughs: L[i] = [L[i-1]] * 10, 30 levels (10^30 elements once copied into a tree).
    p = PROTO2 + b"]q\x00" + b"0"
    for i in range(1, 30):
        p += b"](" + (b"h" + u8(i - 1)) * 10 + b"eq" + u8(i) + b"0"
    add("bomb_billion_laughs_lists.pt", with_pickle(p + b"h" + u8(29) + STOP), "billion-laughs")
    p = PROTO2 + b"}q\x00" + b"0"
    for i in range(1, 30):
        p += b"}(" + b"".join(I(k) + b"h" + u8(i - 1) for k in range(10)) + b"uq" + u8(i) + b"0"
    add("bomb_billion_laughs_dicts.pt", with_pickle(p + b"h" + u8(29) + STOP), "billion-laughs")
    # One 64 KiB str referenced 20000 times: every reference is copied into the value tree.
    p = PROTO2 + S("A" * 65536) + b"q\x00" + b"0" + b"](" + b"h\x00" * 20000 + b"e" + STOP
    add("bomb_memo_string_fanout.pt", with_pickle(p), "billion-laughs")
    # The same str as a key of 10000 dicts: each key is a copy.
    p = PROTO2 + S("K" * 65536) + b"q\x00" + b"0" + b"](" + b"}h\x00Ns" * 10000 + b"e" + STOP
    add("bomb_memo_key_fanout.pt", with_pickle(p), "amplification")
    # Counter(d) copies d: a 20000-entry dict copied 2000 times.
    p = PROTO2 + G("collections", "Counter") + b"q\x01" + b"0" + b"}q\x00(" + b"".join(I(k) + NONE for k in range(20000)) + b"u0"
    p += b"](" + b"h\x01h\x00\x85R" * 2000 + b"e" + STOP
    add("bomb_counter_copies.pt", with_pickle(p), "amplification")
    # torch.Size(t) copies t: a 30000-int tuple copied 3000 times.
    p = PROTO2 + G("torch", "Size") + b"q\x01" + b"0" + b"(" + b"K\x01" * 30000 + b"tq\x00" + b"0"
    p += b"](" + b"h\x01h\x00\x85R" * 3000 + b"e" + STOP
    add("bomb_torch_size_copies.pt", with_pickle(p), "amplification")
    # A memoized state dict BUILT onto 10000 OrderedDicts (each BUILD walks it).
    p = PROTO2 + b"}q\x00(" + b"".join(S("a%d" % k) + NONE for k in range(8000)) + b"u0"
    p += b"](" + (ODICT + b"h\x00b") * 2000 + b"e" + STOP
    add("bomb_build_fanout.pt", with_pickle(p), "amplification")
    add("bomb_memo_index_huge.pt", with_pickle(PROTO2 + NONE + b"r" + u32(2**32 - 1) + b"j" + u32(2**32 - 2) + STOP),
        "read before it was written")
    # Deflate: a record declaring 1 TiB from 20 compressed bytes; one declaring 2 TiB; one
    # inflating past its declared size; one that is not deflate at all.
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = comp.compress(b"\0" * 100000) + comp.flush()

    def deflated_variant(declared, payload, index=0, pkl=None):
        """Record `index` (0 data.pkl, 1 data/0) is deflated `payload` declaring `declared` bytes."""
        recs = checkpoint(pkl)
        recs[index] = Rec(recs[index].name, b"\0" * max(1, min(declared, 1 << 20)), method=8, compressed=payload)
        z = Zip(recs)
        cd = z.central[index]
        b = z.bytes
        if declared >= 0xFFFFFFFF:
            extra = b"\x01\x00\x08\x00" + u64(declared)
            struct.pack_into("<I", b, cd + 24, 0xFFFFFFFF)
            struct.pack_into("<H", b, cd + 30, len(extra))
            name_end = cd + 46 + struct.unpack_from("<H", b, cd + 28)[0]
            b[name_end:name_end] = extra
            grow = len(extra)
            struct.pack_into("<Q", b, z.zip64_eocd + grow + 40, z.cd_size + grow)
            struct.pack_into("<Q", b, z.zip64_locator + grow + 8, z.zip64_eocd + grow)
            struct.pack_into("<I", b, z.eocd + grow + 12, z.cd_size + grow)
        else:
            struct.pack_into("<I", b, cd + 24, declared)
        return b

    # A storage record of 2^38 floats (1 TiB), deflated into a few bytes: the pickle agrees.
    tb = tensor_pickle(numel=2**38, size=(2**38,), stride=(1,))
    add("bomb_deflate_declares_1tb.pt", deflated_variant(1 << 40, zeros, 1, tb), "maximum ratio")
    tb2 = tensor_pickle(numel=2**39, size=(2**39,), stride=(1,))
    add("bomb_deflate_declares_2tb.pt", deflated_variant(2 << 40, zeros, 1, tb2), "more than the limit")
    add("bomb_deflate_pkl_declares_1tb.pt", deflated_variant(1 << 40, zeros), "data.pkl of 1099511627776 bytes exceeds the limit")
    add("bomb_deflate_inflates_past_declared.pt", deflated_variant(1000, zeros), "inflates to more than its declared 1000 bytes")
    add("bomb_deflate_garbage.pt", deflated_variant(100, b"\xff" * 40), "invalid deflate data")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    mixed = comp.compress(bytes((i * i + 7 * i) % 251 for i in range(10240))) + comp.flush()
    add("bomb_deflate_truncated_stream.pt", deflated_variant(10240, mixed[: len(mixed) // 2]), "before its deflate stream does")

    # ------------------------------------------------------------------ malformed zip structures
    def variant(name, phrase, fn, recs=None, **kw):
        z = Zip(recs if recs is not None else checkpoint(), **kw)
        fn(z)
        add(name, z.bytes, phrase)

    variant("zip_eocd_bad_signature.pt", "no end of central directory record", lambda z: z.patch(z.eocd, "<I", 0x06054b51))
    variant("zip_eocd_comment_past_end.pt", "no end of central directory record", lambda z: z.patch(z.eocd + 20, "<H", 500))
    variant("zip_eocd_disk_nonzero.pt", "disagrees with the zip64", lambda z: z.patch(z.eocd + 4, "<H", 1))
    variant("zip_eocd_entries_disagree_zip64.pt", "disagrees with the zip64", lambda z: z.patch(z.eocd + 10, "<H", 2))
    variant("zip_eocd_cd_size_disagrees_zip64.pt", "disagrees with the zip64", lambda z: z.patch(z.eocd + 12, "<I", 7))
    variant("zip_eocd_only_disk_nonzero.pt", "multi-disk", lambda z: z.patch(z.eocd + 6, "<H", 3), zip64_end=False)
    variant("zip_eocd_only_counts_disagree.pt", "entries on this disk", lambda z: z.patch(z.eocd + 8, "<H", 2), zip64_end=False)
    variant("zip_eocd_only_entries_more.pt", "cannot fit in a central directory",
            lambda z: z.patch(z.eocd + 8, "<H", 4).patch(z.eocd + 10, "<H", 4), zip64_end=False)
    variant("zip_eocd_only_entries_fewer.pt", "but it is declared to end", lambda z: z.patch(z.eocd + 8, "<H", 2)
            .patch(z.eocd + 10, "<H", 2), zip64_end=False)
    variant("zip_eocd_entries_zero.pt", "has no records", lambda z: z.patch(z.eocd + 8, "<H", 0).patch(z.eocd + 10, "<H", 0)
            .patch(z.eocd + 12, "<I", 0).patch(z.eocd + 16, "<I", z.eocd), zip64_end=False)
    variant("zip_zip64_eocd_bad_signature.pt", "no zip64 end of central directory signature", lambda z: z.patch(z.zip64_eocd, "<I", 0))
    variant("zip_zip64_eocd_disk_nonzero.pt", "multi-disk", lambda z: z.patch(z.zip64_eocd + 16, "<I", 1))
    variant("zip_zip64_eocd_counts_differ.pt", "entry counts differ", lambda z: z.patch(z.zip64_eocd + 24, "<Q", 2))
    variant("zip_zip64_eocd_record_size_small.pt", "declares a size of", lambda z: z.patch(z.zip64_eocd + 4, "<Q", 10))
    variant("zip_zip64_locator_disks_2.pt", "multi-disk", lambda z: z.patch(z.zip64_locator + 16, "<I", 2))
    variant("zip_zip64_locator_disk_1.pt", "multi-disk", lambda z: z.patch(z.zip64_locator + 4, "<I", 1))
    variant("zip_zip64_locator_points_to_cd.pt", "no zip64 end of central directory signature",
            lambda z: z.patch(z.zip64_locator + 8, "<Q", z.cd_offset))
    variant("zip_cd_bad_signature.pt", "has no signature", lambda z: z.patch(z.central[1], "<I", 0x02014b51))
    variant("zip_cd_name_length_past_end.pt", "running past the end of the central directory",
            lambda z: z.patch(z.central[-1] + 28, "<H", 60000))
    variant("zip_cd_extra_length_past_end.pt", "running past the end of the central directory",
            lambda z: z.patch(z.central[-1] + 30, "<H", 100))
    variant("zip_cd_comment_length_past_end.pt", "running past the end of the central directory",
            lambda z: z.patch(z.central[-1] + 32, "<H", 1))
    variant("zip_cd_encrypted.pt", "encrypted", lambda z: z.patch(z.central[1] + 8, "<H", 0x0809))
    variant("zip_cd_strong_encryption.pt", "encrypted", lambda z: z.patch(z.central[1] + 8, "<H", 0x0848))
    variant("zip_cd_method_bzip2.pt", "compression method 12", lambda z: z.patch(z.central[1] + 10, "<H", 12))
    variant("zip_cd_method_ffff.pt", "compression method 65535", lambda z: z.patch(z.central[1] + 10, "<H", 0xFFFF))
    variant("zip_cd_stored_sizes_differ.pt", "is stored but declares", lambda z: z.patch(z.central[1] + 20, "<I", 4))
    variant("zip_cd_disk_nonzero.pt", "multi-disk", lambda z: z.patch(z.central[1] + 34, "<H", 1))
    variant("zip_cd_offset_to_nowhere.pt", "no local header signature", lambda z: z.patch(z.central[1] + 42, "<I", 5))
    variant("zip_cd_offset_into_cd.pt", "runs past the start of the central directory",
            lambda z: z.patch(z.central[1] + 42, "<I", z.cd_offset))
    variant("zip_local_bad_signature.pt", "no local header signature", lambda z: z.patch(z.local[1], "<I", 0x04034b55))
    variant("zip_local_name_differs.pt", "but the central directory names", lambda z: z.patch(z.local[1] + 30, "<B", ord("X")))
    variant("zip_local_method_differs.pt", "says method 8", lambda z: z.patch(z.local[1] + 8, "<H", 8))
    variant("zip_local_encrypted.pt", "encrypted (local header flag)", lambda z: z.patch(z.local[1] + 6, "<H", 0x0809))
    variant("zip_local_extra_past_cd.pt", "running past the start of the central directory",
            lambda z: z.patch(z.local[-1] + 28, "<H", 0xFFFF))
    variant("zip_local_name_length_past_cd.pt", "running past the start of the central directory",
            lambda z: z.patch(z.local[-1] + 26, "<H", 0xFFFF))
    # data/0 claims 100 more bytes: its payload runs over the next record's local header.
    variant("zip_records_overlap.pt", "overlap", lambda z: z.patch(z.central[1] + 20, "<I", 124).patch(z.central[1] + 24, "<I", 124))
    # Two CD entries pointing at the same local header.
    variant("zip_two_entries_one_header.pt", "but the central directory names",
            lambda z: z.patch(z.central[2] + 42, "<I", z.local[1]))
    z = Zip(checkpoint(extra=[("data/0", f6)]))
    add("zip_duplicate_names.pt", z.bytes, "two records named 'archive/data/0'")
    add("zip_entry_outside_root.pt", zbytes(extra=[("/other/x", b"x")]), "lies outside the archive root")
    add("zip_entry_parent_dir.pt", zbytes(extra=[("/../evil", b"x")]), "lies outside the archive root")
    add("zip_entry_absolute.pt", bytes(Zip([Rec("/etc/passwd", b"x")] + checkpoint()).bytes), "not inside a folder")
    add("zip_first_name_no_slash.pt", bytes(Zip([Rec("data.pkl", tensor_pickle())] + checkpoint()[1:]).bytes), "not inside a folder")
    # Root 'a' (torch cuts at the first '/'): 'a/version' does not exist.
    add("zip_first_name_deeper_prefix.pt", bytes(Zip(checkpoint(root="a/b")).bytes), "no version record")
    add("zip_name_with_nul.pt", bytes(Zip(checkpoint(extra=[("x\0y", b"x")])).bytes), "NUL byte")
    add("zip_name_empty.pt", bytes(Zip(checkpoint() + [Rec("", b"x")]).bytes), "empty name")
    add("zip_name_with_newline.pt", bytes(Zip(checkpoint(extra=[("/evil\nroot/x", b"x")])).bytes), "lies outside the archive root")
    add("zip_missing_version.pt", zbytes(version=None), "no version record")
    add("zip_missing_data_pkl.pt", bytes(Zip([Rec("archive/version", b"3\n"), Rec("archive/data/0", f6)]).bytes),
        "data.pkl' record")
    add("zip_version_11.pt", zbytes(version=b"11\n"), "unsupported file format version 11")
    add("zip_version_0.pt", zbytes(version=b"0\n"), "unsupported file format version 0")
    add("zip_version_garbage.pt", zbytes(version=b"three\n"), "does not start with a number")
    add("zip_version_empty.pt", zbytes(version=b""), "does not start with a number")
    add("zip_version_huge_number.pt", zbytes(version=b"99999999999999999999999\n"), "unsupported file format version")
    add("zip_version_record_long.pt", zbytes(version=b"3" + b" " * 200), "version record is 201 bytes long")
    add("zip_data_version_11.pt", bytes(Zip(checkpoint(version=None, extra=[(".data/version", b"11\n")])).bytes),
        "unsupported file format version 11")
    add("zip_constants_pkl.pt", zbytes(extra=[("constants.pkl", PROTO2 + b")" + STOP)]), "TorchScript")
    add("zip_pytorch1_magic.pt", b"PYTORCH1" + b"\0" * 100, "not a PyTorch checkpoint")
    add("zip_only_local_signature.pt", b"PK\x03\x04", "too short")
    add("zip_empty_archive.pt", b"PK\x03\x04" + b"\0" * 26 + b"PK\x05\x06" + b"\0" * 12 + u32(30) + b"\0" * 2, "has no records")
    z = Zip(checkpoint())
    # The locator now points 4 bytes before the zip64 record.
    add("zip_bytes_between_cd_and_end.pt", bytes(z.bytes[:z.zip64_eocd]) + b"JUNK" + bytes(z.bytes[z.zip64_eocd:]),
        "zip64")

    # ------------------------------------------------------------------ truncation and bit flips
    base = bases["base"]
    for i, frac in enumerate([0.02, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.97, 0.995]):
        cut = max(5, int(len(base) * frac))
        add("trunc_zip_%02d_at_%d.pt" % (i, cut), base[:cut], "end of central directory")
    add("trunc_zip_last_byte.pt", base[:-1], "end of central directory")
    leg = bases["legacy"]
    legacy_cuts = [(20, "legacy protocol version"), (40, "legacy system info"), (150, "legacy object pickle"),
                   (len(leg) - 30, "truncated legacy storage"), (len(leg) - 1, "truncated legacy storage")]
    for cut, phrase in legacy_cuts:
        add("trunc_legacy_at_%d.pt" % cut, leg[:cut], phrase)

    def flip(data, offset, bit=0):
        b = bytearray(data)
        b[offset] ^= 1 << bit
        return bytes(b)

    with zipfile.ZipFile(io.BytesIO(base)) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    pkl_info = infos["base/data.pkl"]
    data_info = infos["base/data/0"]

    def payload_offset(info):
        h = info.header_offset
        nlen, xlen = struct.unpack_from("<HH", base, h + 26)
        return h + 30 + nlen + xlen

    add("flip_storage_payload.pt", flip(base, payload_offset(data_info) + 1, 3), "CRC-32 mismatch")
    add("flip_data_pkl_payload.pt", flip(base, payload_offset(pkl_info) + 40, 1), "CRC-32 mismatch")
    # The CRC field of the first central-directory entry (data.pkl).
    add("flip_cd_crc.pt", flip(base, base.find(b"PK\x01\x02") + 16, 0), "CRC-32 mismatch")

    # ------------------------------------------------------------------ legacy stream attacks
    MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
    P1001 = b"\x80\x02M\xe9\x03."
    SYSINFO = PROTO2 + b"}(" + S("protocol_version") + b"M\xe9\x03" + S("little_endian") + b"\x88" + S("type_sizes") + b"}(" \
        + S("short") + I(2) + S("int") + I(4) + S("long") + I(4) + b"uu."

    def legacy_file(obj_pkl, keys, blobs, magic=MAGIC + b".", proto=P1001, sysinfo=SYSINFO):
        keylist = PROTO2 + b"](" + b"".join(S(k) for k in keys) + b"e."
        return magic + proto + sysinfo + obj_pkl + keylist + b"".join(blobs)

    def lobj(numel=6, size=(6,), stride=(1,), offset=0, key="1000", view=NONE):
        args = b"(" + T(S("storage"), G("torch", "FloatStorage"), S(key), S("cpu"), I(numel), view) + b"Q" + I(offset) \
            + T(*[I(s) for s in size]) + T(*[I(s) for s in stride]) + FALSE + ODICT + b"t"
        return PROTO2 + b"}" + S("w") + G("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."

    good_blob = u64(6) + f6
    add("legacy_control_ok_check.pt", legacy_file(lobj(), ["1000"], [good_blob])[:-1], "truncated legacy storage")
    add("legacy_bad_magic.pt", MAGIC + b"\x85." + P1001 + SYSINFO + lobj() + PROTO2 + b"]" + S("1000") + b"a." + good_blob,
        "invalid magic number")
    add("legacy_bad_magic_bytes.pt", MAGIC[:-1] + b"\x1a." + P1001, "not a PyTorch checkpoint")
    add("legacy_protocol_1000.pt", legacy_file(lobj(), ["1000"], [good_blob], proto=b"\x80\x02M\xe8\x03."),
        "unsupported legacy protocol version")
    add("legacy_protocol_str.pt", legacy_file(lobj(), ["1000"], [good_blob], proto=PROTO2 + S("1001") + b"."),
        "unsupported legacy protocol version")
    add("legacy_sysinfo_not_dict.pt", legacy_file(lobj(), ["1000"], [good_blob], sysinfo=PROTO2 + b"]."), "malformed legacy system info")
    add("legacy_sysinfo_big_endian.pt", legacy_file(lobj(), ["1000"], [good_blob], sysinfo=SYSINFO.replace(b"\x88", b"\x89")),
        "big-endian legacy files are not supported")
    add("legacy_storage_data_short.pt", legacy_file(lobj(), ["1000"], [u64(6) + f6[:20]]), "truncated legacy storage")
    add("legacy_storage_header_short.pt", legacy_file(lobj(), ["1000"], [u64(6)[:5]]), "truncated legacy storage header")
    add("legacy_storage_numel_mismatch.pt", legacy_file(lobj(), ["1000"], [u64(7) + f6 + b"\0" * 4]), "says 7 elements")
    add("legacy_keys_unknown_storage.pt", legacy_file(lobj(), ["1000", "2000"], [good_blob, good_blob]),
        "has data but no tensor uses it")
    add("legacy_keys_missing_storage.pt", MAGIC + b"." + P1001 + SYSINFO + lobj() + PROTO2 + b"].",
        "is used by a tensor but has no data")
    add("legacy_keys_not_list.pt", MAGIC + b"." + P1001 + SYSINFO + lobj() + PROTO2 + b"}." + good_blob, "not a list")
    add("legacy_keys_not_str.pt", MAGIC + b"." + P1001 + SYSINFO + lobj() + PROTO2 + b"]K\x01a." + good_blob, "not a str")
    add("legacy_declares_more_than_file.pt", legacy_file(lobj(numel=2**40, size=(2,), stride=(1,)), ["1000"], [good_blob]),
        "more bytes than the file holds")
    add("legacy_view_out_of_range.pt", legacy_file(lobj(view=T(S("v1"), I(4), I(10)), size=(2,)), ["1000"], [good_blob]),
        "lies outside storage")
    add("legacy_view_negative.pt", legacy_file(lobj(view=T(S("v1"), I(-1), I(2)), size=(2,)), ["1000"], [good_blob]),
        "lies outside storage")
    add("legacy_view_metadata_bad.pt", legacy_file(lobj(view=S("v1"), size=(2,)), ["1000"], [good_blob]),
        "view metadata must be")
    add("legacy_pid_5_fields.pt", MAGIC + b"." + P1001 + SYSINFO + PROTO2 + pid("1000", 6) + b"." + PROTO2 + b"].",
        "fields (expected 6)")
    add("legacy_storage_in_header.pt", MAGIC + b"." + P1001 + PROTO2 + pid("k", 1) + b".",
        "unexpected storage in a legacy header pickle")
    add("legacy_real_torch_truncated_data.pt", bases["legacy"][:-3], "truncated legacy storage")

    # ------------------------------------------------------------------ other formats
    add("torchscript_real_torch.pt", bases["torchscript"], "TorchScript")
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for n, d in [("sys_info", b"x"), ("pickle", b"y"), ("tensors", b"z"), ("storages", b"w")]:
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(d))
    add("tar_legacy_archive.pt", tbuf.getvalue(), "tar archive")
    add("misc_empty_file.pt", b"", "empty")
    add("misc_random_bytes.pt", bytes((i * 7919 + 13) % 256 for i in range(4096)), "not a PyTorch checkpoint")
    add("misc_plain_pickle.pt", PROTO2 + b"}" + STOP, "not a PyTorch checkpoint")
    # safetensors is read (by content); this one's header claims more bytes than the file has.
    add("misc_safetensors_header.pt", u64(100) + b"{}", "claims 100 bytes")
    add("misc_gzip.pt", b"\x1f\x8b\x08\x00" + b"\0" * 20, "not a PyTorch checkpoint")

    # ------------------------------------------------------------------ write
    os.makedirs(out_dir, exist_ok=True)
    names = [n for n, _, _ in entries]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, dup
    for old in os.listdir(out_dir):
        if old.endswith(".pt"):
            os.remove(os.path.join(out_dir, old))
    for name, data, _ in entries:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out_dir, "MANIFEST.tsv"), "w") as f:
        f.write("# file\texpected phrase in the error message (case-insensitive); generated by make_corpus.py\n")
        for name, _, phrase in entries:
            f.write("%s\t%s\n" % (name, phrase))
    total = sum(len(d) for _, d, _ in entries)
    print("make_corpus: %d files, %d bytes in %s" % (len(entries), total, out_dir))


if __name__ == "__main__":
    # TorchScript code lists class attributes in set order: fix the hash seed for reproducibility.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    build(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
