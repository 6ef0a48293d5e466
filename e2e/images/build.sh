#!/usr/bin/env bash
# Build the images the real-node suites run, with the local Docker daemon and no registry:
#   roomcast:e2e          the Roomcast image, as `make image` builds it
#   roomcast:e2e-next     the same image under a new tag (a release that changes the image)
#   roomcast:e2e-crash    a bad build whose process exits at start (pods never Ready)
#   roomcast:e2e-refuse   a bad build that is Ready but refuses every connect
#   roomcast-redis:bookworm  Debian's redis-server (images/redis/build.sh)
# The base image comes from images/base/build.sh (debootstrap). Prints the image names.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
base="${ROOMCAST_BASE_IMAGE:-roomcast-base:bookworm}"
image="${ROOMCAST_E2E_IMAGE:-roomcast:e2e}"

"${repo}/images/base/build.sh" "$base" >/dev/null
"${repo}/scripts/wheelhouse.sh" "${repo}/.venv/bin/python" >&2
docker build --quiet --network=none -f "${repo}/server/Dockerfile" \
    --build-arg "BASE_IMAGE=${base}" -t "$image" "$repo" >/dev/null
docker tag "$image" "${image}-next"
for variant in crash refuse-connects; do
    tag="${image}-${variant%%-*}"
    docker build --quiet --network=none --build-arg "BASE_IMAGE=${image}" \
        -t "$tag" "${here}/${variant}" >/dev/null
done
"${repo}/images/redis/build.sh" roomcast-redis:bookworm "$base" >/dev/null
printf '%s\n' "$image" "${image}-next" "${image}-crash" "${image}-refuse" roomcast-redis:bookworm
