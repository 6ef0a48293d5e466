#!/usr/bin/env bash
# Build a local Debian 12 base image with Python 3.11 from the Debian archive, for
# machines that can reach apt but no container registry. The result stands in for
# python:3.11-slim: `make image BASE_IMAGE=roomcast-base:bookworm`.
#   images/base/build.sh [image-name]   (root; needs debootstrap and a running dockerd)
set -euo pipefail

IMAGE="${1:-roomcast-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [[ -z "${REBUILD:-}" ]]; then
    echo "$IMAGE"
    exit 0
fi
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-base.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
# minbase plus the interpreter; python3-venv brings ensurepip so `python3 -m venv` works
# the same as on python:3.11-slim. ca-certificates for rediss:// and JWKS over https.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >&2
# Drop what an image never needs: apt lists, docs, caches (as the slim images do).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$IMAGE" >&2
echo "$IMAGE"
