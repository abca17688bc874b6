#!/usr/bin/env bash
# Installs the torch 2.x oracle: Debian trixie's python3-torch (torch 2.6) in a minimal chroot
# made with debootstrap from the Debian mirror, cached outside the clone so that CI runs
# after the first reuse it. Prints the interpreter to use (scripts/torch2-python, a wrapper
# that runs the chroot's python3 with the host paths the tests use bind-mounted), and checks
# that it imports torch 2.x.
#
#   bash scripts/install-torch2-oracle.sh        # ~2 min and ~1.6 GB the first time; then ~1 s
#
# Environment: SGCKPT_CACHE_DIR (default /var/cache/sgckpt): the chroot is
#   $SGCKPT_CACHE_DIR/trixie-torch; SGCKPT_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Needs root (debootstrap, and the wrapper's mount namespace and chroot).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SGCKPT_CACHE_DIR:-/var/cache/sgckpt}"
root="$cache/trixie-torch"
mirror="${SGCKPT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the oracle scripts import, and nothing else (no recommends).
packages=python3-torch,python3-numpy

if [ "$(id -u)" -ne 0 ]; then
  echo "install-torch2-oracle: needs root (debootstrap, chroot)" >&2
  exit 1
fi

if [ ! -e "$root/.sgckpt-complete" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
  fi
  # A half-made chroot (an earlier run killed part way) is started again from scratch.
  rm -rf "$root.partial"
  mkdir -p "$cache"
  echo "install-torch2-oracle: debootstrap trixie into $root (a few minutes, ~1.6 GB)"
  debootstrap --variant=minbase --include="$packages" trixie "$root.partial" "$mirror" \
    >"$cache/trixie-torch.debootstrap.log" 2>&1 || {
    tail -30 "$cache/trixie-torch.debootstrap.log" >&2
    echo "install-torch2-oracle: debootstrap failed (log: $cache/trixie-torch.debootstrap.log)" >&2
    exit 1
  }
  # Keep only what the interpreter needs: the package cache is half the size.
  rm -rf "$root.partial/var/cache/apt/archives/"*.deb
  touch "$root.partial/.sgckpt-complete"
  rm -rf "$root"
  mv "$root.partial" "$root"
fi

version=$("$repo/scripts/torch2-python" -c 'import torch; print(torch.__version__)')
case "$version" in
  2.*) echo "install-torch2-oracle: torch $version ready: $repo/scripts/torch2-python" ;;
  *) echo "install-torch2-oracle: the chroot's torch is '$version', not 2.x" >&2; exit 1 ;;
esac
