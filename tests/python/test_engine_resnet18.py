#!/usr/bin/env python3
"""The engine's ResNet18 (CPU backend) against torch.

Builds SuperGradients' ResNet18-CIFAR in torch (CifarResNet + BasicResNetBlock, the same module
names: conv1, bn1, layer1..4, shortcut, drop_path, avgpool, linear), at reduced width, with
random weights and non-trivial BatchNorm running statistics, writes them with torch.save, and
runs the engine through tests/drivers/resnet18_forward and tests/drivers/resnet18_init:

  * eval mode: logits (relative error < 1e-4);
  * training mode: logits, loss (< 1e-5), the gradient of every parameter (< 1e-4 relative to
    its largest magnitude), running statistics and num_batches_tracked after the forward;
  * label smoothing 0.1; another configuration (1 input channel, 7 classes, 28x28 images);
  * top-1 / top-5 counts against torch.topk;
  * a state_dict written by the engine loads into the torch module with strict=True and has
    torch's key order, shapes, dtypes and _metadata; its initialization follows torch's rules;
  * a state_dict with wrong keys or shapes is refused with every problem listed.

Environment: SGCKPT_DRIVERS_DIR (the built test drivers), else $SGCKPT_BINARY_DIR/tests/drivers,
else <repo>/build*/tests/drivers.
Run: SGCKPT_DRIVERS_DIR=build/tests/drivers /usr/bin/python3 tests/python/test_engine_resnet18.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/engine_resnet18, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import math  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

nn = torch.nn
F = torch.nn.functional

# ------------------------------------------------------------------------------------------
# SuperGradients' ResNet18-CIFAR (super_gradients/training/models/classification_models/resnet.py)


def width_multiplier(original, factor):
    return int(original * factor)


class DropPath(nn.Module):
    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return x


class BasicResNetBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1, expansion=1):
        super().__init__()
        self.expansion = expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_path = DropPath(0.0)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.drop_path(out)
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10, width_mult=1.0, in_channels=3):
        super().__init__()
        self.in_planes = width_multiplier(64, width_mult)
        self.conv1 = nn.Conv2d(in_channels, width_multiplier(64, width_mult), kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width_multiplier(64, width_mult))
        self.layer1 = self._make_layer(width_multiplier(64, width_mult), num_blocks[0], stride=1)
        self.layer2 = self._make_layer(width_multiplier(128, width_mult), num_blocks[1], stride=2)
        self.layer3 = self._make_layer(width_multiplier(256, width_mult), num_blocks[2], stride=2)
        self.layer4 = self._make_layer(width_multiplier(512, width_mult), num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width_multiplier(512, width_mult), num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicResNetBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = self.avgpool(out)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def randomize(model, seed):
    """Random weights and non-trivial BatchNorm state (default init is weight 1, bias 0, stats 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(0, 1000, (1,), generator=g)))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound * math.sqrt(3))
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * bound)


# ------------------------------------------------------------------------------------------
# The engine's programs


DRIVERS = oracle.require_driver("resnet18_forward", "resnet18_init")


def run(program, args, expect_ok=True):
    p = subprocess.run(oracle.host_argv([os.path.join(DRIVERS, program)] + list(args)), capture_output=True, timeout=120)
    if expect_ok and p.returncode != 0:
        raise AssertionError("%s %s: exit %d: %s" % (program, " ".join(map(str, args)), p.returncode, p.stderr.decode(errors="replace")))
    return p


def rel_err(a, b):
    """max |a - b| / max |b| (b is the reference)."""
    a = a.double()
    b = b.double()
    assert a.shape == b.shape, "shapes differ: %s vs %s" % (tuple(a.shape), tuple(b.shape))
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


WORST = {}  # what -> worst error seen, printed at the end


def expect_close(what, a, b, tol):
    e = rel_err(a, b)
    WORST[what] = max(WORST.get(what, 0.0), e)
    assert e < tol, "%s: relative error %.3g >= %.1g" % (what, e, tol)


# ------------------------------------------------------------------------------------------
# Checks


class Case:
    """A torch model with random weights, an input batch, and the files the engine reads."""

    def __init__(self, d, name, width, classes, channels, hw, n, seed):
        torch.manual_seed(seed)
        self.model = CifarResNet(num_classes=classes, width_mult=width, in_channels=channels)
        randomize(self.model, seed)
        self.x = torch.randn(n, channels, hw, hw)
        self.y = torch.randint(0, classes, (n,))
        self.weights = os.path.join(d, name + "_weights.pth")
        self.input = os.path.join(d, name + "_input.pth")
        self.dir = d
        self.name = name
        torch.save(self.model.state_dict(), self.weights)
        torch.save({"x": self.x, "y": self.y}, self.input)

    def torch_model(self):
        m = CifarResNet(
            num_classes=self.model.linear.out_features,
            width_mult=self.model.conv1.out_channels / 64,
            in_channels=self.model.conv1.in_channels,
        )
        m.load_state_dict(torch.load(self.weights), strict=True)
        return m

    def engine(self, *flags):
        out = os.path.join(self.dir, "%s_out_%d.pth" % (self.name, len(os.listdir(self.dir))))
        run("resnet18_forward", [self.weights, self.input, out] + list(flags))
        return torch.load(out)


def check_eval(case):
    m = case.torch_model().eval()
    with torch.no_grad():
        ref = m(case.x)
        loss = F.cross_entropy(ref, case.y)
    out = case.engine()
    assert out["logits"].dtype == torch.float32 and out["logits"].shape == ref.shape
    expect_close("eval logits", out["logits"], ref, 1e-4)
    expect_close("eval loss", out["loss"], loss, 1e-5)


def check_train(case, label_smoothing=0.0):
    m = case.torch_model().train()
    logits = m(case.x)
    loss = F.cross_entropy(logits, case.y, label_smoothing=label_smoothing)
    m.zero_grad()
    loss.backward()
    flags = ["--train"] + (["--label-smoothing", label_smoothing] if label_smoothing else [])
    out = case.engine(*flags)
    tag = "train" + (" ls=%g" % label_smoothing if label_smoothing else "")

    expect_close(tag + " logits", out["logits"], logits.detach(), 1e-4)
    assert out["loss"].dim() == 0 and out["loss"].dtype == torch.float32, "loss must be a 0-dim float32 tensor"
    expect_close(tag + " loss", out["loss"], loss.detach(), 1e-5)

    # Gradients are checked against torch in float64: torch 1.13's own float32 backward is off
    # by up to 8% of the largest gradient of some layers on some CPUs (AMD EPYC, Debian's
    # build), where the engine agrees with float64 to 2e-6.
    md = case.torch_model().double().train()
    loss_d = F.cross_entropy(md(case.x.double()), case.y, label_smoothing=label_smoothing)
    md.zero_grad()
    loss_d.backward()
    params = dict(md.named_parameters())
    grads = out["grads"]
    assert list(grads.keys()) == list(params.keys()), "gradient names/order differ from named_parameters()"
    for name, p in params.items():
        expect_close(tag + " grads", grads[name], p.grad, 1e-4)

    sd = m.state_dict()
    state = out["state"]
    assert list(state.keys()) == list(sd.keys()), "state_dict keys differ"
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert state[k].dtype == torch.int64 and state[k].item() == v.item(), "%s: %s vs %s" % (k, state[k], v)
        elif "running" in k:
            expect_close(tag + " running stats", state[k], v, 1e-5)
        else:
            assert torch.equal(state[k], v), "parameter %s changed" % k


def check_topk(case):
    out = case.engine()
    logits = out["logits"]
    for k, key in ((1, "top1"), (5, "top5")):
        k = min(k, logits.shape[1])
        want = (logits.topk(k, 1).indices == case.y[:, None]).any(1).sum().item()
        assert out[key] == want, "%s: engine %s, torch %s" % (key, out[key], want)


def check_sg_checkpoint(case):
    """A SuperGradients checkpoint (state_dict under 'net') works as WEIGHTS."""
    ckpt = os.path.join(case.dir, "sg_ckpt.pth")
    torch.save({"net": torch.load(case.weights), "epoch": 3}, ckpt)
    out_a = os.path.join(case.dir, "sg_a.pth")
    out_b = os.path.join(case.dir, "sg_b.pth")
    run("resnet18_forward", [ckpt, case.input, out_a])
    run("resnet18_forward", [case.weights, case.input, out_b])
    assert torch.equal(torch.load(out_a)["logits"], torch.load(out_b)["logits"])


def check_threads_deterministic(case):
    """The same thread count gives bit-identical results; 1 and 2 threads agree closely."""
    outs = []
    for threads in (2, 2, 1):
        out = os.path.join(case.dir, "thr_%d_%d.pth" % (threads, len(outs)))
        run("resnet18_forward", [case.weights, case.input, out, "--train", "--threads", threads])
        outs.append(torch.load(out))
    for k in outs[0]["grads"]:
        assert torch.equal(outs[0]["grads"][k], outs[1]["grads"][k]), "2 threads twice: %s differs" % k
        expect_close("1 vs 2 threads grads", outs[2]["grads"][k], outs[0]["grads"][k], 1e-5)


def check_init(d, width, classes, channels):
    path = os.path.join(d, "init_%g_%d_%d.pth" % (width, classes, channels))
    run("resnet18_init", [width, classes, channels, 123, path])
    sd = torch.load(path)
    m = CifarResNet(num_classes=classes, width_mult=width, in_channels=channels)
    ref = m.state_dict()
    assert type(sd).__name__ == "OrderedDict", "state_dict is a %s" % type(sd).__name__
    assert list(sd.keys()) == list(ref.keys()), "key order differs:\n%s\n%s" % (list(sd.keys()), list(ref.keys()))
    for k, v in ref.items():
        assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, "%s: %s %s vs torch %s %s" % (k, sd[k].dtype, tuple(sd[k].shape), v.dtype, tuple(v.shape))
        assert not sd[k].requires_grad and type(sd[k]) is torch.Tensor, "%s: not a plain tensor" % k
    assert sd._metadata == ref._metadata, "_metadata differs:\n%s\n%s" % (sd._metadata, ref._metadata)
    assert type(sd._metadata).__name__ == "OrderedDict"
    m.load_state_dict(sd, strict=True)
    if width == 1.0 and classes == 10:
        assert len(sd) == 122, "%d entries" % len(sd)
        n = sum(p.numel() for p in m.parameters())
        assert n == 11173962, "%d parameters" % n

    # torch's default initialization rules
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            w = sd[name + ".weight"]
            assert w.abs().max() <= bound * (1 + 1e-6), "%s.weight exceeds the kaiming bound" % name
            if w.numel() >= 1000:
                std = w.std().item()
                assert abs(std - bound / math.sqrt(3)) < 0.05 * bound, "%s.weight std %.4g, expected %.4g" % (name, std, bound / math.sqrt(3))
                assert abs(w.mean().item()) < 0.05 * bound, "%s.weight mean %.3g" % (name, w.mean().item())
            if mod.bias is not None:
                b = sd[name + ".bias"]
                assert b.abs().max() <= bound * (1 + 1e-6) and b.abs().max() > 0, "%s.bias outside U(-1/sqrt(fan_in), ..)" % name
        elif isinstance(mod, nn.BatchNorm2d):
            assert torch.equal(sd[name + ".weight"], torch.ones_like(mod.weight))
            assert torch.equal(sd[name + ".bias"], torch.zeros_like(mod.bias))
            assert torch.equal(sd[name + ".running_mean"], torch.zeros_like(mod.running_mean))
            assert torch.equal(sd[name + ".running_var"], torch.ones_like(mod.running_var))
            assert sd[name + ".num_batches_tracked"].item() == 0


def check_init_seeds(d):
    paths = []
    for i, seed in enumerate((5, 5, 6)):
        p = os.path.join(d, "seed_%d_%d.pth" % (i, seed))
        run("resnet18_init", [0.25, 10, 3, seed, p])
        paths.append(torch.load(p))
    a, b, c = paths
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, different weights"
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"]), "different seeds, same weights"
    assert not torch.equal(a["layer1.0.conv1.weight"][0], a["layer1.0.conv2.weight"][0]), "layers share draws"


def check_refusal(case):
    sd = torch.load(case.weights)
    del sd["layer2.0.bn1.running_mean"]
    sd["layer9.weight"] = torch.zeros(3)
    sd["layer3.1.bn2.bias"] = torch.zeros(5)
    sd["layer1.0.bn1.num_batches_tracked"] = torch.tensor(1.0)
    bad = os.path.join(case.dir, "bad.pth")
    torch.save(sd, bad)
    p = run("resnet18_forward", [bad, case.input, os.path.join(case.dir, "bad_out.pth")], expect_ok=False)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, "exit %d, stderr %r" % (p.returncode, err)
    for phrase in ("missing from the checkpoint: 'layer2.0.bn1.running_mean'",
                   "unexpected in the checkpoint: 'layer9.weight'",
                   "model 'layer3.1.bn2.bias' [64] vs checkpoint 'layer3.1.bn2.bias' [5]"):
        assert phrase in err, "error message does not mention %r: %r" % (phrase, err)
    # A float num_batches_tracked is not a problem: it converts as torch's copy_ converts it.
    assert "num_batches_tracked" not in err, err
    assert not os.path.exists(os.path.join(case.dir, "bad_out.pth"))


def main():
    r = oracle.Runner("test_engine_resnet18: engine ResNet18 (CPU) vs torch")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="sgckpt_engine_") as d:
        cifar = Case(d, "cifar", width=0.25, classes=10, channels=3, hw=32, n=8, seed=1)
        fmnist = Case(d, "fmnist", width=0.5, classes=7, channels=1, hw=28, n=6, seed=2)
        r.check("eval: logits (width 0.25, N=8)", check_eval, cifar)
        r.check("train: logits, loss, grads, running stats", check_train, cifar)
        r.check("train: label smoothing 0.1", check_train, cifar, 0.1)
        r.check("eval + train: 1 channel, 7 classes, 28x28, width 0.5", lambda: (check_eval(fmnist), check_train(fmnist)))
        r.check("top-1 / top-5 counts", check_topk, cifar)
        r.check("SuperGradients checkpoint ('net') as weights", check_sg_checkpoint, cifar)
        r.check("threads: deterministic, 1 vs 2 agree", check_threads_deterministic, cifar)
        r.check("init: full width, 122 entries, loads strict, _metadata", check_init, d, 1.0, 10, 3)
        r.check("init: width 0.25, 100 classes, 1 channel", check_init, d, 0.25, 100, 1)
        r.check("init: seeds", check_init_seeds, d)
        r.check("refusal lists every problem", check_refusal, cifar)
    for what, e in sorted(WORST.items()):
        print("     worst relative error, %-28s %.3g" % (what + ":", e))
    r.finish()


if __name__ == "__main__":
    main()
