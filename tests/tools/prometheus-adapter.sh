#!/usr/bin/env bash
# Build prometheus-adapter (the custom metrics API server that turns Prometheus series into
# custom.metrics.k8s.io) from the Go module proxy, for the e2e suite that autoscales on
# connections: the bed runs it with the chart's own adapter rule.
#
# The binary lands in ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/prometheus-adapter/<key>/bin,
# where <key> names the version and the recipe, so a warm machine rebuilds nothing. It is
# built with the dependency versions the module's go.mod pins.
# The last line printed is the bin directory.
set -euo pipefail

ADAPTER_VERSION=0.12.0
# Bump when the way the binary is built changes, so old caches are not reused.
RECIPE=1

key="prometheus-adapter${ADAPTER_VERSION}-r${RECIPE}"
root="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/prometheus-adapter/${key}"
bin="${root}/bin"

complete() { [[ -x "${bin}/prometheus-adapter" ]]; }
# shellcheck source=tests/tools/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
cached_or_locked "$root" "$bin"
mkdir -p "$bin"
start=$(date +%s)

# A module of our own requiring the adapter's: the build uses exactly the dependency
# versions the adapter's go.mod pins (minimal version selection). The proxy serves this
# exact version but lists none, which rules out `go install module@version`.
src="${root}/src/module"
if [[ ! -f "${src}/.ready" ]]; then
    rm -rf "$src"
    mkdir -p "$src"
    printf 'module roomcast.local/tests/prometheus-adapter\n\ngo 1.26.0\n' >"${src}/go.mod"
    log "resolving sigs.k8s.io/prometheus-adapter v${ADAPTER_VERSION}"
    (cd "$src" && "$go" get -tool "sigs.k8s.io/prometheus-adapter/cmd/adapter@v${ADAPTER_VERSION}")
    touch "${src}/.ready"
fi
stage="${root}/stage"
rm -rf "$stage"
mkdir -p "$stage"
log "building sigs.k8s.io/prometheus-adapter v${ADAPTER_VERSION}"
(cd "$src" && "$go" build -trimpath -ldflags "-s -w" -o "${stage}/adapter" \
    "sigs.k8s.io/prometheus-adapter/cmd/adapter")
install -m 0755 "${stage}/adapter" "${bin}/prometheus-adapter.new"
mv -f "${bin}/prometheus-adapter.new" "${bin}/prometheus-adapter"
rm -rf "$stage"
log "prometheus-adapter complete in $(($(date +%s) - start))s"
echo "$bin"
