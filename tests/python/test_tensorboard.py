"""TensorBoard reads the event files sgckpt writes (include/sgckpt/engine/train/tensorboard.hpp).

Checks, with TensorBoard's own EventAccumulator (the PyPI `tensorboard` package):
  * every scalar the writer wrote is read back with its tag, step and value (float32);
  * a process killed mid-record leaves a torn tail; the repair a resume runs first removes
    exactly that tail, and the next writer's new file beside it continues the curves, so the
    directory reads as one run with every epoch once;
  * after the repair every file holds exactly the records written (TensorBoard's raw record
    loader counts them).

  * a train_resnet18 run killed in its second epoch and resumed leaves SuperGradients' tags
    (train_crossentropyloss, ..., valid_top5, lr) once per epoch, whose last values are the
    metrics stored in ckpt_latest.pth, the per-step loss at the configured interval, and an
    experiment log in SG's format that records the resume and every checkpoint.

Environment: SGCKPT_DRIVERS_DIR (tests/drivers/tensorboard_events), SGCKPT_EXAMPLES_DIR
(train_resnet18). Needs tensorboard.
Run: SGCKPT_DRIVERS_DIR=build/tests/drivers /var/cache/sgckpt/pypi-venv/bin/python tests/python/test_tensorboard.py

Runs with the PyPI oracles.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402

try:
    import tensorboard  # noqa: E402
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
    from tensorboard.backend.event_processing import event_file_loader  # noqa: E402
except ImportError as e:
    oracle.fatal("the tensorboard oracle is missing (%s): run scripts/install-pypi-oracle.sh and use its python" % e)

DRIVER = os.path.join(oracle.require_driver("tensorboard_events"), "tensorboard_events")
R = oracle.Runner("tensorboard (tensorboard %s)" % tensorboard.__version__)


def driver(*args):
    p = subprocess.run([DRIVER] + [str(a) for a in args], capture_output=True, timeout=60)
    assert p.returncode == 0, "tensorboard_events %s: exit %d: %s" % (args, p.returncode, p.stderr.decode(errors="replace"))
    return p.stdout.decode().strip()


def scalars(directory):
    ea = EventAccumulator(directory, size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(s.step, s.value) for s in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def expected(first, last):
    f32 = lambda x: float(__import__("numpy").float32(x))  # noqa: E731
    return {
        "Train_Loss": [(e, f32(1.0 / (e + 1))) for e in range(first, last)],
        "Valid_Accuracy": [(e, f32(e / 10.0)) for e in range(first, last)],
        "LR/Param_group_0": [(e, f32(0.1 * 0.9**e)) for e in range(first, last)],
    }


def records(path):
    """Every record of one file through TensorBoard's raw loader (raises on data loss)."""
    loader = event_file_loader.RawEventFileLoader(path, detect_file_replacement=False)
    return sum(1 for _ in loader.Load())


def check_read_back():
    d = tempfile.mkdtemp(prefix="sgckpt-tb-")
    driver(d, "write", 0, 5)
    got = scalars(d)
    assert got == expected(0, 5), got


def check_torn_and_resumed():
    d = tempfile.mkdtemp(prefix="sgckpt-tb-")
    first = driver(d, "write", 0, 3)
    size = os.path.getsize(first)
    driver(d, "tear")
    assert os.path.getsize(first) > size
    torn = os.path.getsize(first) - size
    removed = int(driver(d, "repair"))
    assert removed == torn and os.path.getsize(first) == size, (removed, torn, os.path.getsize(first), size)
    second = driver(d, "write", 3, 6)
    assert first != second, "a resume must start a new file"
    got = scalars(d)
    assert got == expected(0, 6), got
    for f in (first, second):
        n = records(f)
        assert n == 1 + 3 * 3, "%s: %d records" % (f, n)


TRAIN = os.path.join(oracle.require_example("train_resnet18"), "train_resnet18")
RECIPE = str(oracle.REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
TINY = ["dataset_params.train_samples=256", "dataset_params.valid_samples=128", "arch_params.width_mult=0.125",
        "training_hyperparams.max_epochs=3", "training_hyperparams.batch_size=32",
        "training_hyperparams.durable_checkpoints=false", "training_hyperparams.tensorboard_step_loss_every=2"]
ENV = dict(os.environ, SGCKPT_NUM_THREADS="2")
SG_TAGS = {"train_crossentropyloss", "train_accuracy", "valid_crossentropyloss", "valid_accuracy", "valid_top5", "lr"}


def check_training_run_killed_and_resumed():
    """A train_resnet18 run killed in epoch 2 and resumed: SG's tags, each epoch once, the
    values the checkpoint records, the per-step loss, and the experiment log in SG's format."""
    import signal

    root = tempfile.mkdtemp(prefix="sgckpt-tb-train-")
    base = ["--recipe", RECIPE, "--experiment", "tb", "--ckpt-root", root, "--log-every", "1"] + TINY
    p = subprocess.Popen(oracle.host_argv([TRAIN] + base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in p.stdout:
        if line.startswith("step epoch=2 batch=3/"):
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=600)
    assert p.returncode == -signal.SIGKILL, "exit status %s" % p.returncode
    r = subprocess.run(oracle.host_argv([TRAIN, "--resume", "--experiment", "tb", "--ckpt-root", root]),
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = [l for l in r.stdout.splitlines() if l.startswith("run_dir=")][-1][len("run_dir="):]
    # The end of the output says what happened and where everything is.
    for part in ("finished 2 epoch(s) in ", "checkpoints in " + run_dir + ": ", "ckpt_latest.pth", "log=" + run_dir,
                 "events=" + run_dir):
        assert part in r.stdout, "%r not in the output's end: %s" % (part, r.stdout[-800:])
    got = scalars(run_dir)
    assert SG_TAGS <= set(got), sorted(got)
    for tag in SG_TAGS:
        assert [s for s, _ in got[tag]] == [0, 1, 2], "%s: steps %s" % (tag, [s for s, _ in got[tag]])
    steps = [s for s, _ in got["train_step_crossentropyloss"]]
    # 8 batches x 3 epochs, every 2nd; the steps of the killed epoch that ran before the kill
    # run again after the resume and appear twice (TensorBoard plots both; SG does the same).
    assert sorted(set(steps)) == list(range(2, 25, 2)), steps
    ck = oracle.torch_load_full(os.path.join(run_dir, "ckpt_latest.pth"))
    import numpy
    for phase in ("train", "valid"):
        for name, value in ck["metrics"][phase].items():
            tag = "%s_%s" % (phase, name.lower())
            assert got[tag][-1][1] == float(numpy.float32(value)), "%s: events %r, checkpoint %r" % (tag, got[tag][-1], value)
    logs = sorted(f for f in os.listdir(run_dir) if f.startswith("experiment_logs_"))
    assert logs, os.listdir(run_dir)
    text = "".join(open(os.path.join(run_dir, f)).read() for f in logs)
    assert "--------- config parameters ----------" in text and "------- config parameters end --------" in text
    assert "\nEpoch 2 (3/3)  - Valid_CrossEntropyLoss: " in text and "Valid_Top5: " in text and "LR: " in text, text[-1500:]
    assert "Resumed from " in text and "Checkpoint saved in " in text, text[-1500:]


R.check("every scalar is read back by EventAccumulator (tag, step, float32 value)", check_read_back)
R.check("a torn tail is cut on resume and the next file continues the curves", check_torn_and_resumed)
R.check("a training run killed and resumed: SG's tags once per epoch, the checkpoint's values, the log", check_training_run_killed_and_resumed)
R.finish()
