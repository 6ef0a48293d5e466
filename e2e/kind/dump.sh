#!/usr/bin/env bash
# Print what is needed to debug a failed run: objects, events, and pod logs.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
k() { kubectl --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" "$@" || true; }
k get nodes -o wide
k get all,events -A -o wide
k describe pods -n "$ROOMCAST_RELEASE_NAMESPACE"
k logs -n "$ROOMCAST_RELEASE_NAMESPACE" --all-containers --prefix --tail=200 \
    -l app.kubernetes.io/instance=roomcast
