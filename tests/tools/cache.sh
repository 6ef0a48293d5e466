# Sourced by the scripts that build a test tool from the Go module proxy into
# ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast: the cache check, one build at a time per cache
# entry, and the Go settings of a static, reproducible build. The sourcing script defines
# `complete` (true when its cached result is there) before calling `cached_or_locked`.
# shellcheck shell=bash

tool_script=$(basename "$0")

# Print RESULT and exit when the cache entry is complete. Otherwise hold ROOT/.lock on
# fd 9, waiting while another build of the same entry runs, and check once more (that
# build may have completed it); returns with the lock held for the build.
cached_or_locked() {
    local root=$1 result=$2
    if complete; then
        echo "$result"
        exit 0
    fi
    mkdir -p "$root"
    exec 9>"${root}/.lock"
    if ! flock -n 9; then
        echo "${tool_script}: another build holds ${root}/.lock, waiting" >&2
        flock 9
    fi
    if complete; then
        echo "$result"
        exit 0
    fi
}

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$tool_script" "$*" >&2; }
