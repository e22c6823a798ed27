#!/usr/bin/env bash
# Bootstraps the Python base image of the zonda images from a Debian mirror, for sites that cannot
# pull docker.io/library/python (air-gapped clusters, registries behind a proxy, CI without Docker Hub).
#
#   images/base/bootstrap.sh            build $BASE_REF unless it already exists
#   images/base/bootstrap.sh --force    rebuild it
#
# The result is Debian bookworm (minbase) with Debian's Python 3.11, python3-venv and the CA
# certificates: the same Python minor version and libc as python:3.11-slim-bookworm, in about
# 180 MB. Use it with `PYTHON_BASE=$BASE_REF make images`.
#
# Environment:
#   BASE_REF       image reference to create (default: localhost/zonda-python-base:bookworm)
#   DEBIAN_MIRROR  Debian mirror (default: http://deb.debian.org/debian)
#   ENGINE         podman or docker (default: podman when installed, else docker)
#
# Needs root (debootstrap) and the `debootstrap` package (apt-get install debootstrap).
set -euo pipefail

die() { echo "images/base/bootstrap.sh: $*" >&2; exit 1; }

base_ref=${BASE_REF:-localhost/zonda-python-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=python3,python3-venv,ca-certificates
force=no
case "${1:-}" in
  "") ;;
  --force) force=yes ;;
  *) die "unknown argument '$1' (use --force to rebuild)" ;;
esac

engine=${ENGINE:-}
if [[ -z "$engine" ]]; then
  if command -v podman > /dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
command -v "$engine" > /dev/null 2>&1 || die "$engine is not installed"
command -v debootstrap > /dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"

if [[ "$force" == no ]] && "$engine" image inspect "$base_ref" > /dev/null 2>&1; then
  echo "images/base/bootstrap.sh: $base_ref exists (--force rebuilds it)" >&2
  echo "$base_ref"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/zonda-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap $suite ($packages) from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"
# What a container base leaves out: package lists and caches, docs, man pages, logs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*
"$rootfs"/usr/bin/python3 --version > /dev/null 2>&1 || chroot "$rootfs" python3 --version > /dev/null \
  || die "the bootstrapped root has no working python3"

echo "==> importing it as $base_ref with $engine" >&2
tar -C "$rootfs" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$base_ref" > /dev/null
"$engine" run --rm "$base_ref" python3 -c 'import sys, ssl, venv; assert sys.version_info[:2] == (3, 11), sys.version' \
  || die "$base_ref: python3 is not 3.11 or lacks ssl/venv"
echo "$base_ref"
