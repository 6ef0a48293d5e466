#!/usr/bin/env bash
# Install the non-Python programs the tests start: redis-server (and redis-sentinel),
# headless Chromium for the browser tests, and the comparison benchmark's peers (Centrifugo
# built from the Go module proxy, the Node peers from npm; both cached, so a warm run
# returns at once).
# Uses apt-get when run as root on Debian/Ubuntu; otherwise says what is missing.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
# Headless Chromium for tests/browser (driven by Playwright with executable_path), and a font.
command -v chromium >/dev/null || missing+=(chromium)
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        # The tests start their own servers on free ports; the packaged service is not needed.
        if command -v systemctl >/dev/null; then systemctl disable --now redis-server 2>/dev/null || true; fi
        pkill -f 'redis-server 127.0.0.1:6379' 2>/dev/null || true
    else
        echo "tests/deps.sh: please install: ${missing[*]}" >&2
        exit 1
    fi
fi
"$(dirname "${BASH_SOURCE[0]}")/../bench/peers/install.sh" >/dev/null
