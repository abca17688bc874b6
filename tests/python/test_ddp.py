#!/usr/bin/env python3
"""Data-parallel training on CPUs: examples/train_resnet18 under `mpirun -np 2` (torch DDP's
semantics, docs/distributed.md), checked with torch.

  * a 2-rank run writes one run directory (rank 0's), its log names the 2 MPI ranks, and its
    checkpoints load in torch;
  * metrics are reduced over ranks: the validation accuracy the checkpoint records (each rank
    scored half of the validation set, the sums were added) is the accuracy the same weights
    get from a single-process `--evaluate`;
  * a 2-rank run stopped in the middle of epoch 2 (SIGTERM to mpirun) and resumed with
    `mpirun -np 2 ... --resume` ends with the same ckpt_latest.pth, ckpt_best.pth and
    average_model.pth, bit for bit, as a 2-rank run that was never interrupted;
  * a launch environment that names a rank but not the world size is refused, naming it.

Environment: SGCKPT_EXAMPLES_DIR (the built examples); SGCKPT_FASHION_MNIST_DIR.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

TRAIN = os.path.join(oracle.require_example("train_resnet18"), "train_resnet18")
RECIPE = str(oracle.REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
MPIRUN = shutil.which("mpirun") or oracle.fatal("mpirun not found: run scripts/install-deps.sh (openmpi-bin)")
MPI = [MPIRUN, "-np", "2", "--allow-run-as-root", "--oversubscribe"]
ENV = dict(os.environ, SGCKPT_NUM_THREADS="1")  # two ranks on two cores
TINY = [
    "dataset_params.train_samples=1024", "dataset_params.valid_samples=128",  # 32 steps per rank and epoch
    "arch_params.width_mult=0.125",
    "training_hyperparams.max_epochs=3", "training_hyperparams.batch_size=16",
    "training_hyperparams.lr_mode=step", "training_hyperparams.lr_updates=[2]",
    "training_hyperparams.initial_lr=0.002", "training_hyperparams.optimizer=AdamW",
    "training_hyperparams.ema_params={decay: 0.9, decay_type: exp, beta: 15}",
    "training_hyperparams.augment={crop_padding: 2, horizontal_flip: true}",
    "training_hyperparams.save_ckpt_epoch_list=[1]",
    "training_hyperparams.durable_checkpoints=false",
    "--dist-timeout", "120", "--log-every", "1",
]


def mpirun_train(args, timeout=900):
    p = subprocess.run(MPI + [TRAIN] + args, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert p.returncode == 0, "mpirun train_resnet18 %s failed (%d): %s" % (args, p.returncode, p.stderr[-3000:])
    return p.stdout


def run_dir_of(out):
    lines = [line for line in out.splitlines() if line.startswith("run_dir=")]
    assert len(lines) == 1, "expected one run_dir= line (rank 0's) in:\n" + out[-2000:]
    return lines[0][len("run_dir="):]


def load(path):
    if oracle.TORCH_VERSION >= (2, 0):
        return torch.load(path, map_location="cpu", weights_only=True)
    return oracle.torch_load_full(path)


def check_two_ranks(d, state):
    out = mpirun_train(["--recipe", RECIPE, "--experiment", "ddp", "--ckpt-root", os.path.join(d, "straight")] + TINY)
    run = run_dir_of(out)
    assert "2 ranks (mpi)" in out, out[:2000]
    assert len(glob.glob(os.path.join(d, "straight", "ddp", "RUN_*"))) == 1
    logs = glob.glob(os.path.join(run, "experiment_logs_*.txt"))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        assert "2 rank(s) (mpi)" in f.read()
    latest = load(os.path.join(run, "ckpt_latest.pth"))
    assert latest["epoch"] == 3 and "ema_net" in latest, sorted(latest)
    state["straight"] = run


def check_metrics_reduced(d, state):
    run = state["straight"]
    out_json = os.path.join(d, "metrics.json")
    p = subprocess.run([TRAIN, "--evaluate", os.path.join(run, "ckpt_latest.pth"), "--metrics-json", out_json],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(out_json) as f:
        j = json.load(f)
    recorded = load(os.path.join(run, "ckpt_latest.pth"))["acc"]
    assert j["weights"] == "ema_net", j
    assert abs(j["metrics"]["Accuracy"] - recorded) < 1e-12, \
        "2 ranks recorded Accuracy %r, one process scores the same weights %r" % (recorded, j["metrics"]["Accuracy"])


def check_stopped_run_resumes_bit_exactly(d, state):
    root = os.path.join(d, "stopped")
    p = subprocess.Popen(MPI + [TRAIN, "--recipe", RECIPE, "--experiment", "ddp", "--ckpt-root", root] + TINY,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    stopped_at = None
    for line in p.stdout:
        if line.startswith("step epoch=2 batch=5/"):
            p.send_signal(signal.SIGTERM)  # mpirun passes it on to both ranks
            stopped_at = line.strip()
            break
    rest, err = p.communicate(timeout=300)
    assert stopped_at, "the run ended before epoch 2 batch 5 (exit %s): %s" % (p.returncode, err[-2000:])
    assert p.returncode != 0, "mpirun exited 0 after SIGTERM: %s" % rest[-2000:]
    runs = glob.glob(os.path.join(root, "ddp", "RUN_*"))
    assert len(runs) == 1, runs
    epoch = load(os.path.join(runs[0], "ckpt_latest.pth"))["epoch"]
    assert epoch == 1, "ckpt_latest.pth holds epoch %s after the stop in epoch 2" % epoch
    out = mpirun_train(["--resume", "--experiment", "ddp", "--ckpt-root", root, "--dist-timeout", "120"])
    assert run_dir_of(out) == runs[0]
    for name in ("ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_1.pth", "average_model.pth"):
        oracle.assert_deep_equal(load(os.path.join(state["straight"], name)), load(os.path.join(runs[0], name)), name)
    print("     stopped at '%s'; resumed with 2 ranks, bit-exact" % stopped_at, flush=True)


def check_resume_with_another_world_size(d, state):
    # As torch allows: the checkpoint is rank 0's whole state; one process continues it (its
    # data is then the whole epoch instead of a half per rank).
    start = os.path.join(state["straight"], "ckpt_epoch_1.pth")
    p = subprocess.run([TRAIN, "--recipe", RECIPE, "--experiment", "ddp1", "--ckpt-root", os.path.join(d, "one"),
                        "--resume-path", start] + TINY[:-4], capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    run = run_dir_of(p.stdout)
    logs = glob.glob(os.path.join(run, "experiment_logs_*.txt"))
    with open(logs[0]) as f:
        assert "1 rank(s)" in f.read()
    latest = load(os.path.join(run, "ckpt_latest.pth"))
    assert latest["epoch"] == 3, latest["epoch"]
    first = load(start)
    assert not torch.equal(latest["net"]["conv1.weight"], first["net"]["conv1.weight"]), "the weights did not move"
    print("     2-rank checkpoint of epoch 1 continued by one process to epoch 3", flush=True)


def check_incomplete_launch_environment(d, state):
    env = dict(ENV, RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    p = subprocess.run([TRAIN, "--recipe", RECIPE, "--experiment", "bad", "--ckpt-root", os.path.join(d, "bad")] + TINY,
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0
    assert "torchrun launch: WORLD_SIZE is not set" in p.stderr, p.stderr[-2000:]


R = oracle.Runner("train_resnet18 under mpirun -np 2")
with tempfile.TemporaryDirectory() as d:
    state = {}
    if R.check("a 2-rank run: one run directory, the ranks in its log, torch loads its checkpoints",
               check_two_ranks, d, state):
        R.check("validation metrics summed over ranks equal one process's", check_metrics_reduced, d, state)
        R.check("a 2-rank run stopped mid-epoch resumes bit-exactly", check_stopped_run_resumes_bit_exactly, d, state)
        R.check("a 2-rank checkpoint resumes in one process (another world size)", check_resume_with_another_world_size,
                d, state)
    R.check("an incomplete launch environment is refused, naming the variable", check_incomplete_launch_environment,
            d, state)
R.finish()
