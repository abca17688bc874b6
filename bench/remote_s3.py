"""Remote copies over the loopback: sgckpt against boto3 on the same S3-compatible server
(moto in server mode, tests/python/s3_server.py), in the same run, interleaved.

  upload:   `sgckpt push` of a directory holding the state file  vs  boto3 upload_file
  download: `sgckpt pull --overwrite`                             vs  boto3 download_file
  stall:    bench/remote_stall (the training loop's on_epoch_end without a store, with the S3
            store, and with a directory as the store: the uploader without a server process)

Both clients use their defaults (sgckpt: 16 MiB parts above 64 MiB, 4 at a time, SHA-256 of
every part signed and of the whole object recorded, checked on download; boto3: 8 MiB parts,
10 threads, its default CRC32 checksums). Medians of ROUNDS rounds; moto is a Python server,
so the numbers say as much about it as about either client.

Usage: python bench/remote_s3.py BUILD_DIR [MIB] [ROUNDS]   (the S3 oracle's python)
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
from s3_server import S3Server  # noqa: E402

build = sys.argv[1] if len(sys.argv) > 1 else "build"
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
tool = os.path.join(build, "tools", "sgckpt")
stall = os.path.join(build, "bench", "remote_stall")
work = tempfile.mkdtemp(prefix="sgckpt-remote-bench-")
os.chdir(work)


def timed(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


try:
    with S3Server() as s3:
        env = s3.env()
        src = os.path.join(work, "up")
        os.makedirs(src)
        state = os.path.join(src, "state.pth")
        with open(state, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        size = os.path.getsize(state)
        url = "s3://%s/bench" % s3.bucket
        up_s, up_b, down_s, down_b = [], [], [], []
        for r in range(rounds):
            up_s.append(timed(lambda: subprocess.run([tool, "push", src, url], env=env, check=True,
                                                     stdout=subprocess.DEVNULL)))
            down_s.append(timed(lambda: subprocess.run([tool, "pull", url, os.path.join(work, "down_s"),
                                                        "--overwrite"], env=env, check=True,
                                                       stdout=subprocess.DEVNULL)))
            s3.client.delete_object(Bucket=s3.bucket, Key="bench/state.pth")
            up_b.append(timed(lambda: s3.client.upload_file(state, s3.bucket, "boto/state.pth")))
            down_b.append(timed(lambda: s3.client.download_file(s3.bucket, "boto/state.pth",
                                                                os.path.join(work, "down_b.pth"))))
            s3.client.delete_object(Bucket=s3.bucket, Key="boto/state.pth")
            print("round %d: upload sgckpt %.2f s, boto3 %.2f s; download sgckpt %.2f s, boto3 %.2f s"
                  % (r + 1, up_s[-1], up_b[-1], down_s[-1], down_b[-1]), file=sys.stderr, flush=True)
        assert open(os.path.join(work, "down_s", "state.pth"), "rb").read(1 << 20) == open(state, "rb").read(1 << 20)
        os.remove(state)
        p = subprocess.run([stall, "--dir", os.path.join(work, "stall"), "--store", "s3://%s/stall" % s3.bucket,
                            "--mib", str(min(mib, 256)), "--epochs", "5", "--train-ms", "2000",
                            "--rounds", str(rounds)], env=env, check=True, capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        st = dict((" ".join(l.split()[:2]), float(l.split()[2])) for l in p.stdout.splitlines())
    # The same loop with a directory as the store: the uploader alone, no server process
    # competing for the cores.
    p = subprocess.run([stall, "--dir", os.path.join(work, "stall_dir"), "--store", os.path.join(work, "dirstore"),
                        "--mib", str(min(mib, 256)), "--epochs", "5", "--train-ms", "2000",
                        "--rounds", str(rounds)], check=True, capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    sd = dict((" ".join(l.split()[:2]), float(l.split()[2])) for l in p.stdout.splitlines())
finally:
    shutil.rmtree(work, ignore_errors=True)

mb = size / 1e6
med = statistics.median
print("\n%-34s %12s %12s %8s" % ("%d MiB over the loopback (moto)" % mib, "sgckpt", "boto3", "ratio"))
print("%-34s %9.0f MB/s %7.0f MB/s %7.2fx" % ("upload (median of %d)" % rounds, mb / med(up_s), mb / med(up_b),
                                            med(up_b) / med(up_s)))
print("%-34s %9.0f MB/s %7.0f MB/s %7.2fx" % ("download", mb / med(down_s), mb / med(down_b),
                                            med(down_b) / med(down_s)))
print("\ntraining loop, %d MiB state, 5 epochs of 2 s:  no store      S3 (moto)   directory" % min(mib, 256))
for label, key, unit in [("on_epoch_end stall, median", "stall_ms_median", "ms"),
                         ("on_epoch_end stall, max", "stall_ms_max", "ms"),
                         ("finish() (last write [+ uploads])", "finish_ms", "ms")]:
    print("  %-34s %7.1f %s %7.1f %s %7.1f %s" % (label, st["off " + key], unit, st["on " + key], unit,
                                                sd["on " + key], unit))
print("  (no store: median of both runs' store-less rounds: %.1f ms)" % statistics.median(
    [st["off stall_ms_median"], sd["off stall_ms_median"]]))
