#!/usr/bin/env python3
"""Hostile input round 2 (issue 13) through the programs: train_resnet18 and `sgckpt inspect`.

Each refusal must be clean: exit status exactly 1 within 10 s, one line on stderr, peak RSS
under 1 GiB (address space capped at 2 GiB), and nothing created, written or deleted.

  * Recipes are input too. A "billion laughs" recipe (nested YAML aliases under
    optimizer_params: walking them used to expand nine levels of nine into gigabytes) is
    refused with file:line:column and "recipes may not use YAML aliases/anchors", and no
    run directory is made; so are an anchor in a key.path=value override, a recipe nested
    100 levels deep, a 2 MiB recipe, a FIFO given as the recipe, and a run's stored
    recipe.yaml turned into a bomb (--resume).
  * Files that are not what they seem: `sgckpt inspect FIFO`; `--resume` of a run whose
    averaging_snapshots.pkl is a FIFO; `--run-id` of a run whose ckpt_latest.pth is a FIFO.
    All used to block forever in open().
  * A RUN_ link out of the checkpoint root: --resume skips it (with a warning) and resumes
    the real run; --run-id LINK is refused; the directory it points to is left untouched
    (its stale-looking temporary included).
  * Numbers that do not fit: a checkpoint (written by torch) whose epoch is 2^32 + 1 is
    refused naming 'epoch', where a cast to int used to resume at epoch 1.

Environment: as test_engine_train.py (SGCKPT_EXAMPLES_DIR, SGCKPT_TOOL, Fashion-MNIST).
Run: SGCKPT_EXAMPLES_DIR=build/examples SGCKPT_TOOL=build/tools/sgckpt/sgckpt \
     /usr/bin/python3 tests/python/test_hostile_programs.py
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hashlib  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402
TRAIN = os.path.join(oracle.require_example("train_resnet18"), "train_resnet18")
RECIPE = str(oracle.REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
FMNIST = os.environ.get("SGCKPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
ENV = dict(os.environ, SGCKPT_NUM_THREADS="2")
TIMEOUT = 10.0
MAX_RSS_MIB = 1024
ALIASES = "recipes may not use YAML aliases/anchors"

# One quick epoch of a tiny network.
TINY = [
    "dataset_params.train_samples=64", "dataset_params.valid_samples=32",
    "arch_params.width_mult=0.125", "training_hyperparams.max_epochs=1",
    "training_hyperparams.durable_checkpoints=false",
]


def refuse(args, phrases, program=TRAIN):
    """Runs the program, which must refuse cleanly; returns its stderr."""
    res = oracle.run_tool(program, args, timeout=TIMEOUT, rlimit_as=oracle.default_rlimit_as())
    oracle.assert_clean_refusal(res, phrases, MAX_RSS_MIB)
    return res.stderr_text


def train(args):
    p = subprocess.run(oracle.host_argv([TRAIN] + args), capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, "train_resnet18 %s failed (%d): %s" % (args, p.returncode, p.stderr[-2000:])
    return p.stdout


def first_run(root, experiment):
    """Trains one epoch; returns the run directory."""
    out = train(["--recipe", RECIPE, "--ckpt-root", root, "--experiment", experiment] + TINY)
    return [line for line in out.splitlines() if line.startswith("run_dir=")][-1][len("run_dir="):]


def tree(d):
    """Every file under d with the hash of its content (what "left untouched" compares)."""
    out = {}
    for base, _, files in os.walk(d):
        for f in files:
            p = os.path.join(base, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def laughs(levels=9, width=9):
    """Nine anchors, each a list of nine aliases of the one before: 9^9 leaves when walked."""
    lines = ["training_hyperparams:", "  optimizer_params:",
             "    l0: &l0 [%s]" % ", ".join(["lol"] * width)]
    for i in range(1, levels):
        lines.append("    l%d: &l%d [%s]" % (i, i, ", ".join(["*l%d" % (i - 1)] * width)))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# A. Recipes


def check_billion_laughs(d):
    recipe = os.path.join(d, "laughs.yaml")
    with open(recipe, "w") as f:
        f.write(laughs())
    root = os.path.join(d, "laughs_ck")
    err = refuse(["--recipe", recipe, "--ckpt-root", root], [ALIASES])
    assert re.search(re.escape(recipe) + r":3:9: ", err), "no file:line:column of the first anchor: " + err
    assert not os.path.exists(root), "a run directory was created for a refused recipe"


def check_other_recipe_bombs(d):
    root = os.path.join(d, "bombs_ck")
    refuse(["--recipe", RECIPE, "--ckpt-root", root, "training_hyperparams.lr_updates=[&x 2, *x]"], [ALIASES])
    deep = os.path.join(d, "deep.yaml")
    with open(deep, "w") as f:
        f.write("arch_params: " + "[" * 100 + "]" * 100 + "\n")
    refuse(["--recipe", deep, "--ckpt-root", root], ["nested deeper than 64 levels"])
    big = os.path.join(d, "big.yaml")
    with open(big, "w") as f:
        f.write("#" * (2 << 20) + "\n")
    refuse(["--recipe", big, "--ckpt-root", root], ["bytes a recipe may have"])
    fifo = os.path.join(d, "fifo.yaml")
    os.mkfifo(fifo)
    refuse(["--recipe", fifo, "--ckpt-root", root], ["not a regular file (a FIFO)"])
    assert not os.path.exists(root), "a run directory was created for a refused recipe"


def check_stored_recipe_bomb(d):
    root = os.path.join(d, "stored_ck")
    run = first_run(root, "stored")
    with open(os.path.join(run, "recipe.yaml"), "w") as f:
        f.write(laughs())
    before = tree(root)
    refuse(["--resume", "--experiment", "stored", "--ckpt-root", root], [ALIASES])
    assert tree(root) == before, "the refused resume changed the run"


# ------------------------------------------------------------------------------------------
# B. FIFOs under checkpoint names


def check_fifos(d):
    fifo = os.path.join(d, "inspect.pth")
    os.mkfifo(fifo)
    refuse(["inspect", fifo], ["not a regular file (a FIFO)"], program=oracle.require_tool())

    root = os.path.join(d, "fifo_ck")
    run = first_run(root, "fifo")
    snapshots = os.path.join(run, "averaging_snapshots.pkl")
    os.replace(snapshots, snapshots + ".bak")
    os.mkfifo(snapshots)
    err = refuse(["--resume", "--experiment", "fifo", "--ckpt-root", root, "training_hyperparams.max_epochs=2"],
                 ["not a regular file (a FIFO)"])
    assert "averaging_snapshots.pkl" in err, err
    os.unlink(snapshots)
    os.replace(snapshots + ".bak", snapshots)

    latest = os.path.join(run, "ckpt_latest.pth")
    os.unlink(latest)
    os.mkfifo(latest)
    err = refuse(["--run-id", os.path.basename(run), "--experiment", "fifo", "--ckpt-root", root],
                 ["not a regular file (a FIFO)"])
    assert "ckpt_latest.pth" in err, err


# ------------------------------------------------------------------------------------------
# C. A RUN_ link out of the checkpoint root


def check_run_link_out_of_root(d):
    root = os.path.join(d, "link_ck")
    run = first_run(root, "link")
    outside = os.path.join(d, "outside")
    shutil.copytree(run, outside)  # looks resumable, and newer by name
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(outside, "ckpt_latest.pth.tmp.%d.0" % dead.pid), "w") as f:
        f.write("someone else's file that merely looks like a stale temporary")
    link = os.path.join(root, "link", "RUN_20990101_000000_000000")
    os.symlink(outside, link)
    before = tree(outside)

    out = train(["--resume", "--experiment", "link", "--ckpt-root", root, "training_hyperparams.max_epochs=2"])
    assert "run_dir=" + run in out, "did not resume the real run:\n" + out[-2000:]
    assert "outside the checkpoint root" in out, "the skipped link was not reported:\n" + out[-2000:]
    refuse(["--run-id", os.path.basename(link), "--experiment", "link", "--ckpt-root", root],
           ["outside the checkpoint root"])
    assert tree(outside) == before, "files outside the checkpoint root were written or deleted"


# ------------------------------------------------------------------------------------------
# D. Numbers that do not fit


def check_epoch_beyond_int(d):
    root = os.path.join(d, "numbers_ck")
    run = first_run(root, "numbers")
    latest = os.path.join(run, "ckpt_latest.pth")
    ck = torch.load(latest, map_location="cpu", weights_only=True) if oracle.TORCH_VERSION >= (2, 0) \
        else oracle.torch_load_full(latest)
    ck["epoch"] = 2 ** 32 + 1
    torch.save(ck, latest)
    before = tree(root)
    err = refuse(["--resume", "--experiment", "numbers", "--ckpt-root", root, "training_hyperparams.max_epochs=3"],
                 ["'epoch' = 4294967297 does not fit in int"])
    assert "ckpt_latest.pth" in err, err
    assert tree(root) == before, "the refused resume changed the run"


def main():
    r = oracle.Runner("test_hostile_programs: recipes, FIFOs, links and numbers are refused cleanly")
    if not os.path.isfile(TRAIN):
        oracle.fatal("%s not built" % TRAIN)
    if not os.path.isfile(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")):
        oracle.fatal("Fashion-MNIST not found in %s (scripts/install-deps.sh installs it)" % FMNIST)
    with tempfile.TemporaryDirectory(prefix="sgckpt_hostile_programs_") as d:
        r.check("A: a billion-laughs recipe is refused with its line and column; no run directory",
                check_billion_laughs, d)
        r.check("A: an anchor in an override, a deep, a huge and a FIFO recipe are refused",
                check_other_recipe_bombs, d)
        r.check("A: a run's stored recipe.yaml turned into a bomb is refused on --resume", check_stored_recipe_bomb, d)
        r.check("B: inspect, --resume and --run-id refuse FIFOs under checkpoint names", check_fifos, d)
        r.check("C: a RUN_ link out of the root is skipped or refused; nothing outside is touched",
                check_run_link_out_of_root, d)
        r.check("D: a checkpoint whose epoch is 2^32 + 1 is refused, naming 'epoch'", check_epoch_beyond_int, d)
    r.finish()


if __name__ == "__main__":
    main()
