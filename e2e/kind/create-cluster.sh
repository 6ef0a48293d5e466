#!/usr/bin/env bash
# Create the kind cluster (reusing it if it exists) and write its kubeconfig.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! docker info >/dev/null 2>&1; then
    echo "e2e/kind: a running Docker engine is required (docker info failed)" >&2
    exit 1
fi
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME"; then
    log "reusing cluster ${KIND_CLUSTER_NAME}"
    kind export kubeconfig --name "$KIND_CLUSTER_NAME" --kubeconfig "$ROOMCAST_KIND_KUBECONFIG"
else
    log "creating cluster ${KIND_CLUSTER_NAME}"
    kind create cluster --name "$KIND_CLUSTER_NAME" --config "${ROOT}/e2e/kind/cluster.yaml" \
        --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" --wait 180s
fi
kubectl --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" get nodes -o wide
echo "export KUBECONFIG=${ROOMCAST_KIND_KUBECONFIG}"
