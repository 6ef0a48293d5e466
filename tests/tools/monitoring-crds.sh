#!/usr/bin/env bash
# Generate the Prometheus Operator's PodMonitor and PrometheusRule CRDs from its Go API
# types with controller-gen (both from the Go module proxy), so that the e2e bed can check
# the chart's PodMonitors and PrometheusRule against their real schemas.
#
# The CRDs land in ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/monitoring-crds/<key>/crds,
# where <key> names the versions and the recipe; a warm machine regenerates nothing.
# The last line printed is that directory.
set -euo pipefail

# The API module of prometheus-operator v0.95.2, and controller-gen as its release uses.
MONITORING_API_VERSION=0.95.2
CONTROLLER_TOOLS_VERSION=0.23.0
KINDS="podmonitors prometheusrules"
# Bump when the way the CRDs are made changes, so old caches are not reused.
RECIPE=1

key="monitoring${MONITORING_API_VERSION}-controller-tools${CONTROLLER_TOOLS_VERSION}-r${RECIPE}"
root="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/monitoring-crds/${key}"
out="${root}/crds"

complete() {
    local kind
    for kind in $KINDS; do
        [[ -s "${out}/monitoring.coreos.com_${kind}.yaml" ]] || return 1
    done
}
# shellcheck source=tests/tools/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
cached_or_locked "$root" "$out"
mkdir -p "${root}/src"
start=$(date +%s)

src="${root}/src"
printf 'module roomcast.local/tests/monitoring-crds\n\ngo 1.26.0\n' >"${src}/go.mod"
log "resolving controller-gen v${CONTROLLER_TOOLS_VERSION} and the monitoring API v${MONITORING_API_VERSION}"
(cd "$src" && "$go" get -tool \
    "sigs.k8s.io/controller-tools/cmd/controller-gen@v${CONTROLLER_TOOLS_VERSION}" \
    "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@v${MONITORING_API_VERSION}")
(cd "$src" && "$go" build -trimpath -o "${src}/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen)
stage="${root}/stage"
rm -rf "$stage"
(cd "$src" && ./controller-gen crd:allowDangerousTypes=true,maxDescLen=0 \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
    "output:crd:dir=${stage}")
mkdir -p "$out"
for kind in $KINDS; do
    install -m 0644 "${stage}/monitoring.coreos.com_${kind}.yaml" "${out}/"
done
rm -rf "$stage"
log "generated ${KINDS} in $(($(date +%s) - start))s"
echo "$out"
