#!/usr/bin/env python3
"""The engine trains, checkpoints and resumes: examples/train_resnet18 against torch.

  * learning: ResNet18 (width 0.25) on 2,000 Fashion-MNIST images (Debian's
    dataset-fashion-mnist, padded to 32x32, 3 channels); the training loss falls and the
    accuracy on 1,000 held-out images exceeds 70% within 3 epochs;
  * torch agrees: ckpt_best.pth loads (weights_only=True where the torch has floats in its
    allowlist, 2.x; 1.13's lacks BINFLOAT, which every SG checkpoint needs for `acc`), its
    `net` and `ema_net` load into
    SuperGradients' ResNet18 in torch with strict=True, and torch's accuracy of `ema_net` on the
    same held-out images is the accuracy the checkpoint records (SG validates the EMA model);
    average_model.pth loads strictly too; `--evaluate ckpt_best.pth` (the run's stored recipe,
    the EMA weights) reports torch's accuracy and the file's recorded one, and --metrics-json
    writes them; `--evaluate PATH --recipe R` scores any file (SG's evaluate_recipe);
  * resume: a run killed (SIGKILL) in the middle of epoch 2 and resumed with --resume ends with
    the same ckpt_latest.pth, ckpt_best.pth and average_model.pth, bit for bit, as a run that
    was never interrupted (weights, BatchNorm buffers, AdamW state, EMA, GradScaler, data
    generator);
  * a bad recipe is refused before anything is written (an unknown key with a "did you mean",
    a zero batch size or sample count, a dataset root that holds another dataset), and
    --print-config prints the effective recipe;
  * resume: overrides given on resume are stored with the run (the next resume continues
    with them), a changed optimizer or thread count is named, and Ctrl-C says what is saved
    and the command that continues.

Environment: SGCKPT_EXAMPLES_DIR (the built examples; see oracle.require_example); SGCKPT_FASHION_MNIST_DIR
(default /usr/share/datasets/fashion-mnist).
Run: SGCKPT_EXAMPLES_DIR=build/examples /usr/bin/python3 tests/python/test_engine_train.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/engine_train, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import glob  # noqa: E402
import json  # noqa: E402
import gzip  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402
from test_engine_resnet18 import CifarResNet  # noqa: E402

TRAIN = os.path.join(oracle.require_example("train_resnet18"), "train_resnet18")
RECIPE = str(oracle.REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
FMNIST = os.environ.get("SGCKPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
ENV = dict(os.environ, SGCKPT_NUM_THREADS="2")

EPOCH_RE = re.compile(r"^epoch (\d+)/(\d+) .*train: (.*) \| valid: (.*?)( \(best\))? \| ")


def metrics(text):
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split())}


def run_train(args, timeout=1800):
    p = subprocess.run(oracle.host_argv([TRAIN] + args), capture_output=True, text=True, env=ENV, timeout=timeout)
    assert p.returncode == 0, "train_resnet18 %s failed (%d): %s" % (args, p.returncode, p.stderr[-2000:])
    return p.stdout


def log_of(out):
    """The run log a train_resnet18 output names (its "log=" line)."""
    lines = [line for line in out.splitlines() if line.startswith("log=")]
    assert lines, "no log= line in:\n" + out[-2000:]
    return lines[-1][len("log="):]


def run_dir_of(out):
    lines = [line for line in out.splitlines() if line.startswith("run_dir=")]
    assert lines, "no run_dir= line in:\n" + out[-2000:]
    return lines[-1][len("run_dir="):]


def fashion_mnist_test(n):
    """The first n test images as the engine prepares them: 2 black pixels of padding on each
    side, 3 channels, (x / 255 - 0.2860) / 0.3530 in float32."""
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    x = np.zeros((n, 32, 32), np.float32)
    x[:, 2:30, 2:30] = images.astype(np.float32) / np.float32(255)
    x = (x - np.float32(0.2860)) / np.float32(0.3530)
    x = np.repeat(x[:, None], 3, axis=1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels.astype(np.int64))


def load_checkpoint(path):
    if oracle.TORCH_VERSION >= (2, 0):
        return torch.load(path, map_location="cpu", weights_only=True)
    return oracle.torch_load_full(path)


def torch_accuracy(state_dict, width, x, y):
    model = CifarResNet(width_mult=width)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)])
    return (pred == y).double().mean().item()


# ------------------------------------------------------------------------------------------
# Learning, and what torch says about the checkpoints


class Learned:
    out = None
    run_dir = None


def check_learns(root, learned):
    out = run_train(["--recipe", RECIPE, "--ckpt-root", root, "training_hyperparams.max_epochs=3",
                     "training_hyperparams.durable_checkpoints=false"])
    epochs = [EPOCH_RE.match(line) for line in out.splitlines()]
    epochs = [m for m in epochs if m]
    assert len(epochs) == 3, "expected 3 epoch lines:\n" + out
    train_loss = [metrics(m.group(3))["CrossEntropyLoss"] for m in epochs]
    valid_acc = [metrics(m.group(4))["Accuracy"] for m in epochs]
    for m in epochs:
        print("     " + m.group(0).rstrip(" |"), flush=True)
    assert train_loss[-1] < train_loss[0] * 0.7, "training loss did not fall: %s" % train_loss
    assert valid_acc[-1] > 0.70, "held-out accuracy %.3f after 3 epochs, expected > 0.70" % valid_acc[-1]
    learned.out = out
    learned.run_dir = run_dir_of(out)


def check_torch_agrees(learned):
    assert learned.run_dir, "the learning check did not finish"
    x, y = fashion_mnist_test(1000)
    best = load_checkpoint(os.path.join(learned.run_dir, "ckpt_best.pth"))
    for key in ("net", "acc", "epoch", "optimizer_state_dict", "ema_net", "rng_state"):
        assert key in best, "ckpt_best.pth has no %r" % key
    ema_acc = torch_accuracy(best["ema_net"], 0.25, x, y)
    print("     ckpt_best.pth: recorded acc %.4f (epoch %d), torch's accuracy of ema_net %.4f"
          % (best["acc"], best["epoch"], ema_acc), flush=True)
    # Equal up to a prediction flipped by float summation order (logits of two classes tied
    # to ~1e-6): at most 2 of 1,000 images.
    assert abs(ema_acc - best["acc"]) <= 0.002, "torch: %.4f, checkpoint: %.4f" % (ema_acc, best["acc"])
    net_acc = torch_accuracy(best["net"], 0.25, x, y)

    avg = load_checkpoint(os.path.join(learned.run_dir, "average_model.pth"))
    avg_acc = torch_accuracy(avg["net"], 0.25, x, y)
    print("     torch: net %.4f, average_model %.4f" % (net_acc, avg_acc), flush=True)

    exp = os.path.basename(os.path.dirname(learned.run_dir))
    root = os.path.dirname(os.path.dirname(learned.run_dir))
    # SG's evaluate_checkpoint: the run's own recipe (none given here), the EMA weights when
    # the file has them, and the number the file records.
    metrics_json = os.path.join(root, "metrics.json")
    out = run_train(["--evaluate", "ckpt_best.pth", "--experiment", exp, "--ckpt-root", root,
                     "--metrics-json", metrics_json])
    line = [s for s in out.splitlines() if s.startswith("evaluate ")]
    assert line, out
    assert "[ema_net]" in line[-1], line[-1]
    acc = metrics(line[-1].split(": ", 1)[1])["Accuracy"]
    assert abs(acc - ema_acc) <= 0.002, "--evaluate says %.4f, torch's ema_net %.4f" % (acc, ema_acc)
    assert abs(acc - best["acc"]) <= 0.002, "--evaluate says %.4f, the file records %.4f" % (acc, best["acc"])
    recipe_line = out[out.index(line[-1]):].splitlines()[1]
    assert os.path.join(learned.run_dir, "recipe.yaml") in recipe_line and "the file records Accuracy=" in recipe_line, recipe_line
    with open(metrics_json) as f:
        j = json.load(f)
    assert j["weights"] == "ema_net" and abs(j["metrics"]["Accuracy"] - acc) < 1e-4, j
    assert j["recorded"]["Accuracy"] == best["acc"] and j["recorded"]["epoch"] == best["epoch"], j
    # SG's evaluate_recipe: any checkpoint file by path, with a recipe.
    out = run_train(["--evaluate", os.path.join(learned.run_dir, "ckpt_best.pth"), "--recipe", RECIPE])
    line = [s for s in out.splitlines() if s.startswith("evaluate ")]
    assert line and abs(metrics(line[-1].split(": ", 1)[1])["Accuracy"] - acc) < 1e-4, out


# ------------------------------------------------------------------------------------------
# Kill in the middle of an epoch, resume, compare with an uninterrupted run

TINY = [
    "dataset_params.train_samples=256", "dataset_params.valid_samples=128",
    "arch_params.width_mult=0.125",
    "training_hyperparams.max_epochs=3", "training_hyperparams.batch_size=32",
    "training_hyperparams.lr_mode=step", "training_hyperparams.lr_updates=[2]",
    "training_hyperparams.lr_warmup_epochs=1", "training_hyperparams.initial_lr=0.002",
    "training_hyperparams.optimizer=AdamW",
    "training_hyperparams.optimizer_params={weight_decay: 0.01, amsgrad: true}",
    "training_hyperparams.ema_params={decay: 0.9, decay_type: exp, beta: 15}",
    "training_hyperparams.augment={crop_padding: 2, horizontal_flip: true}",
    "training_hyperparams.save_ckpt_epoch_list=[1]",
    "training_hyperparams.durable_checkpoints=false",
    "training_hyperparams.mixed_precision=true",
]


def assert_same(a, b, path):
    assert type(a) is type(b), "%s: %s vs %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, "%s: %s%s vs %s%s" % (path, a.dtype, tuple(a.shape), b.dtype, tuple(b.shape))
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item()
            raise AssertionError("%s differs (max abs diff %.3g)" % (path, diff))
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), "%s: keys %s vs %s" % (path, list(a)[:8], list(b)[:8])
        for k in a:
            assert_same(a[k], b[k], "%s/%s" % (path, k))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), "%s: length %d vs %d" % (path, len(a), len(b))
        for i, (x, z) in enumerate(zip(a, b)):
            assert_same(x, z, "%s/%d" % (path, i))
    else:
        assert a == b or (a != a and b != b), "%s: %r vs %r" % (path, a, b)


def check_killed_run_resumes_bit_exactly(d):
    base = ["--recipe", RECIPE, "--experiment", "tiny", "--log-every", "1"] + TINY
    straight = run_dir_of(run_train(base + ["--ckpt-root", os.path.join(d, "straight")]))

    root = os.path.join(d, "killed")
    p = subprocess.Popen(oracle.host_argv([TRAIN] + base + ["--ckpt-root", root]), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    killed_at = None
    for line in p.stdout:
        if line.startswith("step epoch=2 batch=3/"):
            p.send_signal(signal.SIGKILL)
            killed_at = line.strip()
            break
    p.wait(timeout=600)
    assert killed_at, "the run ended before epoch 2 batch 3 (exit %s)" % p.returncode
    assert p.returncode == -signal.SIGKILL, "exit status %s" % p.returncode
    runs = glob.glob(os.path.join(root, "tiny", "RUN_*"))
    assert len(runs) == 1, runs
    latest = load_checkpoint(os.path.join(runs[0], "ckpt_latest.pth"))
    assert latest["epoch"] == 1, "ckpt_latest.pth after the kill holds epoch %s, expected 1" % latest["epoch"]

    out = run_train(["--resume", "--experiment", "tiny", "--ckpt-root", root, "--log-every", "4"])
    assert "Resumed from" in out and "starting at epoch 1" in out, out[-2000:]
    resumed = run_dir_of(out)
    assert resumed == runs[0], "resumed in %s, not in the killed run %s" % (resumed, runs[0])
    # What the terminal showed is in the run log too: here the step lines of --log-every.
    with open(log_of(out)) as f:
        assert "step epoch=2 batch=4/" in f.read(), "the run log lacks the step lines"
    print("     killed at '%s'; resumed in place from epoch 1" % killed_at, flush=True)

    for name in ("ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_1.pth", "average_model.pth"):
        a = load_checkpoint(os.path.join(straight, name))
        b = load_checkpoint(os.path.join(resumed, name))
        assert_same(a, b, name)
    a = load_checkpoint(os.path.join(straight, "ckpt_latest.pth"))
    assert a["epoch"] == 3 and "ema_net" in a and "rng_state" in a
    assert a["optimizer_state_dict"]["param_groups"][0]["amsgrad"] is True
    assert a["scaler_state_dict"]["scale"] == 65536.0 and a["scaler_state_dict"]["_growth_tracker"] == 24, a["scaler_state_dict"]


def refused(args, phrase):
    p = subprocess.run(oracle.host_argv([TRAIN] + args), capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 1, "%s: exit %d" % (args, p.returncode)
    assert phrase in p.stderr, "%s: %s" % (args, p.stderr)
    assert p.stderr.count("\n") == 1, p.stderr


def check_bad_recipe(d):
    root = os.path.join(d, "refused")
    base = ["--recipe", RECIPE, "--ckpt-root", root]
    refused(base + ["training_hyperparams.max_epoch=3"],
            "unknown key 'training_hyperparams.max_epoch' (did you mean 'training_hyperparams.max_epochs'?)")
    refused(base + ["training_hyperparams.batch_size=0"], "training_hyperparams.batch_size must be positive")
    refused(base + ["dataset_params.train_samples=0"], "dataset_params.train_samples must be a positive count")
    refused(base + ["dataset_params.name=cifar10"], "holds no CIFAR-10 binary batches")
    assert not os.path.exists(root), "a refused recipe left %s behind: %s" % (root, os.listdir(root))
    # The effective configuration, overrides applied, without training.
    out = run_train(base + ["--print-config", "training_hyperparams.max_epochs=7"])
    assert "max_epochs: 7" in out and "experiment_name: fashion_mnist_resnet18" in out, out
    assert not os.path.exists(root)


def check_resume_changes(d):
    """Overrides given on resume are stored with the run; a changed optimizer and a changed
    thread count are named; Ctrl-C says what is saved and how to continue."""
    root = os.path.join(d, "changes")
    base = ["--recipe", RECIPE, "--experiment", "tiny", "--ckpt-root", root] + TINY
    run = run_dir_of(run_train(base + ["training_hyperparams.max_epochs=1"]))
    out = run_train(["--resume", "--experiment", "tiny", "--ckpt-root", root, "training_hyperparams.max_epochs=2",
                     "--threads", "1"])
    assert "trained with 2 thread(s), this run uses 1" in out, out[-2000:]
    # The run log holds what the terminal said about the resume, the environment and the epoch times.
    with open(log_of(out)) as f:
        text = f.read()
    # Without --log-every, each epoch's final progress line (as a terminal shows it) is kept.
    for phrase in ("Resuming the latest run", "trained with 2 thread(s), this run uses 1", "Environment: 1 CPU thread(s)",
                   "Epoch 1 took ", "epoch 2/2 [####################]"):
        assert phrase in text, "the run log lacks %r:\n%s" % (phrase, text[-3000:])
    out = run_train(["--resume", "--experiment", "tiny", "--ckpt-root", root])
    assert "nothing to do: the checkpoint already finished 2 of 2 epochs" in out, out[-2000:]
    assert os.path.isfile(os.path.join(run, "recipe.yaml.1")), os.listdir(run)
    refused(["--resume", "--experiment", "tiny", "--ckpt-root", root, "training_hyperparams.max_epochs=3",
             "training_hyperparams.optimizer=SGD"], "the checkpoint's optimizer is Adam or AdamW, this run's is SGD")

    p = subprocess.Popen(oracle.host_argv([TRAIN, "--resume", "--experiment", "tiny", "--ckpt-root", root,
                                           "training_hyperparams.max_epochs=4", "--log-every", "1"]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in p.stdout:
        if line.startswith("step epoch=4 batch=2/"):
            p.send_signal(signal.SIGINT)
            break
    err = p.communicate(timeout=600)[1]
    assert p.returncode == 130, "exit status %s: %s" % (p.returncode, err[-1000:])
    assert "interrupted; epoch 3 of 4 is saved in ckpt_latest.pth" in err, err[-1000:]
    assert "train_resnet18 --resume --experiment tiny --ckpt-root " + root in err, err[-1000:]


def main():
    r = oracle.Runner("test_engine_train: train_resnet18 learns, torch agrees, resume is bit-exact")
    torch.set_num_threads(2)
    if not os.path.isfile(TRAIN):
        oracle.fatal("%s not built" % TRAIN)
    if not os.path.isfile(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")):
        oracle.fatal("Fashion-MNIST not found in %s (Debian package dataset-fashion-mnist; scripts/install-deps.sh installs it)" % FMNIST)
    with tempfile.TemporaryDirectory(prefix="sgckpt_train_") as d:
        learned = Learned()
        r.check("a bad recipe is refused before anything is written, naming the key; --print-config", check_bad_recipe, d)
        r.check("resume: overrides stored, optimizer and thread changes named, Ctrl-C says how to continue",
                check_resume_changes, d)
        r.check("killed mid-epoch, resumed: bit-identical to an uninterrupted run", check_killed_run_resumes_bit_exactly, d)
        r.check("learns Fashion-MNIST: loss falls, held-out accuracy > 70% in 3 epochs", check_learns, os.path.join(d, "learn"), learned)
        r.check("torch: checkpoints load strictly, accuracy agrees", check_torch_agrees, learned)
    r.finish()


if __name__ == "__main__":
    main()
