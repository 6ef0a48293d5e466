#!/usr/bin/env bash
# Delete the kind cluster and its kubeconfig. Safe to run when it does not exist.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
kind delete cluster --name "$KIND_CLUSTER_NAME" --kubeconfig "$ROOMCAST_KIND_KUBECONFIG"
rm -f "$ROOMCAST_KIND_KUBECONFIG"
