#!/usr/bin/env bash
# Make sure the pinned test-bed tool set exists before the test run; builds it only when
# the cache is cold (a warm cache returns at once). Idempotent. Prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v openssl >/dev/null || { echo "e2e/ci.sh: openssl is required by the bed" >&2; exit 1; }
bin="$("${here}/tools/build.sh" | tail -n 1)"
for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [[ -x "${bin}/${tool}" ]] || { echo "e2e/ci.sh: ${tool} missing from ${bin}" >&2; exit 1; }
done
echo "$bin"
