"""A real S3-compatible server for the remote-store tests: moto in server mode (PyPI, in the
S3 oracle's virtual environment, scripts/install-s3-oracle.sh), started on the loopback
address with signature checking ON, plus a small TCP proxy the tests control to stop the
"server" or cut a connection in the middle of a request.

  with S3Server() as s3:                 # moto on 127.0.0.1:<free port>, bucket s3.bucket
      s3.env                             # AWS_* variables for sgckpt (real keys moto checks)
      s3.client                          # a boto3 client on the same server
      with Proxy(s3.port) as p:          # 127.0.0.1:<p.port> -> moto
          p.mode = "refuse"             # connections are closed at once (a server that is down)
          p.cut_after = 3 << 20         # the next connection is cut after 3 MiB sent upstream

moto keeps its state in memory, so stopping the process would lose the bucket; "the server
is down" is therefore the proxy refusing connections, which is what a client sees.
"""
import sys

sys.dont_write_bytecode = True

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto_server on the loopback address; IAM user with S3 rights; auth enforced."""

    def __init__(self, bucket="sgckpt-test", region="us-east-1", tls=False):
        self.bucket = bucket
        self.region = region
        self.port = free_port()
        self.tls = tls
        self.endpoint = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.proc = None
        self.ca_file = None

    def __enter__(self):
        name = "moto_server_tls" if self.tls else "moto_server"
        log = open(os.path.join(os.getcwd(), name + ".log"), "wb")
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        context = None
        if self.tls:
            cert, key = self._make_certificate(os.path.join(os.getcwd(), name))
            argv += ["-c", cert, "-k", key]
            self.ca_file = cert
            import ssl
            context = ssl.create_default_context(cafile=cert)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2, context=context).read()
                break
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto_server did not start (see moto_server.log)")
                time.sleep(0.2)
        import boto3
        # Set-up without auth (moto starts that way), then auth on: every later request,
        # sgckpt's and boto3's, must carry a valid SigV4 signature of a key IAM knows.
        anon = dict(endpoint_url=self.endpoint, region_name=self.region, verify=self.ca_file or True,
                    aws_access_key_id="setup", aws_secret_access_key="setup")
        iam = boto3.client("iam", **anon)
        iam.create_user(UserName="trainer")
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]
        boto3.client("s3", **anon).create_bucket(Bucket=self.bucket)
        req = urllib.request.Request(self.endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=10, context=context).read()
        self.client = self.make_client()
        return self

    def make_client(self, endpoint=None):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name=self.region,
                            verify=self.ca_file or True,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 2, "mode": "standard"}))

    @staticmethod
    def _make_certificate(stem):
        """A self-signed certificate for 127.0.0.1 (its own CA), with the cryptography package."""
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sgckpt test server")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        with open(stem + ".crt", "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(stem + ".key", "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return stem + ".crt", stem + ".key"

    def env(self, endpoint=None, **extra):
        """The environment sgckpt reads its credentials and endpoint from."""
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("AWS_"):
                del e[k]
        e.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                 AWS_REGION=self.region, AWS_ENDPOINT_URL_S3=endpoint or self.endpoint,
                 AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
        e.update(extra)
        return e

    def objects(self, prefix=""):
        """{key: bytes} of everything under prefix."""
        out = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for o in page.get("Contents", []):
                out[o["Key"]] = self.client.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
        return out

    def pending_multipart_uploads(self):
        return self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Proxy:
    """127.0.0.1:<port> forwarding to 127.0.0.1:<upstream>. mode: "pass" or "refuse" (accept
    and close at once: a server that is down). cut_after: when set, the first connection that
    sends that many bytes upstream is closed there (a connection cut in the middle of a part);
    cut_every: every connection is.
    Counts connections and cuts."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.mode = "pass"
        self.cut_after = None
        self.cut_every = None
        self.connections = 0
        self.refused = 0
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.stop = False
        self.lock = threading.Lock()

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.sock.close()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "refuse":
                self.refused += 1
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()  # RST: what a client sees from a port nobody listens on
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _limit(self, sent, n):
        """Whether this connection, having sent `sent` bytes, dies before sending n more."""
        if self.cut_every is not None:
            return sent + n >= self.cut_every, self.cut_every
        with self.lock:
            if self.cut_after is not None and sent + n >= self.cut_after:
                limit, self.cut_after = self.cut_after, None
                return True, limit
        return False, None

    def _serve(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            c.close()
            return
        done = threading.Event()

        def pump(src, dst, upstream):
            sent = 0
            try:
                while True:
                    data = src.recv(1 << 16)
                    if not data:
                        break
                    cut, limit = self._limit(sent, len(data)) if upstream else (False, None)
                    if cut:
                        dst.sendall(data[:max(0, limit - sent)])
                        self.cuts += 1
                        break
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            done.set()

        threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
        done.wait()
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
