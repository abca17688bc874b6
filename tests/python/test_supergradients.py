"""SuperGradients 3.7.1 itself (PyPI) reads the checkpoints train_resnet18 writes.

Checks, on a short full-width train_resnet18 run (Fashion-MNIST, EMA on):
  * `models.get("resnet18_cifar", num_classes=10, checkpoint_path=ckpt_best.pth)` loads it
    (SG prefers the EMA weights when the file has them, as sgckpt does), and
    `load_checkpoint_to_model` loads it with each StrictLoad mode (ON, OFF, NO_KEY_MATCHING),
    with and without `load_ema_as_net`;
  * SG's model in eval mode predicts what the engine predicts from the same weights
    (tests/drivers/resnet18_forward on a batch of test images): logits within a relative
    error of 1e-4, the same argmax;
  * SG's `read_ckpt_state_dict` finds the entries SG's trainer resumes from (net, ema_net,
    optimizer_state_dict, epoch, acc, ...).

Environment: SGCKPT_EXAMPLES_DIR (train_resnet18), SGCKPT_DRIVERS_DIR (resnet18_forward).
Run: SGCKPT_EXAMPLES_DIR=build/examples SGCKPT_DRIVERS_DIR=build/tests/drivers \
     /var/cache/sgckpt/pypi-venv/bin/python tests/python/test_supergradients.py

Runs with the PyPI oracles.
"""
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# SG writes logs at import time; keep them out of $HOME.
os.environ.setdefault("SUPER_GRADIENTS_LOG_DIR", tempfile.mkdtemp(prefix="sgckpt-sg-logs-"))

import subprocess  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

try:
    import super_gradients  # noqa: E402
    from super_gradients.common.data_types.enum import StrictLoad  # noqa: E402
    from super_gradients.training import models  # noqa: E402
    from super_gradients.training.utils.checkpoint_utils import load_checkpoint_to_model, read_ckpt_state_dict  # noqa: E402
except ImportError as e:
    oracle.fatal("the SuperGradients oracle is missing (%s): run scripts/install-pypi-oracle.sh and use its python" % e)

from test_engine_train import fashion_mnist_test  # noqa: E402

TRAIN = os.path.join(oracle.require_example("train_resnet18"), "train_resnet18")
FORWARD = os.path.join(oracle.require_driver("resnet18_forward"), "resnet18_forward")
RECIPE = str(oracle.REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
ENV = dict(os.environ, SGCKPT_NUM_THREADS="2")
R = oracle.Runner("supergradients (super-gradients %s)" % super_gradients.__version__)
WORK = tempfile.mkdtemp(prefix="sgckpt-sg-")


def train_run():
    args = [TRAIN, "--recipe", RECIPE, "--experiment", "sg", "--ckpt-root", WORK,
            "dataset_params.train_samples=128", "dataset_params.valid_samples=64", "arch_params.width_mult=1.0",
            "training_hyperparams.max_epochs=1", "training_hyperparams.batch_size=32",
            "training_hyperparams.ema=true", "training_hyperparams.durable_checkpoints=false"]
    p = subprocess.run(oracle.host_argv(args), capture_output=True, text=True, env=ENV, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    return [l for l in p.stdout.splitlines() if l.startswith("run_dir=")][-1][len("run_dir="):]


RUN = train_run()
BEST = os.path.join(RUN, "ckpt_best.pth")
X, Y = fashion_mnist_test(64)


def engine_logits(state_dict):
    weights, batch, out = (os.path.join(WORK, n) for n in ("weights.pth", "batch.pth", "logits.pth"))
    torch.save(state_dict, weights)
    torch.save({"x": X}, batch)
    p = subprocess.run(oracle.host_argv([FORWARD, weights, batch, out]), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    return torch.load(out)["logits"]


def sg_logits(net):
    net.eval()
    with torch.no_grad():
        return net(X)


def same_predictions(net, state_dict, what):
    ours, theirs = engine_logits(state_dict), sg_logits(net)
    rel = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert rel < 1e-4, "%s: relative error %.3g between SG's and the engine's logits" % (what, rel)
    assert torch.equal(ours.argmax(1), theirs.argmax(1)), "%s: predictions differ" % what


def check_models_get():
    ck = read_ckpt_state_dict(BEST)
    assert "ema_net" in ck, sorted(ck)
    net = models.get("resnet18_cifar", num_classes=10, checkpoint_path=BEST)
    same_predictions(net, ck["ema_net"], "models.get (EMA preferred)")


def check_every_strict_mode():
    ck = read_ckpt_state_dict(BEST)
    for mode in (StrictLoad.ON, StrictLoad.OFF, StrictLoad.NO_KEY_MATCHING):
        for ema in (False, True):
            net = models.get("resnet18_cifar", num_classes=10)
            load_checkpoint_to_model(net=net, ckpt_local_path=BEST, strict=mode, load_ema_as_net=ema)
            same_predictions(net, ck["ema_net" if ema else "net"], "%s, load_ema_as_net=%s" % (mode.name, ema))


def check_resume_entries():
    ck = read_ckpt_state_dict(os.path.join(RUN, "ckpt_latest.pth"))
    for key in ("net", "ema_net", "optimizer_state_dict", "epoch", "acc", "scaler_state_dict"):
        assert key in ck, "ckpt_latest.pth lacks %r: %s" % (key, sorted(ck))
    assert ck["epoch"] == 1, ck["epoch"]


R.check("models.get(checkpoint_path=our ckpt_best.pth) loads the EMA weights and predicts as the engine", check_models_get)
R.check("load_checkpoint_to_model with StrictLoad ON, OFF, NO_KEY_MATCHING, net and EMA", check_every_strict_mode)
R.check("SG's read_ckpt_state_dict finds what its trainer resumes from", check_resume_entries)
R.finish()
