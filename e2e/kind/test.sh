#!/usr/bin/env bash
# Run the e2e suite against the kind cluster. The WebSocket traffic check runs when the
# chart was installed (install-chart.sh); bed-only checks are skipped. Extra arguments
# go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export ROOMCAST_E2E_KUBECONFIG="$ROOMCAST_KIND_KUBECONFIG"
export ROOMCAST_E2E_IMAGE="roomcast:${ROOMCAST_IMAGE_TAG}"
if helm status roomcast --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" \
    --namespace "$ROOMCAST_RELEASE_NAMESPACE" >/dev/null 2>&1; then
    export ROOMCAST_E2E_RELEASE=roomcast ROOMCAST_E2E_RELEASE_NAMESPACE="$ROOMCAST_RELEASE_NAMESPACE"
else
    log "no roomcast release installed: the WebSocket traffic check will be skipped"
fi
cd "$ROOT"
exec "$PYTHON" -m pytest e2e "$@"
