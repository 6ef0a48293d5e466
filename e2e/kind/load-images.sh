#!/usr/bin/env bash
# Build the Roomcast image(s) from the repository and load them into the kind nodes.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
built=0
while read -r dockerfile name; do
    if [[ ! -f "${ROOT}/${dockerfile}" ]]; then
        log "${dockerfile} not found: skipping image ${name}"
        continue
    fi
    log "building ${name}:${ROOMCAST_IMAGE_TAG} from ${dockerfile}"
    docker build -t "${name}:${ROOMCAST_IMAGE_TAG}" -f "${ROOT}/${dockerfile}" "$ROOT"
    kind load docker-image --name "$KIND_CLUSTER_NAME" "${name}:${ROOMCAST_IMAGE_TAG}"
    built=$((built + 1))
done <<<"$ROOMCAST_IMAGES"
log "${built} image(s) loaded into ${KIND_CLUSTER_NAME}"
