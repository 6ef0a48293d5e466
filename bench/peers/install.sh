#!/usr/bin/env bash
# Build or install the peers the comparison benchmark runs, each pinned, each cached:
#   Centrifugo  built from the Go module proxy into ~/.cache/roomcast/peers/<version>/
#   Node peers  socket.io (+ Redis adapter), ws: npm ci from package-lock.json
# python-socketio comes with the dev extras (pyproject.toml). Run again: nothing is rebuilt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CENTRIFUGO_VERSION="${CENTRIFUGO_VERSION:-6.9.1}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/peers/centrifugo-${CENTRIFUGO_VERSION}"

if [[ ! -x "$cache/centrifugo" ]]; then
    go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
    [[ -x "$go" ]] || { echo "bench/peers/install.sh: Go is needed to build Centrifugo" >&2; exit 1; }
    echo "building Centrifugo v${CENTRIFUGO_VERSION} (a few minutes on 2 cores) into $cache" >&2
    mkdir -p "$cache.tmp"
    # a release-like build: static, stripped, the version stamped as the release does
    CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$cache.tmp" "$go" install -trimpath \
        -ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=${CENTRIFUGO_VERSION}" \
        "github.com/centrifugal/centrifugo/v6@v${CENTRIFUGO_VERSION}"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
fi

stamp="$here/node_modules/.installed"
if [[ ! -f "$stamp" || "$here/package-lock.json" -nt "$stamp" ]]; then
    command -v npm >/dev/null || { echo "bench/peers/install.sh: npm is needed for the Node peers" >&2; exit 1; }
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
    touch "$stamp"
fi
echo "$cache/centrifugo"
