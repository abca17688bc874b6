#!/usr/bin/env python3
"""The MPI Collective (include/sgckpt/engine/dist/mpi.hpp) on real Open MPI processes, launched
as users launch them: `mpirun -np 2` on this machine's loopback.

  * every operation (all_reduce mean of 1M floats and sum of doubles, broadcast from rank 1,
    barrier, all_gather of blobs of different sizes) gives the in-process ThreadGroup's bits,
    and the launch environment read by engine/dist/launch.hpp agrees with MPI;
  * a hung peer (alive, silent) ends the job with a Timeout error within the timeout;
  * a killed peer ends the job (mpirun tears the others down) within the timeout;
  * both ranks save one torch.distributed.checkpoint directory (each its own shards), which
    torch 2.x's dcp.load reads; a rank killed in the middle of a save leaves the previous
    checkpoint in place, and the next save publishes and cleans up.

Runs tests/drivers/mpi_collectives (built when CMake finds MPI; scripts/install-deps.sh installs
Debian's Open MPI). Environment: SGCKPT_DRIVERS_DIR (the built test drivers).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import oracle  # noqa: E402

DRIVER = os.path.join(oracle.require_driver("mpi_collectives"), "mpi_collectives")
MPIRUN = shutil.which("mpirun") or oracle.fatal("mpirun not found: run scripts/install-deps.sh (openmpi-bin)")
TIMEOUT = 3  # seconds, the collectives' timeout in the failure cases


def mpirun(*args, limit=60):
    t0 = time.monotonic()
    out = subprocess.run([MPIRUN, "-np", "2", "--allow-run-as-root", "--oversubscribe", DRIVER] + list(args),
                         capture_output=True, text=True, timeout=limit)
    return out.returncode, out.stdout + out.stderr, time.monotonic() - t0


def check_operations():
    rc, text, _ = mpirun("check")
    assert rc == 0, text[-3000:]
    assert "ok rank 0" in text and "ok rank 1" in text, text[-3000:]


def check_hung_peer():
    rc, text, seconds = mpirun("hang", str(TIMEOUT))
    assert rc != 0, "the job succeeded although rank 1 never answered:\n" + text[-2000:]
    assert ("rank 0: all_reduce did not complete within %d ms (a peer is hung or gone)" % (TIMEOUT * 1000)) in text, \
        text[-2000:]
    assert seconds < TIMEOUT + 20, "the job took %.1f s to end" % seconds
    print("     hung peer: job ended after %.1f s (timeout %d s), exit status %d" % (seconds, TIMEOUT, rc), flush=True)


def check_killed_peer():
    rc, text, seconds = mpirun("kill", str(TIMEOUT))
    assert rc != 0, "the job succeeded although rank 1 was killed:\n" + text[-2000:]
    assert "the all_reduce returned" not in text, text[-2000:]
    assert seconds < TIMEOUT + 20, "the job took %.1f s to end" % seconds
    said = "signal 9" in text or "did not complete within" in text
    assert said, "no word of the killed rank:\n" + text[-2000:]
    print("     killed peer: job ended after %.1f s, exit status %d" % (seconds, rc), flush=True)


DCP_CHECK = r'''
import sys, warnings, torch, torch.distributed.checkpoint as dcp
warnings.simplefilter("ignore")
gen = int(sys.argv[2])
state = {"w": torch.zeros(7, 3), "v": torch.zeros(5, dtype=torch.int64), "b": torch.zeros(3), "step": 0}
dcp.load(state, checkpoint_id=sys.argv[1])
assert torch.equal(state["w"], torch.arange(21, dtype=torch.float32).reshape(7, 3) + 1000 * gen), state["w"]
assert torch.equal(state["v"], torch.arange(5) + gen), state["v"]
assert torch.equal(state["b"], torch.full((3,), float(gen))) and state["step"] == gen, state
md = dcp.FileSystemReader(sys.argv[1]).read_metadata()
assert len(md.state_dict_metadata["w"].chunks) == 2 and len(md.state_dict_metadata["b"].chunks) == 1
print("torch loads generation", gen)
'''


def torch_loads(path, gen):
    py = oracle.torch2_python()
    if py is None:
        print("     (no torch 2.x: the DCP directory is not read by torch here)", flush=True)
        return
    out = subprocess.run([py, "-c", DCP_CHECK, path, str(gen)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def check_dcp_save(tmp):
    path = os.path.join(tmp, "dcp_ckpt")
    rc, text, _ = mpirun("dcp", path, "1")
    assert rc == 0 and "saved rank 0" in text and "saved rank 1" in text, text[-3000:]
    assert sorted(os.listdir(path)) == [".metadata", "__0_0.distcp", "__1_0.distcp"], os.listdir(path)
    torch_loads(path, 1)
    rc, text, seconds = mpirun("dcp-kill", path, "2")
    assert rc != 0, "the job succeeded although rank 1 was killed:\n" + text[-2000:]
    staged = [n for n in os.listdir(tmp) if n.startswith("dcp_ckpt.staging-")]
    assert staged, "the killed save left no staging directory: %r" % os.listdir(tmp)
    torch_loads(path, 1)  # the previous checkpoint, untouched
    print("     killed save: job ended after %.1f s; %s left behind, checkpoint still generation 1" % (seconds, staged[0]),
          flush=True)
    rc, text, _ = mpirun("dcp", path, "3")
    assert rc == 0, text[-3000:]
    assert sorted(os.listdir(tmp)) == ["dcp_ckpt"], os.listdir(tmp)
    torch_loads(path, 3)


R = oracle.Runner("MPI collectives under mpirun -np 2")
R.check("every operation agrees with the in-process ThreadGroup, bit for bit", check_operations)
R.check("a hung peer ends the job with a Timeout error within the timeout", check_hung_peer)
R.check("a killed peer ends the job within the timeout", check_killed_peer)
with tempfile.TemporaryDirectory() as tmp:
    R.check("2 ranks save a DCP checkpoint torch loads; a killed save keeps the previous one", check_dcp_save, tmp)
R.finish()
