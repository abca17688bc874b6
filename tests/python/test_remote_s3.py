"""Remote copies of runs against a real S3-compatible server (docs/remote.md).

Runs with the S3 oracle. moto in server mode on the loopback address, with SigV4 checking on
(tests/python/s3_server.py), is the store; boto3 reads what sgckpt wrote. A small proxy the
test controls stands between them for the faults: a server that is down, a connection cut
in the middle of a part. Checks:

  * a short training run uploads every checkpoint (and recipe, averaging snapshots, log,
    events), and the store's bytes equal the local files;
  * resume from the store into an empty directory continues bit-exactly (against a run that
    was never interrupted), in the same run id, and goes on uploading there;
  * sgckpt push / pull / ls; a file above the multipart threshold goes up in parts;
  * faults: the store down while training (training goes on, warns, uploads once it is
    back), a connection cut mid-part (the part is sent again), parts that keep failing (the
    multipart upload is aborted: no object, no stray parts), wrong credentials and a bucket
    that does not exist (a clear error, no secret anywhere), a downloaded object whose
    checksum is wrong (refused, the local file untouched), keys that would escape the
    destination (skipped);
  * TLS: verified by default (a self-signed server is refused), AWS_CA_BUNDLE trusts its CA.
"""
import sys

sys.dont_write_bytecode = True

import glob
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from s3_server import Proxy, S3Server  # noqa: E402


def find_program(env_dir, sub, name, required=True):
    dirs = [os.environ[env_dir]] if os.environ.get(env_dir) else []
    if os.environ.get("SGCKPT_BINARY_DIR"):
        dirs.append(os.path.join(os.environ["SGCKPT_BINARY_DIR"], sub))
    dirs += sorted(glob.glob(str(REPO / "build*" / sub)))
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    if not required:
        return None
    print("FATAL: %s not found in %s" % (name, dirs), flush=True)
    sys.exit(2)


TOOL = os.environ.get("SGCKPT_TOOL") or find_program("SGCKPT_TOOL_DIR", "tools", "sgckpt")
# The sanitizer stage of CI builds no examples: there the store checks run on the sanitized
# tool, and the training checks run in the first stage only (said in the output).
SANITIZED = os.environ.get("SGCKPT_SANITIZED") == "1"
TRAIN = find_program("SGCKPT_EXAMPLES_DIR", "examples", "train_resnet18", required=not SANITIZED)
RECIPE = str(REPO / "examples" / "recipes" / "fashion_mnist_resnet18.yaml")
SECRET_MARK = "sgckpt-never-print-me"

# A few seconds per epoch on two cores; a step schedule, so that a run continued with more
# epochs follows the same learning rates as one that was given them from the start.
TINY = [
    "--experiment", "tiny",
    "dataset_params.train_samples=256", "dataset_params.valid_samples=128",
    "arch_params.width_mult=0.125",
    "training_hyperparams.batch_size=32",
    "training_hyperparams.lr_mode=step", "training_hyperparams.lr_updates=[2]",
    "training_hyperparams.initial_lr=0.01",
    "training_hyperparams.save_ckpt_epoch_list=[1]",
    "training_hyperparams.durable_checkpoints=false",
]


def remote(s3, endpoint, *extra):
    return ["sg_logger_params.save_checkpoints_remote=true",
            "sg_logger_params.remote_store=s3://%s/runs" % s3.bucket,
            "sg_logger_params.remote_endpoint=" + endpoint,
            "sg_logger_params.save_logs_remote=true",
            "sg_logger_params.save_tensorboard_remote=true"] + list(extra)


def run(argv, env, timeout=600, ok=True):
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if ok and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (" ".join(argv[:3]), p.returncode, p.stdout[-3000:],
                                                        p.stderr[-3000:]))
    return p


def train(s3, args, env=None, **kw):
    e = env or s3.env()
    e["SGCKPT_NUM_THREADS"] = "2"
    return run([TRAIN, "--recipe", RECIPE] + TINY + args, e, **kw)


def run_dir_of(out):
    m = re.findall(r"^run_dir=(.*)$", out, re.M)
    assert m, out[-2000:]
    return m[-1]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def same_tree(a, b, what):
    """`sgckpt diff --select what` finds nothing between two checkpoints."""
    p = run([TOOL, "diff", a, b, "--select", what], dict(os.environ))
    assert "no differences" in p.stdout, "%s differs:\n%s" % (what, p.stdout[-2000:])


class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0

    def check(self, name, fn, *a):
        t = time.monotonic()
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            msg = " | ".join(l for l in (str(e) or type(e).__name__).splitlines() if l.strip())[:3000]
            tb = traceback.extract_tb(e.__traceback__)
            where = "%s:%d" % (os.path.basename(tb[-1].filename), tb[-1].lineno) if tb else "?"
            print("FAIL %s: %s (at %s)" % (name, msg, where), flush=True)
            self.failed.append(name)
            return
        self.passed += 1
        print("ok   %s (%.1f s)" % (name, time.monotonic() - t), flush=True)


# ------------------------------------------------------------------------------------------


def uploads_every_checkpoint(s3, work):
    root = os.path.join(work, "upload")
    out = train(s3, ["--ckpt-root", root, "training_hyperparams.max_epochs=2"] + remote(s3, s3.endpoint)).stdout
    run_dir = run_dir_of(out)
    prefix = "runs/tiny/%s/" % os.path.basename(run_dir)
    objs = s3.objects(prefix)
    names = {k[len(prefix):] for k in objs}
    for n in ["ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_1.pth", "average_model.pth",
              "averaging_snapshots.pkl", "recipe.yaml"]:
        assert n in names, "%s not uploaded: %s" % (n, sorted(names))
        local = open(os.path.join(run_dir, n), "rb").read()
        assert objs[prefix + n] == local, "%s: the store's bytes differ from the local file" % n
        meta = s3.client.head_object(Bucket=s3.bucket, Key=prefix + n)["Metadata"]
        assert meta.get("sgckpt-sha256") == sha(local), (n, meta)
    assert any(n.startswith("experiment_logs_") for n in names), sorted(names)
    assert any(n.startswith("events.out.tfevents") for n in names), sorted(names)
    line = [l for l in out.splitlines() if "Remote copies in s3://%s/runs/tiny/" % s3.bucket in l]
    assert line and "NOT uploaded" not in line[-1] and " 0 failed tries" in line[-1], line or out[-2000:]


def resume_from_store(s3, work):
    ref_root = os.path.join(work, "ref")
    ref = run_dir_of(train(s3, ["--ckpt-root", ref_root, "training_hyperparams.max_epochs=3"]).stdout)
    first = run_dir_of(train(s3, ["--ckpt-root", os.path.join(work, "machine1"), "training_hyperparams.max_epochs=2"]
                             + remote(s3, s3.endpoint)).stdout)
    # Another machine: an empty checkpoint root, the run only in the store.
    root2 = os.path.join(work, "machine2")
    out = run([TRAIN, "--resume-from-remote", "--remote", "s3://%s/runs" % s3.bucket, "--remote-endpoint",
               s3.endpoint, "--experiment", "tiny", "--ckpt-root", root2, "training_hyperparams.max_epochs=3"],
              dict(s3.env(), SGCKPT_NUM_THREADS="2")).stdout
    resumed = run_dir_of(out)
    assert os.path.basename(resumed) == os.path.basename(first), (resumed, first)
    assert "Downloaded run %s" % os.path.basename(first) in out, out[-2000:]
    assert re.search(r"Resumed from .*ckpt_latest.pth.*starting at epoch 2", out), out[-3000:]
    for what in ["net", "ema_net", "optimizer_state_dict", "epoch"]:
        same_tree(os.path.join(ref, "ckpt_latest.pth"), os.path.join(resumed, "ckpt_latest.pth"), what)
    # The run goes on uploading where it came from.
    key = "runs/tiny/%s/ckpt_latest.pth" % os.path.basename(first)
    assert s3.objects(key)[key] == open(os.path.join(resumed, "ckpt_latest.pth"), "rb").read()
    # Again: the run now exists locally, and the store's copy must not replace it.
    p = run([TRAIN, "--resume-from-remote", "--remote", "s3://%s/runs" % s3.bucket, "--remote-endpoint",
             s3.endpoint, "--experiment", "tiny", "--ckpt-root", root2], s3.env(), ok=False)
    assert p.returncode == 1 and "already has a local ckpt_latest.pth" in p.stderr, p.stderr


def push_pull_ls_multipart(s3, work):
    d = os.path.join(work, "push")
    os.makedirs(d)
    big = os.urandom(80 << 20)  # above the 64 MiB threshold: 5 parts of 16 MiB
    small = os.urandom(12345)
    open(os.path.join(d, "big.pth"), "wb").write(big)
    open(os.path.join(d, "small.pth"), "wb").write(small)
    open(os.path.join(d, "x.pth.tmp.123.4"), "wb").write(b"a temporary: never pushed")
    url = "s3://%s/pushed" % s3.bucket
    out = run([TOOL, "push", d, url, "--endpoint", s3.endpoint], s3.env()).stdout
    assert "pushed 2 files" in out, out
    objs = s3.objects("pushed/")
    assert objs == {"pushed/big.pth": big, "pushed/small.pth": small}, sorted(objs)
    etag = s3.client.head_object(Bucket=s3.bucket, Key="pushed/big.pth")["ETag"]
    assert etag.endswith('-5"'), "not a 5-part multipart object: ETag %s" % etag
    ls = run([TOOL, "ls", url, "--endpoint", s3.endpoint], s3.env()).stdout.split("\n")
    assert "%d big.pth" % len(big) in ls and "%d small.pth" % len(small) in ls, ls
    back = os.path.join(work, "pulled")
    out = run([TOOL, "pull", url, back, "--endpoint", s3.endpoint], s3.env()).stdout
    assert open(os.path.join(back, "big.pth"), "rb").read() == big
    assert open(os.path.join(back, "small.pth"), "rb").read() == small
    out = run([TOOL, "pull", url, back, "--endpoint", s3.endpoint], s3.env()).stdout
    assert "kept big.pth" in out and "pulled 0 files" in out, out
    assert not s3.pending_multipart_uploads()


def cut_mid_part(s3, work):
    d = os.path.join(work, "cut")
    os.makedirs(d)
    data = os.urandom(80 << 20)
    open(os.path.join(d, "f.pth"), "wb").write(data)
    with Proxy(s3.port) as p:
        p.cut_after = 8 << 20  # the first connection to send 8 MiB dies there, in the middle of a part
        run([TOOL, "push", d, "s3://%s/cut" % s3.bucket, "--endpoint", p.endpoint], s3.env())
        assert p.cuts == 1, "the proxy cut %d connections" % p.cuts
    assert s3.objects("cut/") == {"cut/f.pth": data}
    assert not s3.pending_multipart_uploads()


def parts_keep_failing(s3, work):
    d = os.path.join(work, "fail")
    os.makedirs(d)
    open(os.path.join(d, "f.pth"), "wb").write(os.urandom(80 << 20))
    with Proxy(s3.port) as p:
        p.cut_every = 2 << 20  # every connection dies 2 MiB in: no part ever arrives
        r = run([TOOL, "push", d, "s3://%s/fail" % s3.bucket, "--endpoint", p.endpoint], s3.env(), ok=False)
    assert r.returncode == 1 and "(5 parts) failed and was aborted: part " in r.stderr, r.stderr
    assert not s3.objects("fail/"), "an object appeared although its parts never all arrived"
    assert not s3.pending_multipart_uploads(), "the failed multipart upload was not aborted"


def store_down_while_training(s3, work):
    root = os.path.join(work, "down")
    with Proxy(s3.port) as p:
        p.mode = "refuse"
        args = [TRAIN, "--recipe", RECIPE] + TINY + [
            "--ckpt-root", root, "training_hyperparams.max_epochs=4"] + remote(
            s3, p.endpoint, "sg_logger_params.remote_attempts=2", "sg_logger_params.remote_backoff_ms=50")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(s3.env(), SGCKPT_NUM_THREADS="2"))
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "tried again at the next checkpoint" in line:
                p.mode = "pass"  # the store is back
        err = proc.stderr.read()
        assert proc.wait(600) == 0, "".join(lines)[-3000:] + err
        assert p.refused > 0
    out = "".join(lines)
    assert "tried again at the next checkpoint" in out, "no warning while the store was down:\n" + out[-3000:]
    assert re.search(r"epoch 4/4 ", out), "training did not go on:\n" + out[-3000:]
    run_dir = run_dir_of(out)
    prefix = "runs/tiny/%s/" % os.path.basename(run_dir)
    objs = s3.objects(prefix)
    for n in ["ckpt_latest.pth", "ckpt_best.pth", "ckpt_epoch_1.pth", "recipe.yaml"]:
        assert objs.get(prefix + n) == open(os.path.join(run_dir, n), "rb").read(), n
    assert "works again" in out, out[-3000:]


def wrong_credentials(s3, work):
    secret = SECRET_MARK + "-0123456789abcdef"
    env = s3.env(AWS_SECRET_ACCESS_KEY=secret)
    r = run([TOOL, "ls", "s3://%s" % s3.bucket], env, ok=False)
    assert r.returncode == 1 and "SignatureDoesNotMatch" in r.stderr and "check the credentials" in r.stderr, r.stderr
    assert secret not in r.stderr + r.stdout
    r = run([TOOL, "ls", "s3://%s" % s3.bucket], s3.env(AWS_ACCESS_KEY_ID="AKIANOSUCHKEY0000000"), ok=False)
    assert r.returncode == 1 and "InvalidAccessKeyId" in r.stderr, r.stderr
    r = run([TOOL, "ls", "s3://%s" % s3.bucket], s3.env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY=""), ok=False)
    assert r.returncode == 1 and "no S3 credentials" in r.stderr, r.stderr
    # The shared credentials file, as the AWS CLI writes it.
    cred = os.path.join(work, "credentials")
    open(cred, "w").write("[default]\naws_access_key_id = x\naws_secret_access_key = y\n\n[train]\n"
                          "aws_access_key_id = %s\naws_secret_access_key = %s\n" % (s3.access_key, s3.secret_key))
    env = s3.env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_SHARED_CREDENTIALS_FILE=cred, AWS_PROFILE="train")
    run([TOOL, "ls", "s3://%s" % s3.bucket], env)
    # A training run with wrong credentials trains, warns, and leaves the secret nowhere.
    if TRAIN is None:
        return
    root = os.path.join(work, "creds")
    out = train(s3, ["--ckpt-root", root, "training_hyperparams.max_epochs=1"]
                + remote(s3, s3.endpoint, "sg_logger_params.remote_attempts=1", "sg_logger_params.remote_backoff_ms=10",
                         "sg_logger_params.remote_finish_timeout=3"),
                env=s3.env(AWS_SECRET_ACCESS_KEY=secret))
    text = out.stdout + out.stderr
    assert "SignatureDoesNotMatch" in text and "NOT uploaded" in text, text[-3000:]
    assert secret not in text
    for f in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if os.path.isfile(f):
            assert secret.encode() not in open(f, "rb").read(), "the secret is in " + f


def no_such_bucket(s3, work):
    d = os.path.join(work, "nb")
    os.makedirs(d)
    open(os.path.join(d, "f"), "wb").write(b"x")
    r = run([TOOL, "push", d, "s3://no-such-bucket-here/x"], s3.env(), ok=False)
    assert r.returncode == 1 and "NoSuchBucket" in r.stderr and 'bucket "no-such-bucket-here" does not exist' in r.stderr, \
        r.stderr
    # A name that would change the host or the path a signed request goes to is refused.
    for bad in ["s3://evil.example:8080#", "s3://a", "s3://user@host/x"]:
        r = run([TOOL, "ls", bad], s3.env(), ok=False)
        assert r.returncode == 1 and "a bucket name is 3 to 63" in r.stderr, (bad, r.stderr)


def checksum_refused(s3, work):
    d = os.path.join(work, "ck")
    os.makedirs(d)
    good = os.urandom(1 << 20)
    open(os.path.join(d, "ckpt_latest.pth"), "wb").write(good)
    run([TOOL, "push", d, "s3://%s/ck" % s3.bucket], s3.env())
    # The object is replaced behind sgckpt's back by other bytes with the same recorded checksum.
    bad = bytearray(good)
    bad[12345] ^= 0xFF
    s3.client.put_object(Bucket=s3.bucket, Key="ck/ckpt_latest.pth", Body=bytes(bad),
                         Metadata={"sgckpt-sha256": sha(good)})
    r = run([TOOL, "pull", "s3://%s/ck" % s3.bucket, d, "--overwrite"], s3.env(), ok=False)
    assert r.returncode == 1 and "does not match the SHA-256" in r.stderr, r.stderr
    assert open(os.path.join(d, "ckpt_latest.pth"), "rb").read() == good, "the local file was changed"
    assert sorted(os.listdir(d)) == ["ckpt_latest.pth"], os.listdir(d)


def hostile_keys(s3, work):
    for k in ["evil/../../escaped.pth", "evil/sub/nested.pth", "evil/ok.pth"]:
        s3.client.put_object(Bucket=s3.bucket, Key=k, Body=b"data")
    d = os.path.join(work, "evil", "inside")
    out = run([TOOL, "pull", "s3://%s/evil" % s3.bucket, d], s3.env()).stdout
    assert sorted(os.listdir(d)) == ["ok.pth"], os.listdir(d)
    assert not os.path.exists(os.path.join(work, "escaped.pth")) and "skipped" in out, out


def tls(work):
    """TLS is verified by default: a server whose certificate no trusted CA signed is refused at
    once (no retries); with its CA in AWS_CA_BUNDLE, the same requests work over https."""
    d = os.path.join(work, "tls")
    os.makedirs(d)
    data = os.urandom(100000)
    open(os.path.join(d, "f.pth"), "wb").write(data)
    with S3Server(tls=True) as s3:
        t = time.monotonic()
        r = run([TOOL, "ls", "s3://%s" % s3.bucket], s3.env(), ok=False)
        assert r.returncode == 1 and "certificate" in r.stderr.lower(), r.stderr
        assert time.monotonic() - t < 5, "a certificate failure was retried"
        env = s3.env(AWS_CA_BUNDLE=s3.ca_file)
        run([TOOL, "push", d, "s3://%s/tls" % s3.bucket], env)
        assert s3.objects("tls/") == {"tls/f.pth": data}
        assert "100000 f.pth" in run([TOOL, "ls", "s3://%s/tls" % s3.bucket], env).stdout


def main():
    print("== remote copies against moto %s (python %s)" % (__import__("moto").__version__, sys.executable), flush=True)
    work = tempfile.mkdtemp(prefix="sgckpt-remote-", dir=os.getcwd())
    c = Checks()
    training = [("uploads_every_checkpoint", uploads_every_checkpoint),
                ("resume_from_store_bit_exact", resume_from_store),
                ("store_down_while_training", store_down_while_training)]
    if TRAIN is None:
        print("note: no train_resnet18 in this build (the sanitizer stage builds no examples): %s run in "
              "the first stage only" % ", ".join(n for n, _ in training), flush=True)
        training = []
    with S3Server() as s3:
        for name, fn in training:
            c.check(name, fn, s3, work)
        c.check("push_pull_ls_multipart", push_pull_ls_multipart, s3, work)
        c.check("connection_cut_mid_part", cut_mid_part, s3, work)
        c.check("parts_keep_failing_abort", parts_keep_failing, s3, work)
        c.check("wrong_credentials_no_secret", wrong_credentials, s3, work)
        c.check("no_such_bucket", no_such_bucket, s3, work)
        c.check("checksum_mismatch_refused", checksum_refused, s3, work)
        c.check("hostile_keys_skipped", hostile_keys, s3, work)
    c.check("tls_verified_by_default", tls, work)
    if c.failed:
        print("== remote: %d passed, %d FAILED: %s" % (c.passed, len(c.failed), ", ".join(c.failed)), flush=True)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("== remote: all %d checks passed" % c.passed, flush=True)


if __name__ == "__main__":
    main()
