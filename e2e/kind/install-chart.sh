#!/usr/bin/env bash
# Install the Roomcast chart with the images loaded by load-images.sh. Skips (exit 0)
# with a message when the chart is not in the repository yet.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [[ ! -f "${CHART_DIR}/Chart.yaml" ]]; then
    log "chart helm/roomcast not found: skipping helm install and the WebSocket traffic check"
    exit 0
fi
cd "$ROOT"
helm install roomcast helm/roomcast \
    --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" \
    --namespace "$ROOMCAST_RELEASE_NAMESPACE" --create-namespace \
    --set image.repository=roomcast \
    --set image.tag="$ROOMCAST_IMAGE_TAG" \
    --set image.pullPolicy=Never \
    --wait --timeout 5m
helm test roomcast --kubeconfig "$ROOMCAST_KIND_KUBECONFIG" \
    --namespace "$ROOMCAST_RELEASE_NAMESPACE" --timeout 5m || {
    log "helm test failed"
    exit 1
}
