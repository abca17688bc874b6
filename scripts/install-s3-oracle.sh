#!/usr/bin/env bash
# Installs the S3 oracle (moto's S3-compatible server and boto3, from PyPI) into its own
# virtual environment, cached outside the clone and rebuilt only when the pins in
# scripts/s3-oracle-requirements.txt change. The interpreter is $SGCKPT_CACHE_DIR/s3-venv/bin/python
# (scripts/test.sh exports it as SGCKPT_S3_PYTHON).
#
#   bash scripts/install-s3-oracle.sh     # ~1 min and ~150 MB the first time; then instant
#
# Environment: SGCKPT_CACHE_DIR (default /var/cache/sgckpt), SGCKPT_BASE_PYTHON (default
#   /usr/bin/python3, Debian's, with python3-venv).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}/s3-venv"
bash "$repo/scripts/install-venv.sh" s3-venv "$repo/scripts/s3-oracle-requirements.txt"

"$venv/bin/python" -c "import moto, boto3, flask; print('install-s3-oracle: moto %s, boto3 %s' % (moto.__version__, boto3.__version__))"
