#!/usr/bin/env bash
# Make sure the pinned test-bed tool set exists before the test run; builds it only when
# the cache is cold (a warm cache returns at once). Idempotent. Prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v openssl >/dev/null || { echo "e2e/ci.sh: openssl is required by the bed" >&2; exit 1; }
# The real node's host programs, from Debian, when we may install them (root + apt).
if [[ "${ROOMCAST_REAL_NODE:-}" != 0 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    need=()
    for program in containerd:containerd runc:runc iptables:iptables ip:iproute2 \
        /usr/lib/cni/bridge:containernetworking-plugins; do
        [[ -x "${program%%:*}" ]] || command -v "${program%%:*}" >/dev/null || need+=("${program#*:}")
    done
    if ((${#need[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    fi
fi
bin="$("${here}/tools/build.sh" | tail -n 1)"
for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy \
    pause kwok; do
    [[ -x "${bin}/${tool}" ]] || { echo "e2e/ci.sh: ${tool} missing from ${bin}" >&2; exit 1; }
done
echo "$bin"
