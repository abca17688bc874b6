#!/usr/bin/env bash
# Remote copies over the loopback: sgckpt's S3 client against boto3 on the same local
# S3-compatible server (upload and download of a MIB MiB state), and the training loop's stall
# per checkpoint with remote saving on and off (bench/remote_stall). See bench/remote_s3.py.
#
# Usage: bash bench/remote_s3.sh [BUILD_DIR] [MIB] [ROUNDS]      (default build 1024 3)
# Env:   SGCKPT_S3_PYTHON: the S3 oracle's python (default /var/cache/sgckpt/s3-venv/bin/python,
#        installed by scripts/install-s3-oracle.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
python=${SGCKPT_S3_PYTHON:-/var/cache/sgckpt/s3-venv/bin/python}
[ -x "$build/tools/sgckpt" ] && [ -x "$build/bench/remote_stall" ] ||
  { echo "no $build/tools/sgckpt or $build/bench/remote_stall: build them first" >&2; exit 1; }
exec "$python" "$here/remote_s3.py" "$build" "${2:-1024}" "${3:-3}"
