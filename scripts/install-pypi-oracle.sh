#!/usr/bin/env bash
# Installs the PyPI oracles (the real `safetensors`, `tensorboard` and SuperGradients 3.7.1
# packages) into a Python virtual environment over Debian's /usr/bin/python3, so that Debian's
# torch 1.13 and numpy stay the ones the tests use. Cached outside the clone and rebuilt only when the pins in
# scripts/pypi-oracle-requirements.txt change. Prints nothing but progress; the interpreter is
# $SGCKPT_CACHE_DIR/pypi-venv/bin/python (scripts/test.sh exports it as SGCKPT_PYPI_PYTHON).
#
#   bash scripts/install-pypi-oracle.sh     # ~1 min and ~700 MB the first time; then instant
#
# Environment: SGCKPT_CACHE_DIR (default /var/cache/sgckpt), SGCKPT_BASE_PYTHON (default
#   /usr/bin/python3, Debian's, with python3-torch and python3-numpy).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}/pypi-venv"
bash "$repo/scripts/install-venv.sh" pypi-venv "$repo/scripts/pypi-oracle-requirements.txt" --system-site-packages

"$venv/bin/python" - <<'PY'
import os, tempfile
os.environ.setdefault("SUPER_GRADIENTS_LOG_DIR", tempfile.mkdtemp(prefix="sg-logs-"))
import safetensors, tensorboard, torch, numpy, super_gradients
print("install-pypi-oracle: safetensors %s, tensorboard %s, super-gradients %s over torch %s, numpy %s"
      % (safetensors.__version__, tensorboard.__version__, super_gradients.__version__, torch.__version__,
         numpy.__version__))
PY
