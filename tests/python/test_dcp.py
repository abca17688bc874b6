#!/usr/bin/env python3
"""torch.distributed.checkpoint (DCP) directories between torch 2.x and sgckpt
(include/sgckpt/io/dcp/, docs/dcp.md), in both directions, through `sgckpt convert`:

  * torch's dcp.save (one process) -> `sgckpt convert DIR out.pth` gives what torch's own
    dcp_to_torch_save gives, bit for bit;
  * torch's dcp.save by 2 processes (gloo, DTensor sharded on dim 0, uneven rows) -> merged
    into whole tensors;
  * `sgckpt convert in.pth DIR --dcp 3` (3 ranks' files) -> torch's dcp.load in one process,
    and by 2 gloo processes into DTensor shards (another world size than the one that saved);
  * hostile .metadata files made with torch's own dataclasses (a chunk outside its tensor,
    overlapping chunks, an offset past the file, a path out of the directory, another global)
    are refused by `sgckpt inspect` with one clear line, and nothing of them runs.

Runs under torch 2.x only. (torch 1.13 has no torch.distributed.checkpoint; tests/CMakeLists.txt
registers this script as python-torch2/dcp.) Environment: SGCKPT_TOOL (the built `sgckpt`).
"""
import os
import pickle
import socket
import sys
import tempfile
import warnings

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oracle  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.distributed.checkpoint import metadata as dmd  # noqa: E402
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # noqa: E402

warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process", TypedStorage
TOOL = oracle.require_tool()


def sample_state():
    g = torch.Generator().manual_seed(5)
    return {
        "model": {
            "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
            "bn.running_mean": torch.randn(4, generator=g, dtype=torch.float64),
            "bn.num_batches_tracked": torch.tensor(17),
            "fc.weight": torch.randn(5, 6, generator=g).to(torch.bfloat16),
            "fc.bias": torch.randn(5, generator=g).half(),
            "mask": torch.rand(3, 2, generator=g) > 0.5,
            "codes": torch.randint(0, 255, (7,), generator=g, dtype=torch.uint8),
            "empty": torch.zeros(0, 3),
        },
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.randn(4, 3, 3, 3, generator=g)}, 1: {"step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0, 1]}],
        },
        "ema": [torch.randn(2, 2, generator=g), torch.randn(3, generator=g)],
        "epoch": 12,
        "run": "dcp-test",
        "shape": (3, 4),
    }


def zeros_like_state(s):
    if isinstance(s, torch.Tensor):
        return torch.zeros_like(s)
    if isinstance(s, dict):
        return {k: zeros_like_state(v) for k, v in s.items()}
    if isinstance(s, list):
        return [zeros_like_state(v) for v in s]
    return s


def same(a, b, path="<root>"):
    """Equal values: tensors bit for bit with equal dtype and shape, containers alike."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), "%s: tensor vs %r" % (path, type(b))
        assert a.dtype == b.dtype and a.shape == b.shape, "%s: %s%s vs %s%s" % (path, a.dtype, tuple(a.shape), b.dtype, tuple(b.shape))
        assert oracle.tensor_bytes(a) == oracle.tensor_bytes(b), "%s: values differ" % path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a.keys()) == list(b.keys()), "%s: keys %r vs %r" % (path, list(a), list(b) if isinstance(b, dict) else b)
        for k in a:
            same(a[k], b[k], "%s/%s" % (path, k))
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), "%s: %r vs %r" % (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s/%d" % (path, i))
    else:
        assert type(a) is type(b) and a == b, "%s: %r vs %r" % (path, a, b)


def tool_ok(*args):
    res = oracle.run_tool(TOOL, list(args), timeout=120)
    oracle.assert_ok(res)
    return res.stdout.decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_two_ranks(fn, *args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["USE_LIBUV"] = "0"  # Debian's torch is built without libuv
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_rank_main, args=(fn, args), nprocs=2, join=True)


def _rank_main(rank, fn, args):
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    fn(rank, *args)
    dist.barrier()
    # No destroy_process_group: with gloo it sometimes waits forever for the peer's teardown.
    os._exit(0)


def _save_sharded(rank, path):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    full = sharded_source()
    state = {"w": distribute_tensor(full["w"], mesh, [Shard(0)]),
             "v": distribute_tensor(full["v"], mesh, [Shard(0)]),
             "b": full["b"], "step": 4}
    dcp.save(state, checkpoint_id=path)


def _load_sharded(rank, path, out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    full = sharded_source()
    state = {"w": distribute_tensor(torch.zeros_like(full["w"]), mesh, [Shard(0)]),
             "v": distribute_tensor(torch.zeros_like(full["v"]), mesh, [Shard(0)]),
             "b": torch.zeros_like(full["b"]), "step": 0}
    dcp.load(state, checkpoint_id=path)
    torch.save({"w": state["w"].to_local(), "v": state["v"].to_local(), "b": state["b"], "step": state["step"]},
               os.path.join(out, "rank%d.pth" % rank))


def sharded_source():
    return {"w": torch.arange(21, dtype=torch.float32).reshape(7, 3), "v": torch.arange(5, dtype=torch.int64),
            "b": torch.full((3,), 2.5), "step": 4}


def check_theirs_to_ours(tmp):
    src = os.path.join(tmp, "theirs")
    dcp.save(sample_state(), checkpoint_id=src)
    tool_ok("convert", src, os.path.join(tmp, "ours.pth"))
    dcp_to_torch_save(src, os.path.join(tmp, "ref.pth"))
    same(torch.load(os.path.join(tmp, "ref.pth"), weights_only=False), torch.load(os.path.join(tmp, "ours.pth")))
    out = tool_ok("inspect", src)
    assert out.startswith("format: torch.distributed.checkpoint directory, 1 data files"), out[:300]


def check_theirs_sharded(tmp):
    src = os.path.join(tmp, "theirs_sharded")
    on_two_ranks(_save_sharded, src)
    assert sorted(f for f in os.listdir(src)) == [".metadata", "__0_0.distcp", "__1_0.distcp"], os.listdir(src)
    tool_ok("convert", src, os.path.join(tmp, "merged.pth"))
    same(sharded_source(), torch.load(os.path.join(tmp, "merged.pth")))
    out = tool_ok("inspect", src)
    assert "2 data files" in out and "3 tensors in 5 chunks" in out, out[:300]


def check_ours_to_theirs(tmp):
    torch.save(sample_state(), os.path.join(tmp, "in.pth"))
    ours = os.path.join(tmp, "ours3")
    tool_ok("convert", os.path.join(tmp, "in.pth"), ours, "--dcp", "3")
    assert sorted(os.listdir(ours)) == [".metadata", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp"], os.listdir(ours)
    md = dcp.FileSystemReader(ours).read_metadata()
    assert len(md.state_dict_metadata["model.conv.weight"].chunks) == 3
    target = zeros_like_state(sample_state())
    dcp.load(target, checkpoint_id=ours)
    same(sample_state(), target)
    dcp_to_torch_save(ours, os.path.join(tmp, "ours3.pth"))
    ref = sample_state()
    ref["optimizer"]["state"] = {str(k): v for k, v in ref["optimizer"]["state"].items()}  # DCP keys are str
    same(ref, torch.load(os.path.join(tmp, "ours3.pth"), weights_only=False))
    # Another world size: 2 torch ranks load the 3 ranks' files into DTensor shards.
    torch.save(sharded_source(), os.path.join(tmp, "src.pth"))
    ours2 = os.path.join(tmp, "ours_for_two")
    tool_ok("convert", os.path.join(tmp, "src.pth"), ours2, "--dcp", "3")
    on_two_ranks(_load_sharded, ours2, tmp)
    full = sharded_source()
    for r, rows in ((0, slice(0, 4)), (1, slice(4, 7))):
        got = torch.load(os.path.join(tmp, "rank%d.pth" % r))
        same(full["w"][rows].contiguous(), got["w"], "rank%d/w" % r)
        same(full["v"][slice(0, 3) if r == 0 else slice(3, 5)].contiguous(), got["v"], "rank%d/v" % r)
        same(full["b"], got["b"])
        assert got["step"] == 4


class Evil:
    def __reduce__(self):
        return (os.system, ("touch %s" % EVIL_MARK,))


EVIL_MARK = os.path.join(tempfile.gettempdir(), "sgckpt-dcp-evil-%d" % os.getpid())


def check_hostile(tmp):
    base = os.path.join(tmp, "victim")
    dcp.save({"w": torch.arange(8.0).reshape(4, 2), "n": 3}, checkpoint_id=base)
    with open(os.path.join(base, ".metadata"), "rb") as f:
        good = f.read()

    def attempt(name, edit, phrases):
        md = pickle.loads(good)
        edit(md)
        with open(os.path.join(base, ".metadata"), "wb") as f:
            pickle.dump(md, f)
        res = oracle.run_tool(TOOL, ["inspect", base])
        oracle.assert_clean_refusal(res, phrases)
        print("     %-22s %s" % (name, res.stderr_text.strip()[:150]), flush=True)

    w = lambda md: md.state_dict_metadata["w"]  # noqa: E731
    attempt("chunk outside", lambda md: setattr(w(md).chunks[0], "sizes", torch.Size([5, 2])), ["outside the tensor"])

    def overlapping(md):
        w(md).chunks.append(dmd.ChunkStorageMetadata(offsets=torch.Size([1, 0]), sizes=torch.Size([2, 2])))
        key = [k for k in md.storage_data if k.fqn == "w"][0]
        md.storage_data[dmd.MetadataIndex("w", torch.Size([1, 0]), 1)] = md.storage_data[key]
    attempt("overlapping chunks", overlapping, ["overlap"])

    def past_end(md):
        key = [k for k in md.storage_data if k.fqn == "w"][0]
        md.storage_data[key].offset = 1 << 40
    attempt("offset past the file", past_end, ["runs past the end"])

    def escape(md):
        key = [k for k in md.storage_data if k.fqn == "w"][0]
        md.storage_data[key].relative_path = "../victim/__0_0.distcp"
    attempt("path out of the dir", escape, ["not a plain file name"])

    attempt("another global", lambda md: setattr(md, "planner_data", Evil()), ["refused global 'posix.system'"])
    attempt("missing field", lambda md: delattr(w(md), "properties"), ["field is missing"])
    attempt("deep path", lambda md: md.planner_data.__setitem__("w", ("w",) + (0,) * 5000), ["path of 5001 steps"])

    def padded(md):  # index 1 under two keys: 4 list slots for 2 entries
        md.planner_data["w"] = ("a", 1)
        md.planner_data["n"] = ("b", 1)
    attempt("list padding", padded, ["more list slots than there are entries"])

    with open(os.path.join(base, ".metadata"), "wb") as f:  # the good one again, then a linked data file
        f.write(good)
    data = os.path.join(base, "__0_0.distcp")
    os.rename(data, os.path.join(tmp, "elsewhere.distcp"))
    os.symlink(os.path.join(tmp, "elsewhere.distcp"), data)
    res = oracle.run_tool(TOOL, ["inspect", base])
    oracle.assert_clean_refusal(res, ["symbolic link"])
    print("     %-22s %s" % ("linked data file", res.stderr_text.strip()[:150]), flush=True)
    assert not os.path.exists(EVIL_MARK), "the .metadata ran os.system"


def main():
    R = oracle.Runner("torch.distributed.checkpoint directories, torch <-> sgckpt")
    with tempfile.TemporaryDirectory() as tmp:
        R.check("torch's dcp.save -> sgckpt convert gives dcp_to_torch_save's state", check_theirs_to_ours, tmp)
        R.check("torch's 2-rank DTensor save -> merged whole", check_theirs_sharded, tmp)
        R.check("sgckpt's 3-rank save -> torch's dcp.load, in 1 process and on 2 ranks", check_ours_to_theirs, tmp)
        R.check("hostile .metadata files are refused, nothing runs", check_hostile, tmp)
    R.finish()


if __name__ == "__main__":
    main()
