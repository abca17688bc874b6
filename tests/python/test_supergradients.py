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
    optimizer_state_dict, epoch, acc, ...);
  * SG's trainer resumes from our ckpt_latest.pth (`resume_path`, with
    zero_weight_decay_on_bias_and_bn on both sides: the optimizer's groups must come in SG's
    order) and trains on.

And the other way, on a tiny run of SG's own Trainer (its resnet18_cifar on CPU, the same
test images, EMA and weight averaging on):
  * `sgckpt inspect --json` reads every checkpoint of SG's run directory and its
    averaging_snapshots.pkl (a numpy array inside), equal to torch.load's mirror;
  * the engine's logits for SG's ckpt_best.pth (EMA weights) match SG's own model's;
  * `train_resnet18 --resume-path` continues SG's ckpt_latest.pth in a new run directory, whose
    run log names the file it branched from;
    where the parameter grouping differs, it refuses naming the setting.

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

from test_engine_train import fashion_mnist_test, log_of  # noqa: E402

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
            "training_hyperparams.ema=true", "training_hyperparams.durable_checkpoints=false",
            "training_hyperparams.zero_weight_decay_on_bias_and_bn=true"]
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


# ---- SuperGradients' own runs -----------------------------------------------------------------


def sg_train(name, epochs, resume_path=None, grab_snapshots=None):
    """A tiny run of SG's Trainer (CPU, EMA, averaging); returns its run directory. With
    `grab_snapshots`, averaging_snapshots.pkl is copied there before the last epoch (SG deletes
    it when training ends)."""
    import shutil

    from torch.utils.data import DataLoader, TensorDataset
    from super_gradients import Trainer
    from super_gradients.training.metrics import Accuracy, Top5
    from super_gradients.training.utils.callbacks import Phase, PhaseCallback

    super_gradients.setup_device(device="cpu")
    trainer = Trainer(experiment_name=name, ckpt_root_dir=WORK)

    class Grab(PhaseCallback):
        def __init__(self):
            super().__init__(Phase.TRAIN_EPOCH_START)

        def __call__(self, context):
            src = os.path.join(trainer.checkpoints_dir_path, "averaging_snapshots.pkl")
            if grab_snapshots and context.epoch == epochs - 1 and os.path.exists(src):
                shutil.copy(src, grab_snapshots)

    data = TensorDataset(X, Y)
    params = {"max_epochs": epochs, "lr_mode": "StepLRScheduler", "lr_updates": [100], "lr_decay_factor": 0.1,
              "initial_lr": 0.05, "loss": "CrossEntropyLoss", "optimizer": "SGD",
              "optimizer_params": {"momentum": 0.9, "weight_decay": 5e-4}, "zero_weight_decay_on_bias_and_bn": True,
              "ema": True, "ema_params": {"decay": 0.9, "decay_type": "constant"}, "average_best_models": True,
              "train_metrics_list": [Accuracy(), Top5()], "valid_metrics_list": [Accuracy(), Top5()],
              "metric_to_watch": "Accuracy", "greater_metric_to_watch_is_better": True, "save_ckpt_epoch_list": [1],
              "mixed_precision": False, "silent_mode": True, "phase_callbacks": [Grab()]}
    if resume_path:
        params["resume_path"] = resume_path
    trainer.train(model=models.get("resnet18_cifar", num_classes=10), training_params=params,
                  train_loader=DataLoader(data, batch_size=16), valid_loader=DataLoader(data, batch_size=32))
    return trainer.checkpoints_dir_path


SNAPSHOTS = os.path.join(WORK, "sg_averaging_snapshots.pkl")
SG_RUN = sg_train("sg_native", 2, grab_snapshots=SNAPSHOTS)


def check_sgckpt_reads_sg_run():
    files = sorted(os.path.join(SG_RUN, f) for f in os.listdir(SG_RUN) if f.endswith(".pth")) + [SNAPSHOTS]
    assert len(files) >= 5, files  # latest, best, epoch_1, average_model, the snapshots
    for f in files:
        p = subprocess.run(oracle.host_argv([oracle.require_tool(), "inspect", "--json", f]), capture_output=True, timeout=300)
        assert p.returncode == 0, "%s: %s" % (f, p.stderr.decode(errors="replace")[-1000:])
        expected = oracle.expected_json(torch.load(f, map_location="cpu"))
        oracle.assert_json_equal(expected, oracle.parse_tool_json(p.stdout), os.path.basename(f))
    snap = torch.load(SNAPSHOTS)
    assert type(snap["snapshots_metric"]).__module__ == "numpy", type(snap["snapshots_metric"])


def check_engine_scores_sg_best():
    best = os.path.join(SG_RUN, "ckpt_best.pth")
    net = models.get("resnet18_cifar", num_classes=10, checkpoint_path=best)
    same_predictions(net, read_ckpt_state_dict(best)["ema_net"], "SG's ckpt_best.pth (EMA)")


def engine_resume(path, *overrides):
    args = [TRAIN, "--recipe", RECIPE, "--experiment", "from_sg", "--ckpt-root", WORK, "--resume-path", path,
            "dataset_params.train_samples=64", "dataset_params.valid_samples=64", "arch_params.width_mult=1.0",
            "training_hyperparams.max_epochs=3", "training_hyperparams.batch_size=16", "training_hyperparams.ema=true",
            "training_hyperparams.durable_checkpoints=false"] + list(overrides)
    return subprocess.run(oracle.host_argv(args), capture_output=True, text=True, env=ENV, timeout=900)


def check_engine_resumes_sg_latest():
    latest = os.path.join(SG_RUN, "ckpt_latest.pth")
    p = engine_resume(latest, "training_hyperparams.zero_weight_decay_on_bias_and_bn=true")
    assert p.returncode == 0, p.stderr[-2000:]
    run = [l for l in p.stdout.splitlines() if l.startswith("run_dir=")][-1][len("run_dir="):]
    with open(log_of(p.stdout)) as f:
        assert "Branched from " + latest in f.read(), "the run log does not name the file it branched from"
    ck = torch.load(os.path.join(run, "ckpt_latest.pth"))
    assert ck["epoch"] == 3, ck["epoch"]
    theirs = torch.load(latest)
    assert not torch.equal(ck["net"]["linear.weight"], theirs["net"]["linear.weight"]), "no training happened"
    p = engine_resume(latest, "training_hyperparams.zero_weight_decay_on_bias_and_bn=false")
    assert p.returncode != 0 and "zero_weight_decay_on_bias_and_bn" in p.stderr, p.stderr[-2000:]


def check_sg_resumes_ours():
    latest = os.path.join(RUN, "ckpt_latest.pth")
    run = sg_train("sg_resumes_ours", 3, resume_path=latest)
    ck = torch.load(os.path.join(run, "ckpt_latest.pth"))
    assert ck["epoch"] == 3, ck["epoch"]
    ours = torch.load(latest)
    assert not torch.equal(ck["net"]["linear.weight"], ours["net"]["linear.weight"]), "SG did not train on"


R.check("models.get(checkpoint_path=our ckpt_best.pth) loads the EMA weights and predicts as the engine", check_models_get)
R.check("load_checkpoint_to_model with StrictLoad ON, OFF, NO_KEY_MATCHING, net and EMA", check_every_strict_mode)
R.check("SG's read_ckpt_state_dict finds what its trainer resumes from", check_resume_entries)
R.check("SG's trainer resumes from our ckpt_latest.pth and trains on", check_sg_resumes_ours)
R.check("sgckpt reads every checkpoint of an SG run and its averaging_snapshots.pkl", check_sgckpt_reads_sg_run)
R.check("the engine predicts from SG's ckpt_best.pth (EMA) as SG does", check_engine_scores_sg_best)
R.check("train_resnet18 --resume-path continues SG's ckpt_latest.pth", check_engine_resumes_sg_latest)
R.finish()
