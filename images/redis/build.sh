#!/usr/bin/env bash
# A Redis image for the test bed's real node, from Debian's redis-server package on the
# local base image (images/base/build.sh), for machines that can reach apt but no
# container registry. It stands in for the official redis image the chart names: the
# same redis-server and redis-cli, run as uid 999.
#   images/redis/build.sh [image-name] [base-image]   (needs apt-get and a running dockerd)
set -euo pipefail
IMAGE="${1:-roomcast-redis:bookworm}"
BASE_IMAGE="${2:-roomcast-base:bookworm}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [[ -z "${REBUILD:-}" ]]; then
    echo "$IMAGE"
    exit 0
fi
context="$(mktemp -d "${TMPDIR:-/tmp}/roomcast-redis.XXXXXX")"
trap 'rm -rf "$context"' EXIT
chmod a+rwx "$context" # apt downloads as its own _apt user
# The packages and the libraries the minimal base lacks, as .debs from the archive.
(cd "$context" && apt-get download redis-server redis-tools libjemalloc2 liblzf1 libatomic1 >&2)
cp "${here}/Dockerfile" "$context/"
docker build --quiet --network=none --build-arg "BASE_IMAGE=${BASE_IMAGE}" \
    -t "$IMAGE" "$context" >&2
echo "$IMAGE"
