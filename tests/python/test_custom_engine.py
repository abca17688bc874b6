"""examples/custom_engine: an engine with its own tensor type saves and resumes through
sgckpt::State<MyTensor> and tensor_traits, and torch reads and writes its checkpoints.

Checks:
  * torch.load(ckpt, weights_only=True) reads the file: net/weight, net/bias, the momentum
    buffers and the hyperparameters as float32 tensors, `step` an int;
  * the weights are what torch computes for the same training (same data, same SGD-with-
    momentum rule, float32), to float32 rounding;
  * a run stopped at step 5 and resumed to step 12 writes exactly the file of a run that went
    to 12 at once (every tensor bit for bit);
  * a checkpoint torch writes back, with its tensors converted to float64, resumes in the
    engine (converted as torch's copy_ converts) and continues like the original.

Environment: SGCKPT_EXAMPLES_DIR (the built examples; see oracle.require_example).
Run: SGCKPT_EXAMPLES_DIR=build/examples /usr/bin/python3 tests/python/test_custom_engine.py

Runs under every torch oracle. (tests/CMakeLists.txt registers it once more as
python-torch2/custom_engine, with torch 2.x.)
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import subprocess  # noqa: E402
import tempfile  # noqa: E402

import oracle  # noqa: E402
from oracle import torch  # noqa: E402

PROGRAM = os.path.join(oracle.require_example("custom_engine"), "custom_engine")
SAMPLES, FEATURES = 64, 4


def run(directory, steps, resume=False):
    argv = [PROGRAM, directory, str(steps)] + (["--resume"] if resume else [])
    p = subprocess.run(oracle.host_argv(argv), capture_output=True, timeout=60)
    assert p.returncode == 0, "custom_engine %s: exit %d: %s" % (argv[1:], p.returncode, p.stderr.decode(errors="replace"))
    return os.path.join(directory, "ckpt.pth")


def load(path):
    return torch.load(path, weights_only=True)


def torch_training(steps):
    """The same training in torch: the data the engine computes, SGD with momentum 0.9, lr 0.1."""
    x = torch.tensor([[((i * 7 + j * 13) % 17) / 17.0 - 0.5 for j in range(FEATURES)] for i in range(SAMPLES)],
                     dtype=torch.float32)
    y = 0.25 + (x * 0.5 * torch.arange(1, FEATURES + 1, dtype=torch.float32)).sum(1)
    w = torch.zeros(FEATURES, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


def assert_same_file(a, b):
    for key in ("weight", "bias"):
        assert torch.equal(a["net"][key], b["net"][key]), "net/%s differs" % key
        assert torch.equal(a["optimizer_state_dict"]["momentum_buffer"][key],
                           b["optimizer_state_dict"]["momentum_buffer"][key]), "momentum_buffer/%s differs" % key
    assert a["step"] == b["step"], "step %r vs %r" % (a["step"], b["step"])


def check_torch_reads(tmp):
    ck = load(run(os.path.join(tmp, "straight"), 12))
    assert list(ck["net"].keys()) == ["weight", "bias"], list(ck["net"].keys())
    assert ck["net"]["weight"].dtype == torch.float32 and ck["net"]["weight"].shape == (FEATURES,)
    assert ck["optimizer_state_dict"]["lr"].item() == torch.tensor(0.1).item()
    assert ck["step"] == 12 and isinstance(ck["step"], int)
    w, b = torch_training(12)
    assert torch.allclose(ck["net"]["weight"], w, rtol=1e-5, atol=1e-6), (ck["net"]["weight"], w)
    assert torch.allclose(ck["net"]["bias"], b, rtol=1e-5, atol=1e-6), (ck["net"]["bias"], b)


def check_resume_bit_exact(tmp):
    straight = load(os.path.join(tmp, "straight", "ckpt.pth"))
    d = os.path.join(tmp, "resumed")
    run(d, 5)
    assert load(os.path.join(d, "ckpt.pth"))["step"] == 5
    assert_same_file(load(run(d, 12, resume=True)), straight)


def check_torch_written_resumes(tmp):
    d = os.path.join(tmp, "from_torch")
    ck = load(run(d, 5))
    doubled = {
        "net": {k: v.double() for k, v in ck["net"].items()},
        "optimizer_state_dict": {
            "momentum_buffer": {k: v.double() for k, v in ck["optimizer_state_dict"]["momentum_buffer"].items()},
            "lr": ck["optimizer_state_dict"]["lr"],
            "momentum": ck["optimizer_state_dict"]["momentum"],
        },
        "step": ck["step"],
    }
    torch.save(doubled, os.path.join(d, "ckpt.pth"))
    # float32 -> float64 -> float32 is exact, so the run continues exactly as the original.
    assert_same_file(load(run(d, 12, resume=True)), load(os.path.join(tmp, "straight", "ckpt.pth")))


def main():
    r = oracle.Runner("test_custom_engine: a foreign tensor type saves and resumes through tensor_traits")
    with tempfile.TemporaryDirectory(prefix="sgckpt_custom_engine_") as tmp:
        r.check("torch reads the checkpoint (weights_only=True) and computes the same weights", check_torch_reads, tmp)
        r.check("stopped at 5 and resumed to 12 = straight to 12, bit for bit", check_resume_bit_exact, tmp)
        r.check("a checkpoint torch wrote (float64) resumes and continues exactly", check_torch_written_resumes, tmp)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
