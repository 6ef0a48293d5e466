#!/usr/bin/env bash
# Build Prometheus and promtool from the Go module proxy for the tests that check the
# chart's alert rules (promtool test rules) and the dashboards' queries (a real Prometheus
# scraping running servers).
#
# Binaries land in ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/prometheus/<key>/bin, where
# <key> names the version and the recipe, so a warm machine rebuilds nothing. The web UI's
# assets are not built (the tests use the HTTP API only), and service discovery is limited
# to static, file and HTTP targets (build tag remove_all_sd), which keeps the build small.
# The last line printed is the bin directory.
set -euo pipefail

# github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_MODULE_VERSION=0.316.0
PROMETHEUS_VERSION=3.16.0
# Bump when the way binaries are built changes, so old caches are not reused.
RECIPE=1

key="prometheus${PROMETHEUS_VERSION}-r${RECIPE}"
root="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/prometheus/${key}"
bin="${root}/bin"

complete() { [[ -x "${bin}/prometheus" && -x "${bin}/promtool" ]]; }
# shellcheck source=tests/tools/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
cached_or_locked "$root" "$bin"
mkdir -p "$bin" "${root}/src"
start=$(date +%s)

src="${root}/src/module"
if [[ ! -f "${src}/.ready" ]]; then
    rm -rf "$src"
    mkdir -p "$src"
    printf 'module roomcast.local/tests/prometheus-tools\n\ngo 1.26.0\n' >"${src}/go.mod"
    log "resolving github.com/prometheus/prometheus v${PROMETHEUS_MODULE_VERSION}"
    (cd "$src" && "$go" get -tool \
        "github.com/prometheus/prometheus/cmd/prometheus@v${PROMETHEUS_MODULE_VERSION}" \
        "github.com/prometheus/prometheus/cmd/promtool@v${PROMETHEUS_MODULE_VERSION}")
    touch "${src}/.ready"
fi

date=$(cd "$src" && "$go" list -m -json "github.com/prometheus/prometheus" |
    sed -n 's/.*"Time": "\([^"]*\)".*/\1/p' | sed 's/\.[0-9]*Z$/Z/')
flags="-s -w"
for pair in "Version=${PROMETHEUS_VERSION}" "Revision=v${PROMETHEUS_MODULE_VERSION}" \
    "Branch=release" "BuildUser=roomcast" "BuildDate=${date}"; do
    flags+=" -X github.com/prometheus/common/version.${pair}"
done
stage="${root}/stage"
rm -rf "$stage"
mkdir -p "$stage"
for tool in prometheus promtool; do
    t0=$(date +%s)
    log "building ${tool}"
    (cd "$src" && "$go" build -trimpath -tags remove_all_sd -ldflags "$flags" \
        -o "${stage}/${tool}" "github.com/prometheus/prometheus/cmd/${tool}")
    install -m 0755 "${stage}/${tool}" "${bin}/${tool}.new"
    mv -f "${bin}/${tool}.new" "${bin}/${tool}"
    log "built ${tool} in $(($(date +%s) - t0))s"
done
rm -rf "$stage"
log "prometheus and promtool complete in $(($(date +%s) - start))s"
echo "$bin"
