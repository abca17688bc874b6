#!/usr/bin/env python3
"""SuperGradients' checkpoint lifecycle between torch and sgckpt, both ways.

1. torch writes, sgckpt resolves: checkpoints laid out and filled the way SuperGradients 3.7
   writes them (plain torch: the keys, nesting and types of docs/supergradients.md §1, an SGD state and
   a MultiStepLR state) in <root>/<exp>/RUN_*/. `sgckpt resolve --json` must pick SG's
   directory and file in each mode (resume = newest run holding ckpt_latest.pth, run_id,
   resume_path = a NEW run dir, ckpt_name), fail cleanly naming the path, and create nothing;
   `sgckpt inspect --json` must read the chosen file exactly; `sgckpt runs --json` must list
   the runs newest first with the best metric.

2. sgckpt writes, torch reads: examples/ckpt_lifecycle_demo (a fake 5-epoch training of an MLP
   state through sgckpt::CheckpointManager, stopped after epoch 3 and resumed from its stored
   recipe) writes a run. In torch: `net` and `ema_net` of every file load into the same
   nn.Module with load_state_dict(strict=True); `optimizer_state_dict` loads into
   torch.optim.SGD and `torch_scheduler_state_dict` into MultiStepLR; the metadata (epoch, acc,
   metrics, best) is SG's; ckpt_best stays at epoch 2 across the resume; average_model.pth is
   the mean of the averaging snapshots with integral buffers. And the oracle for the resume
   itself: torch replays epochs 3-5 from ckpt_epoch_2.pth with its own SGD / MultiStepLR and
   must reach ckpt_epoch_5.pth (weights, momentum buffers, scheduler, EMA), although the C++
   run was stopped and resumed in between.

Environment: SGCKPT_TOOL (the sgckpt binary), SGCKPT_EXAMPLES_DIR (the built examples; default
<dir of SGCKPT_TOOL>/../examples, then <build>/examples found from the tool path).
Run: SGCKPT_TOOL=build/tools/sgckpt /usr/bin/python3 tests/python/test_ckpt_resume_torch.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/ckpt_resume_torch, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

RUN_RE = re.compile(r"^RUN_\d{8}_\d{6}_\d{6}$")
STEPS_PER_EPOCH = 4  # must match examples/ckpt_lifecycle_demo.cpp
EMA_DECAY = 0.9


def make_model():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def make_optim(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3], gamma=0.1)
    return opt, sched


def tree(root):
    return sorted(str(p) for p in pathlib.Path(root).rglob("*"))


def run_json(tool, args):
    res = oracle.run_tool(tool, args)
    oracle.assert_ok(res)
    return json.loads(res.stdout.decode("utf-8")), res


# ---------------------------------------------------------------------------------------------
# 1. torch writes like SuperGradients, sgckpt resolves and reads


def sg_checkpoint(seed, epoch, acc, best_acc):
    """The dict SG's Trainer._save_checkpoint builds (docs/supergradients.md §1), from real torch objects."""
    torch.manual_seed(seed)
    model = make_model()
    opt, sched = make_optim(model)
    for e in range(epoch):
        for _ in range(2):
            model(torch.randn(5, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
        sched.step()
    metrics = {"tracked_metric_name": "Accuracy", "valid": {"Accuracy": acc, "Top5": 0.99}, "train": {"Accuracy": acc - 0.1}}
    best = {"tracked_metric_name": "Accuracy", "valid": {"Accuracy": best_acc, "Top5": 0.98}, "train": {"Accuracy": 0.3}}
    return {
        "net": model.state_dict(),
        "acc": acc,
        "epoch": epoch,
        "metrics": metrics,
        "packages": {"torch": str(torch.__version__), "super-gradients": "3.7.1"},
        "_best_ckpt_metrics": best,
        "optimizer_state_dict": opt.state_dict(),
        "scaler_state_dict": {},
        "torch_scheduler_state_dict": sched.state_dict(),
    }


def part_sg_writes(r, tool, base):
    root = os.path.join(base, "sg_ckpts")
    exp_dir = os.path.join(root, "cifar_exp")
    r1 = os.path.join(exp_dir, "RUN_20240101_120000_000001")
    r2 = os.path.join(exp_dir, "RUN_20240102_120000_000002")
    r3 = os.path.join(exp_dir, "RUN_20240103_120000_000003")  # newest: crashed before its first validation
    for d in (r1, r2, r3):
        os.makedirs(d)
    torch.save(sg_checkpoint(1, 2, 0.41, 0.45), os.path.join(r1, "ckpt_latest.pth"))
    torch.save(sg_checkpoint(2, 4, 0.62, 0.70), os.path.join(r2, "ckpt_latest.pth"))
    torch.save(sg_checkpoint(3, 3, 0.70, 0.70), os.path.join(r2, "ckpt_best.pth"))
    with open(os.path.join(exp_dir, "RUN_notes"), "w"):
        pass  # not a run
    before = tree(root)

    def resume_latest():
        out, res = run_json(tool, ["resolve", "--json", root, "cifar_exp"])
        assert out == {
            "mode": "resume",
            "run_dir": r2,
            "checkpoint": os.path.join(r2, "ckpt_latest.pth"),
            "new_run_dir": False,
        }, out
        assert list(out.keys()) == ["mode", "run_dir", "checkpoint", "new_run_dir"], out
        assert r3 in res.stderr_text and "warning" in res.stderr_text, "skipped newer run not reported: %r" % res.stderr_text

    def resume_best():
        out, _ = run_json(tool, ["resolve", "--json", root, "cifar_exp", "--ckpt-name", "ckpt_best.pth"])
        assert out["mode"] == "resume" and out["run_dir"] == r2, out
        assert out["checkpoint"] == os.path.join(r2, "ckpt_best.pth"), out

    def by_run_id():
        out, _ = run_json(tool, ["resolve", "--json", root, "cifar_exp", "--run-id", os.path.basename(r1)])
        assert out == {"mode": "run_id", "run_dir": r1, "checkpoint": os.path.join(r1, "ckpt_latest.pth"), "new_run_dir": False}, out

    def by_resume_path():
        src = os.path.join(r1, "ckpt_latest.pth")
        out, _ = run_json(tool, ["resolve", "--json", root, "cifar_exp", "--resume-path", src])
        assert out["mode"] == "resume_path" and out["new_run_dir"] is True, out
        assert out["checkpoint"] == src, out
        d = out["run_dir"]
        assert os.path.dirname(d) == exp_dir and RUN_RE.match(os.path.basename(d)), d
        assert d not in (r1, r2, r3) and not os.path.exists(d), "the branch dir must be new and not created: %s" % d
        assert os.path.basename(d) > os.path.basename(r3), "a new run sorts after the existing ones"

    def refusals():
        res = oracle.run_tool(tool, ["resolve", root, "cifar_exp", "--ckpt-name", "ckpt_epoch_9.pth"])
        oracle.assert_clean_refusal(res, ["not found"])
        assert os.path.join(r2, "ckpt_epoch_9.pth") in res.stderr_text and "searched the directory" in res.stderr_text, res.stderr_text
        res = oracle.run_tool(tool, ["resolve", root, "cifar_exp", "--run-id", "RUN_20990101_000000_000000"])
        oracle.assert_clean_refusal(res, ["Invalid run directory"])
        res = oracle.run_tool(tool, ["resolve", root, "other_exp"])
        oracle.assert_clean_refusal(res, ["cannot resume"])
        assert os.path.join(root, "other_exp") in res.stderr_text, res.stderr_text
        res = oracle.run_tool(tool, ["resolve", root, "cifar_exp", "--resume-path", os.path.join(base, "missing.pth")])
        oracle.assert_clean_refusal(res, ["not found"])

    def inspect_resolved():
        out, _ = run_json(tool, ["resolve", "--json", root, "cifar_exp"])
        refused = oracle.check_inspect_json(tool, out["checkpoint"])
        assert refused is None, refused

    def runs_listing():
        out, _ = run_json(tool, ["runs", "--json", root, "cifar_exp"])
        assert [x["run_id"] for x in out["runs"]] == [os.path.basename(d) for d in (r3, r2, r1)], out
        assert out["runs"][0]["resumable"] is False and out["runs"][0]["checkpoints"] == [], out
        assert out["runs"][1]["checkpoints"] == ["ckpt_best.pth", "ckpt_latest.pth"], out
        # An SG file has no best_metric_value: the best file's acc is its best.
        assert out["runs"][1]["best"] == {"file": "ckpt_best.pth", "metric": "Accuracy", "value": 0.70, "epoch": 3}, out
        assert out["runs"][2]["best"] is None, out
        res = oracle.run_tool(tool, ["runs", root, "cifar_exp"])
        oracle.assert_ok(res)
        assert os.path.basename(r2) in res.stdout.decode(), res.stdout
        # A typo is an error naming the path, not "0 runs".
        res = oracle.run_tool(tool, ["runs", root + "-typo", "cifar_exp"])
        oracle.assert_clean_refusal(res, ["does not exist"])
        res = oracle.run_tool(tool, ["runs", root, "cifar_epx"])
        oracle.assert_clean_refusal(res, ["no experiment 'cifar_epx'"])
        assert "cifar_exp" in res.stderr_text, res.stderr_text
        res = oracle.run_tool(tool, ["--version"])
        oracle.assert_ok(res)
        header = (oracle.REPO / "include" / "sgckpt" / "version.hpp").read_text()
        version = re.search(r'SGCKPT_VERSION_STRING "([0-9.]+)"', header).group(1)
        assert res.stdout.decode().strip() == "sgckpt " + version, res.stdout

    def nothing_created():
        assert tree(root) == before, "a lookup changed the tree: %s" % sorted(set(tree(root)) ^ set(before))
        assert not os.path.exists(os.path.join(root, "other_exp"))

    r.check("sg: resume picks the newest run holding ckpt_latest.pth, same dir", resume_latest)
    r.check("sg: ckpt_name picks the file", resume_best)
    r.check("sg: run_id picks that run, same dir", by_run_id)
    r.check("sg: resume_path gives a new (uncreated) run dir", by_resume_path)
    r.check("sg: missing run/file/experiment refused cleanly, naming paths", refusals)
    r.check("sg: inspect --json reads the resolved SG checkpoint exactly", inspect_resolved)
    r.check("sg: runs --json lists runs newest first with best metric", runs_listing)
    r.check("sg: lookups created nothing", nothing_created)


# ---------------------------------------------------------------------------------------------
# 2. sgckpt writes through the manager, torch reads and replays


def find_demo(tool):
    del tool  # found like every example (oracle.require_example)
    return os.path.join(oracle.require_example("ckpt_lifecycle_demo"), "ckpt_lifecycle_demo")


def replay_epochs(ck2, first_epoch, end_epoch):
    """torch's own SGD / MultiStepLR / EMA from ckpt_epoch_2's state, the demo's rules."""
    model = make_model()
    model.load_state_dict(ck2["net"], strict=True)
    ema = make_model()
    ema.load_state_dict(ck2["ema_net"], strict=True)
    opt, sched = make_optim(model)
    opt.load_state_dict(ck2["optimizer_state_dict"])
    sched.load_state_dict(ck2["torch_scheduler_state_dict"])
    bn = model[1]
    for _e in range(first_epoch, end_epoch):
        for _s in range(STEPS_PER_EPOCH):
            for p in model.parameters():
                p.grad = p.detach().clone()  # the demo's gradient: the parameter itself
            opt.step()
            with torch.no_grad():
                bn.running_mean.mul_(0.9)
                bn.running_var.mul_(0.9).add_(0.1)
                bn.num_batches_tracked += 1
                msd = model.state_dict()
                for k, v in ema.state_dict().items():
                    if v.dtype.is_floating_point:
                        v.mul_(EMA_DECAY).add_(msd[k], alpha=1 - EMA_DECAY)
        sched.step()
    return model, ema, opt, sched


def assert_close_dicts(got, want, what, rtol=1e-5, atol=1e-6):
    assert list(got.keys()) == list(want.keys()), "%s: keys %s vs %s" % (what, list(got.keys()), list(want.keys()))
    for k in want:
        g, w = got[k], want[k]
        assert g.dtype == w.dtype and g.shape == w.shape, "%s/%s: %s%s vs %s%s" % (what, k, g.dtype, tuple(g.shape), w.dtype, tuple(w.shape))
        if w.dtype.is_floating_point:
            diff = (g - w).abs().max().item() if g.numel() else 0.0
            assert torch.allclose(g, w, rtol=rtol, atol=atol), "%s/%s: max abs diff %g" % (what, k, diff)
        else:
            assert torch.equal(g, w), "%s/%s: %s vs %s" % (what, k, g, w)


def part_sgckpt_writes(r, tool, base):
    demo = find_demo(tool)
    root = os.path.join(base, "demo_ckpts")
    files = {}
    state = {}

    def run_demo():
        p = subprocess.run(oracle.host_argv([demo, root]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0, "demo failed (%d): %s %s" % (p.returncode, out[-2000:], p.stderr.decode()[-2000:])
        last = out.strip().splitlines()[-1]
        assert last.startswith("run_dir="), last
        state["run"] = last[len("run_dir="):]
        for n in ("ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_2.pth", "ckpt_epoch_5.pth", "average_model.pth",
                  "averaging_snapshots.pkl"):
            files[n] = oracle.torch_load_full(os.path.join(state["run"], n))

    if not r.check("demo: runs; torch.load reads every file it wrote", run_demo):
        return
    run = state["run"]
    latest, best, ck2, ck5, avg = (files[n] for n in ("ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_2.pth", "ckpt_epoch_5.pth", "average_model.pth"))

    def layout():
        names = sorted(os.listdir(run))
        assert names == ["average_model.pth", "averaging_snapshots.pkl", "ckpt_best.pth", "ckpt_epoch_2.pth", "ckpt_epoch_5.pth",
                         "ckpt_latest.pth", "recipe.yaml"], names
        assert RUN_RE.match(os.path.basename(run)), run
        with open(os.path.join(run, "recipe.yaml")) as f:
            assert "max_epochs: 5" in f.read()

    def keys_and_types():
        want = ["net", "acc", "epoch", "metrics", "_best_ckpt_metrics", "optimizer_state_dict", "scaler_state_dict", "ema_net",
                "torch_scheduler_state_dict", "best_metric_name", "best_metric_value", "architecture", "num_classes",
                "in_channels", "sgckpt_schema_version", "rng_state", "data_order"]
        for name in ("ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_2.pth", "ckpt_epoch_5.pth"):
            ck = files[name]
            assert type(ck) is dict and list(ck.keys()) == want, "%s: %s" % (name, list(ck.keys()))
            assert type(ck["acc"]) is float and type(ck["epoch"]) is int, name
            assert type(ck["net"]) is collections.OrderedDict, "%s: net is %s" % (name, type(ck["net"]))
            assert set(ck["metrics"].keys()) == {"tracked_metric_name", "valid", "train"}, ck["metrics"]
            assert ck["metrics"]["tracked_metric_name"] == "Accuracy"
            assert ck["scaler_state_dict"] == {}, "scaler_state_dict must be {} with AMP off"
            assert ck["architecture"] == "mlp_4_8_3" and ck["num_classes"] == 3 and ck["in_channels"] == 4
            assert ck["sgckpt_schema_version"] == 1
            assert ck["rng_state"].dtype == torch.uint8 and type(ck["data_order"]) is list
        assert latest["epoch"] == 5 and latest["acc"] == 0.61, (latest["epoch"], latest["acc"])
        assert ck2["epoch"] == 2 and ck5["epoch"] == 5

    def best_across_resume():
        # Accuracy 0.30, 0.62, 0.50 | resume | 0.58, 0.61: the best is epoch 2 throughout.
        assert best["epoch"] == 2 and best["acc"] == 0.62, (best["epoch"], best["acc"])
        assert best["_best_ckpt_metrics"] == best["metrics"], "the best file must hold itself as best"
        for ck in (latest, ck5):
            assert ck["best_metric_name"] == "Accuracy" and ck["best_metric_value"] == 0.62, ck["best_metric_value"]
            assert ck["_best_ckpt_metrics"]["valid"]["Accuracy"] == 0.62, ck["_best_ckpt_metrics"]

    def load_into_torch():
        for name, ck in files.items():
            if name == "averaging_snapshots.pkl":
                continue
            m = make_model()
            res = m.load_state_dict(ck["net"], strict=True)
            assert not res.missing_keys and not res.unexpected_keys, res
            if "ema_net" in ck:
                make_model().load_state_dict(ck["ema_net"], strict=True)
        model = make_model()
        model.load_state_dict(latest["net"], strict=True)
        opt, sched = make_optim(model)
        fresh_groups = [dict(g) for g in opt.state_dict()["param_groups"]]
        fresh_sched = sched.state_dict()
        opt.load_state_dict(latest["optimizer_state_dict"])
        sched.load_state_dict(latest["torch_scheduler_state_dict"])
        saved = latest["optimizer_state_dict"]
        oracle.assert_group_keys_match(list(saved["param_groups"][0]), list(fresh_groups[0]), "optimizer param_groups/0")
        assert set(latest["torch_scheduler_state_dict"].keys()) == set(fresh_sched.keys())
        assert opt.param_groups[0]["lr"] == 0.1 * 0.1, opt.param_groups[0]["lr"]
        for i, p in enumerate(model.parameters()):
            assert torch.equal(opt.state[p]["momentum_buffer"], saved["state"][i]["momentum_buffer"]), i
        # It must be usable: one more step runs.
        for q in model.parameters():
            q.grad = torch.ones_like(q)
        opt.step()
        sched.step()
        assert sched.last_epoch == 6

    def torch_replays_the_resumed_run():
        model, ema, opt, sched = replay_epochs(ck2, 2, 5)
        assert_close_dicts(ck5["net"], model.state_dict(), "net")
        assert_close_dicts(ck5["ema_net"], ema.state_dict(), "ema_net")
        got = ck5["optimizer_state_dict"]
        want = opt.state_dict()
        oracle.assert_groups_match(got["param_groups"], want["param_groups"], "optimizer param_groups")
        for i in want["state"]:
            assert_close_dicts(got["state"][i], want["state"][i], "optimizer state %d" % i)
        assert ck5["torch_scheduler_state_dict"] == sched.state_dict(), (ck5["torch_scheduler_state_dict"], sched.state_dict())

    def average_model():
        assert list(avg.keys()) == ["net", "acc", "epoch", "metrics", "_best_ckpt_metrics", "torch_scheduler_state_dict",
                                    "best_metric_name", "best_metric_value", "architecture", "num_classes", "in_channels",
                                    "sgckpt_schema_version", "rng_state", "data_order"], list(avg.keys())
        snaps = files["averaging_snapshots.pkl"]
        filled = [snaps["snapshot%d" % i] for i in range(10) if snaps["snapshot%d" % i] is not None]
        assert len(filled) == 5, "5 validated epochs, 5 snapshots (EMA weights), got %d" % len(filled)
        for k, v in avg["net"].items():
            if v.dtype.is_floating_point:
                mean = torch.stack([s[k].double() for s in filled]).mean(0).float()
                assert torch.allclose(v, mean, rtol=1e-6, atol=1e-7), k
            else:
                assert v.dtype == torch.int64, "%s: integer buffers must stay integral, got %s" % (k, v.dtype)
        # The snapshots are the EMA weights: the last one equals epoch 5's ema_net.
        assert any(all(torch.equal(s[k], ck5["ema_net"][k]) for k in s) for s in filled), "no snapshot equals the EMA net"

    def tool_sees_the_run():
        out, _ = run_json(tool, ["runs", "--json", root, "lifecycle_demo"])
        assert len(out["runs"]) == 1 and out["runs"][0]["path"] == run, out
        assert out["runs"][0]["best"] == {"file": "ckpt_best.pth", "metric": "Accuracy", "value": 0.62, "epoch": 2}, out
        assert out["runs"][0]["recipe"] is True and out["runs"][0]["resumable"] is True
        res, _ = run_json(tool, ["resolve", "--json", root, "lifecycle_demo", "--ckpt-name", "ckpt_best.pth"])
        assert res == {"mode": "resume", "run_dir": run, "checkpoint": os.path.join(run, "ckpt_best.pth"), "new_run_dir": False}, res
        refused = oracle.check_inspect_json(tool, os.path.join(run, "ckpt_latest.pth"))
        assert refused is None, refused

    r.check("demo: run directory layout", layout)
    r.check("demo: SG keys and Python types in every full checkpoint", keys_and_types)
    r.check("demo: best stays at epoch 2 across the resume", best_across_resume)
    r.check("demo: net/ema_net load strictly; SGD and MultiStepLR states load", load_into_torch)
    r.check("demo: torch replaying epochs 3-5 from ckpt_epoch_2 reaches ckpt_epoch_5", torch_replays_the_resumed_run)
    r.check("demo: average_model.pth = mean of the EMA snapshots, integers kept", average_model)
    r.check("demo: sgckpt runs/resolve/inspect see the run", tool_sees_the_run)


def main():
    r = oracle.Runner("test_ckpt_resume_torch: SG checkpoint lifecycle, torch <-> sgckpt")
    tool = oracle.require_tool()
    with tempfile.TemporaryDirectory(prefix="sgckpt_resume_") as d:
        part_sg_writes(r, tool, d)
        part_sgckpt_writes(r, tool, d)
    r.finish()


if __name__ == "__main__":
    main()
