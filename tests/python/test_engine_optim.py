#!/usr/bin/env python3
"""The engine's optimizers and LR schedules (include/sgckpt/engine/optim/) against torch (1.13
and, with scripts/torch2-python, 2.x: the engine writes torch 1.13's state_dict layout, which
later torch loads by filling in the options it added).

Runs tests/drivers/optim_steps on parameters + per-step gradients written by torch.save and compares
with torch.optim doing the same:
  * SGD (momentum, nesterov, weight decay, dampening, maximize, momentum 0, two param groups,
    a param without grad, SG's zero weight decay on bias/BN), Adam / AdamW (amsgrad on/off,
    weight decay, maximize): parameters after 5 steps (relative error < 1e-6) and
    optimizer.state_dict() (keys, key order, Python types, tensors);
  * resuming from torch's state_dict (also with 1.6/1.11-style groups and int Adam `step`);
  * StepLR, MultiStepLR, CosineAnnealingLR: the lr after every step() (0..N, relative 1e-12) and
    the scheduler state_dict (same keys/order/types, floats within 1e-12), also after resuming;
  * SuperGradients' step / cosine / poly modes with linear epoch warm-up against a transcription
    of SG's callbacks (LRCallbackBase phases, per-epoch granularity).

Environment: SGCKPT_DRIVERS_DIR (the built test drivers), else $SGCKPT_BINARY_DIR/tests/drivers,
else <repo>/build*/tests/drivers.
Run: SGCKPT_DRIVERS_DIR=build/tests/drivers /usr/bin/python3 tests/python/test_engine_optim.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/engine_optim, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections  # noqa: E402
import copy  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

warnings.filterwarnings("ignore")

PROGRAM = "optim_steps"


DRIVERS = oracle.require_driver(PROGRAM)
TMP = tempfile.mkdtemp(prefix="sgckpt_optim_")
WORST = {}


def note(what, e):
    WORST[what] = max(WORST.get(what, 0.0), e)


def run_engine(cfg):
    n = len(os.listdir(TMP))
    inp = os.path.join(TMP, "in%d.pth" % n)
    out = os.path.join(TMP, "out%d.pth" % n)
    torch.save(cfg, inp)
    p = subprocess.run(oracle.host_argv([os.path.join(DRIVERS, PROGRAM), inp, out]), capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("optim_steps: exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
    return torch.load(out)


# ------------------------------------------------------------------------------------------ torch side

NAMES = [
    ("conv1.weight", (4, 3, 3, 3)),
    ("bn1.weight", (4,)),
    ("bn1.bias", (4,)),
    ("layer1.0.shortcut.0.weight", (4, 4, 1, 1)),
    ("layer1.0.shortcut.1.weight", (4,)),
    ("layer1.0.shortcut.1.bias", (4,)),
    ("linear.weight", (5, 4)),
    ("linear.bias", (5,)),
]


def make_inputs(seed, steps, drop=None):
    g = torch.Generator().manual_seed(seed)
    params = collections.OrderedDict((n, torch.randn(s, generator=g)) for n, s in NAMES)
    grads = []
    for k in range(steps):
        d = collections.OrderedDict()
        for n, s in NAMES:
            if drop and (k, n) in drop:
                continue
            d[n] = torch.randn(s, generator=g) * (0.5 + k)
        grads.append(d)
    return params, grads


def bias_or_bn(name):
    module = name.rsplit(".", 1)[0] if "." in name else ""
    if name.endswith(".bias") or module.endswith("shortcut.1"):
        return True
    return any(c.startswith("bn") for c in module.split(".")) if module else False


def torch_run(cfg):
    params = [(n, torch.nn.Parameter(t.clone())) for n, t in cfg["params"].items()]
    by_name = dict(params)
    oc = cfg["optimizer"]
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[oc["type"]]
    opts = dict(oc.get("options", {}))
    if oc.get("zero_wd_bias_bn"):
        # SG's order (separate_zero_wd_params_groups_for_optimizer): no decay first.
        groups = [
            {"params": [p for n, p in params if bias_or_bn(n)], "weight_decay": 0.0},
            {"params": [p for n, p in params if not bias_or_bn(n)]},
        ]
    elif oc.get("groups"):
        groups = [dict(g.get("options", {}), params=[by_name[n] for n in g["params"]]) for g in oc["groups"]]
    else:
        groups = [p for _, p in params]
    opt = cls(groups, **opts)
    if "load" in oc:
        opt.load_state_dict(copy.deepcopy(oc["load"]))
    sched = None
    sc = cfg.get("scheduler")
    if sc:
        last = sc.get("last_epoch", -1)
        if sc["type"] == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, sc["step_size"], sc["gamma"], last_epoch=last)
        elif sc["type"] == "multistep":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, sc["milestones"], sc["gamma"], last_epoch=last)
        elif sc["type"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, sc["T_max"], sc.get("eta_min", 0), last_epoch=last)
        if "load" in sc:
            sched.load_state_dict(copy.deepcopy(sc["load"]))
    grads = cfg.get("grads", [])
    steps = cfg.get("steps", len(grads))
    lrs = [[g["lr"] for g in opt.param_groups]]
    for s in range(steps):
        if s < len(grads):
            for n, p in params:
                p.grad = grads[s][n].clone() if n in grads[s] else None
            opt.step()
        if sched:
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    out = {
        "params": collections.OrderedDict((n, p.detach().clone()) for n, p in params),
        "optimizer": opt.state_dict(),
        "lrs": lrs,
    }
    if sched:
        out["scheduler"] = sched.state_dict()
    return out, opt, sched


# ------------------------------------------------------------------------------------------ comparison


def rel_err(a, b):
    a = a.double()
    b = b.double()
    scale = b.abs().max().item() if b.numel() else 0.0
    d = (a - b).abs().max().item() if b.numel() else 0.0
    return d / scale if scale > 0 else d


def same(a, b, path, tol_t, tol_f, what):
    """Deep equality with Python types, dict key order, tensor dtype/shape and tolerance."""
    if type(a) is not type(b):
        raise AssertionError("%s: type %s vs torch %s (%r vs %r)" % (path, type(a).__name__, type(b).__name__, a, b))
    if isinstance(b, dict):
        if list(a.keys()) != list(b.keys()):
            raise AssertionError("%s: keys %s vs torch %s" % (path, list(a.keys()), list(b.keys())))
        for k in b:
            same(a[k], b[k], "%s/%s" % (path, k), tol_t, tol_f, what)
    elif isinstance(b, (list, tuple)):
        if len(a) != len(b):
            raise AssertionError("%s: length %d vs torch %d" % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s/%d" % (path, i), tol_t, tol_f, what)
    elif isinstance(b, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            raise AssertionError("%s: tensor %s%s vs torch %s%s" % (path, a.dtype, tuple(a.shape), b.dtype, tuple(b.shape)))
        e = rel_err(a, b)
        note(what + " tensors", e)
        if not e <= tol_t:
            raise AssertionError("%s: relative error %.3g > %g" % (path, e, tol_t))
    elif isinstance(b, float):
        e = abs(a - b) / abs(b) if b != 0 else abs(a - b)
        note(what + " floats", e)
        if not e <= tol_f:
            raise AssertionError("%s: %r vs torch %r" % (path, a, b))
    elif a != b:
        raise AssertionError("%s: %r vs torch %r" % (path, a, b))


def same_optimizer(a, b, tol, what):
    """The engine's optimizer.state_dict() against torch's: exactly torch 1.13's (the layout the
    engine writes); under a later torch, what that torch makes of it on load is its own (see
    oracle.assert_groups_match), and a momentum-0 SGD's {momentum_buffer: None} entries, which
    only torch 1.13 records, are left out."""
    if oracle.TORCH_VERSION < (2, 0):
        same(a, b, "optimizer", tol, 0.0, what)
        return
    if list(a) != list(b):
        raise AssertionError("optimizer: keys %s vs torch %s" % (list(a), list(b)))
    oracle.assert_groups_match(a["param_groups"], b["param_groups"], "optimizer/param_groups")
    state = {k: v for k, v in a["state"].items() if not (list(v) == ["momentum_buffer"] and v["momentum_buffer"] is None)}
    same(state, b["state"], "optimizer/state", tol, 0.0, what)


def check_case(cfg, what, tol=1e-6):
    eng = run_engine(cfg)
    ref, _, _ = torch_run(cfg)
    for n in ref["params"]:
        e = rel_err(eng["params"][n], ref["params"][n])
        note(what + " params", e)
        if not e < tol:
            raise AssertionError("param %s: relative error %.3g" % (n, e))
    same_optimizer(eng["optimizer"], ref["optimizer"], tol, what)
    same(eng["lrs"], ref["lrs"], "lrs", 0.0, 1e-12, what)
    if "scheduler" in ref:
        same(eng["scheduler"], ref["scheduler"], "scheduler", 0.0, 1e-12, what)
        if type(ref["scheduler"].get("milestones")) is collections.Counter:
            # pickled as collections.Counter, key order as torch's
            if list(eng["scheduler"]["milestones"].items()) != list(ref["scheduler"]["milestones"].items()):
                raise AssertionError("milestones order")
    return eng, ref


def opt_case(kind, options, steps=5, seed=0, **extra):
    params, grads = make_inputs(seed, steps, extra.pop("drop", None))
    cfg = {"params": params, "grads": grads, "optimizer": dict({"type": kind, "options": options}, **extra)}
    return cfg


def check_resume(kind, options, legacy=None, k=2, steps=5, sched=None):
    """torch runs k steps and saves; the engine loads that state_dict (optionally rewritten to an
    older torch's form) and runs the remaining steps; result = torch's uninterrupted run."""
    params, grads = make_inputs(7, steps)
    first = {"params": params, "grads": grads[:k], "optimizer": {"type": kind, "options": options}}
    if sched:
        first["scheduler"] = dict(sched)
    _, opt, sch = torch_run(first)
    mid_params = collections.OrderedDict((n, p.detach().clone()) for n, p in zip(params, [q for g in opt.param_groups for q in g["params"]]))
    sd = copy.deepcopy(opt.state_dict())
    if legacy:
        legacy(sd)
    second = {"params": mid_params, "grads": grads[k:], "optimizer": {"type": kind, "options": options, "load": sd}}
    if sched:
        second["scheduler"] = dict(sched, load=sch.state_dict())
    eng = run_engine(second)
    full = {"params": params, "grads": grads, "optimizer": {"type": kind, "options": options}}
    if sched:
        full["scheduler"] = dict(sched)
    ref, _, _ = torch_run(full)
    for n in ref["params"]:
        e = rel_err(eng["params"][n], ref["params"][n])
        note("resume params", e)
        if not e < 1e-6:
            raise AssertionError("param %s: relative error %.3g" % (n, e))
    # the state dict matches torch's own resumed run (which keeps the loaded group keys)
    ref2, _, _ = torch_run(second)
    same_optimizer(eng["optimizer"], ref2["optimizer"], 1e-6, "resume")
    if sched:
        same(eng["scheduler"], ref["scheduler"], "scheduler", 0.0, 1e-12, "resume")


def legacy_sgd_16(sd):
    for g in sd["param_groups"]:
        for k in ("maximize", "foreach", "differentiable"):
            g.pop(k, None)
        g["initial_lr"] = g["lr"]


def legacy_adam_111(sd):
    for s in sd["state"].values():
        s["step"] = int(s["step"].item())
    for g in sd["param_groups"]:
        for k in ("foreach", "capturable", "differentiable", "fused"):
            g.pop(k, None)


def newer_2x(sd):
    for g in sd["param_groups"]:
        g["fused"] = None
        g["param_names"] = ["p%d" % i for i in g["params"]]


# ------------------------------------------------------------------------------------------ schedulers


def sched_case(sched, steps=30, groups=None, lr=0.1):
    params, _ = make_inputs(3, 0)
    oc = {"type": "sgd", "options": {"lr": lr, "momentum": 0.9}}
    if groups:
        oc["groups"] = groups
    return {"params": params, "grads": [], "steps": steps, "optimizer": oc, "scheduler": sched}


def sg_reference(sc, n):
    """SG's callbacks (super_gradients/training/utils/callbacks/callbacks.py), per epoch,
    train_loader_len 1: warm-up at TRAIN_EPOCH_START, cosine/poly at the batch step, step at
    TRAIN_EPOCH_END. Returns the lr each epoch 0..n trains with."""
    init = sc["initial_lr"]
    W = sc.get("lr_warmup_epochs", 0)
    winit = sc.get("warmup_initial_lr") or init / (W + 1)
    wstep = (init - winit) / W if W > 0 else 0
    mode = sc["mode"]
    lr = init
    out = []
    for epoch in range(n + 1):
        if W > 0 and W >= epoch:
            lr = winit + epoch * wstep
        if mode in ("cosine", "poly") and W <= epoch < sc["max_epochs"]:
            e = epoch - W
            E = sc["max_epochs"] - W
            if mode == "cosine":
                r = sc["cosine_final_lr_ratio"]
                x = 0.5 * init * (1.0 + np.cos(e / (E + 1) * math.pi))
                lr = float(x * (1 - r) + (init * r))
            else:
                lr = init * pow((1.0 - (e / E)), 0.9)
        out.append(lr)
        if mode == "step" and W <= epoch:
            lr = init * sc["lr_decay_factor"] ** len([x for x in sc["lr_updates"] if x <= epoch])
    return out


def check_sg(sc, n):
    params, _ = make_inputs(3, 0)
    cfg = {"params": params, "grads": [], "steps": n, "optimizer": {"type": "sgd", "options": {"lr": sc["initial_lr"]}},
           "scheduler": dict(sc, type="sg")}
    eng = run_engine(cfg)["lrs"]
    ref = sg_reference(sc, n)
    same(eng, ref, "sg lrs", 0.0, 1e-12, "SG schedule")


# ------------------------------------------------------------------------------------------ main


def main():
    r = oracle.Runner("test_engine_optim: engine optimizers / LR schedules vs torch")
    c = r.check
    c("SGD momentum 0.9", check_case, opt_case("sgd", {"lr": 0.1, "momentum": 0.9}), "SGD")
    c("SGD nesterov + weight_decay", check_case,
      opt_case("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}, seed=1), "SGD")
    c("SGD dampening + weight_decay + maximize", check_case,
      opt_case("sgd", {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01, "maximize": True}, seed=2), "SGD")
    c("SGD momentum 0 (momentum_buffer None), int lr types kept", check_case, opt_case("sgd", {"lr": 0.1}, seed=3), "SGD")
    c("SGD two groups, per-group options, a param without grad at first", check_case,
      opt_case("sgd", {"lr": 0.1, "momentum": 0.9}, seed=4,
               groups=[{"params": ["linear.weight", "linear.bias"], "options": {"lr": 0.01, "weight_decay": 5e-4}},
                       {"params": [n for n, _ in NAMES[:6]], "options": {"nesterov": True}}],
               drop={(0, "linear.weight"), (0, "bn1.bias"), (2, "conv1.weight")}), "SGD")
    c("SGD zero weight decay on bias and BN (SG)", check_case,
      opt_case("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}, seed=5, zero_wd_bias_bn=True), "SGD")
    for ams in (False, True):
        c("Adam amsgrad=%s" % ams, check_case, opt_case("adam", {"lr": 1e-2, "amsgrad": ams}, seed=10 + ams), "Adam")
        c("Adam weight_decay + maximize, amsgrad=%s" % ams, check_case,
          opt_case("adam", {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "amsgrad": ams,
                            "maximize": True}, seed=12 + ams), "Adam")
        c("AdamW amsgrad=%s" % ams, check_case, opt_case("adamw", {"lr": 1e-2, "amsgrad": ams}, seed=14 + ams), "AdamW")
        c("AdamW weight_decay 0.3, amsgrad=%s" % ams, check_case,
          opt_case("adamw", {"lr": 2e-2, "weight_decay": 0.3, "amsgrad": ams}, seed=16 + ams), "AdamW")
    c("resume SGD from torch 1.13 state_dict", check_resume, "sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4})
    c("resume SGD from a 1.6-style state_dict (+initial_lr)", check_resume, "sgd", {"lr": 0.1, "momentum": 0.9}, legacy_sgd_16)
    c("resume SGD from a 2.x-style state_dict (fused, param_names)", check_resume, "sgd", {"lr": 0.1, "momentum": 0.9}, newer_2x)
    c("resume Adam amsgrad from torch 1.13", check_resume, "adam", {"lr": 1e-2, "amsgrad": True})
    c("resume Adam from a 1.11-style state_dict (int step)", check_resume, "adam", {"lr": 1e-2}, legacy_adam_111)
    c("resume AdamW from a 2.x-style state_dict", check_resume, "adamw", {"lr": 1e-2}, newer_2x)

    c("StepLR(3, 0.5), 30 epochs", check_case, sched_case({"type": "step", "step_size": 3, "gamma": 0.5}), "StepLR")
    c("MultiStepLR([2,5,5,9], 0.3)", check_case,
      sched_case({"type": "multistep", "milestones": [9, 2, 5, 5], "gamma": 0.3}), "MultiStepLR")
    c("MultiStepLR SG recipe [100,150,200] 0.1, 250 epochs", check_case,
      sched_case({"type": "multistep", "milestones": [100, 150, 200], "gamma": 0.1}, steps=250), "MultiStepLR")
    c("CosineAnnealingLR(7), 30 epochs (past T_max)", check_case, sched_case({"type": "cosine", "T_max": 7}), "Cosine")
    c("CosineAnnealingLR(5, eta_min 0.001), two groups", check_case,
      sched_case({"type": "cosine", "T_max": 5, "eta_min": 0.001}, steps=23,
                 groups=[{"params": ["conv1.weight"], "options": {"lr": 0.5}},
                         {"params": [n for n, _ in NAMES[1:]]}]), "Cosine")
    c("CosineAnnealingLR(50), 120 epochs", check_case, sched_case({"type": "cosine", "T_max": 50}, steps=120), "Cosine")
    c("resume StepLR + SGD mid-run", check_resume, "sgd", {"lr": 0.1, "momentum": 0.9}, None, 4, 9,
      {"type": "step", "step_size": 2, "gamma": 0.5})
    c("resume CosineAnnealingLR + Adam mid-run", check_resume, "adam", {"lr": 1e-2}, None, 3, 8,
      {"type": "cosine", "T_max": 4, "eta_min": 0.0001})
    c("resume MultiStepLR + SGD mid-run", check_resume, "sgd", {"lr": 0.1, "momentum": 0.9}, None, 3, 8,
      {"type": "multistep", "milestones": [2, 4, 4, 6], "gamma": 0.5})

    c("SG step (cifar10_resnet recipe)", check_sg,
      {"mode": "step", "initial_lr": 0.1, "max_epochs": 250, "lr_updates": [100, 150, 200], "lr_decay_factor": 0.1}, 250)
    c("SG step + warm-up 5", check_sg,
      {"mode": "step", "initial_lr": 0.1, "max_epochs": 30, "lr_updates": [10, 20], "lr_decay_factor": 0.1,
       "lr_warmup_epochs": 5}, 30)
    c("SG cosine", check_sg, {"mode": "cosine", "initial_lr": 0.1, "max_epochs": 40, "cosine_final_lr_ratio": 0.01}, 45)
    c("SG cosine + warm-up 3 from 1e-3", check_sg,
      {"mode": "cosine", "initial_lr": 0.4, "max_epochs": 40, "cosine_final_lr_ratio": 0.1, "lr_warmup_epochs": 3,
       "warmup_initial_lr": 1e-3}, 45)
    c("SG poly + warm-up 2", check_sg, {"mode": "poly", "initial_lr": 0.05, "max_epochs": 20, "lr_warmup_epochs": 2}, 24)
    for what, e in sorted(WORST.items()):
        print("     worst relative error, %-28s %.3g" % (what + ":", e))
    r.finish()


if __name__ == "__main__":
    main()
