#!/usr/bin/env bash
# A pinned Python virtual environment under the cache, rebuilt only when its requirements file
# changes (the oracles: install-pypi-oracle.sh, install-s3-oracle.sh). Packages go in with
# --no-deps: the requirements file pins everything, so an oracle never changes between runs.
#
#   bash scripts/install-venv.sh NAME REQUIREMENTS [--system-site-packages]
#     -> $SGCKPT_CACHE_DIR/NAME (default /var/cache/sgckpt/NAME), over $SGCKPT_BASE_PYTHON
#        (default /usr/bin/python3, Debian's)
set -euo pipefail

name=$1
reqs=$2
site=${3:-}
cache="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}"
venv="$cache/$name"
base="${SGCKPT_BASE_PYTHON:-/usr/bin/python3}"
stamp="$venv/.sgckpt-requirements"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$reqs" "$stamp"; then
  echo "install-venv: $name cached at $venv"
  exit 0
fi
echo "install-venv: building $venv"
mkdir -p "$cache"
rm -rf "$venv"  # the stamp is written last: a half-built environment is rebuilt, never used
"$base" -m venv $site "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps -r "$reqs"
cp "$reqs" "$stamp"
