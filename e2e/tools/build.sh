#!/usr/bin/env bash
# Build the pinned test-bed tool set from the Go module proxy.
#
# Binaries land in ${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/tools/<key>/bin, where <key>
# names every pinned version, so a warm machine rebuilds nothing. Each tool is built only
# when its binary is missing; builds run one at a time to keep memory low on small hosts.
# The last line printed is the bin directory.
#
# Environment:
#   ROOMCAST_TOOLS_ONLY   space-separated subset of tools to build (default: all)
#   ROOMCAST_TOOLS_LOG    optional file receiving per-tool build durations
set -euo pipefail

# Kubernetes: the newest v1.36 patch whose k8s.io/kubernetes module the proxy serves
# (staging modules are tagged v0.36.N for the same release).
K8S_VERSION=1.36.5
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
HELM_VERSION=3.22.0
KIND_VERSION=0.33.0
ACTIONLINT_VERSION=1.7.12
# Bump when the way binaries are built changes, so old caches are not reused.
RECIPE=2

ALL_TOOLS="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
pause kwok kwokctl helm kind actionlint"

K8S_STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
cloud-provider cluster-bootstrap code-generator component-base component-helpers
controller-manager cri-api cri-client cri-streaming csi-translation-lib
dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming"

key="k8s${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}-helm${HELM_VERSION}"
key+="-kind${KIND_VERSION}-actionlint${ACTIONLINT_VERSION}-r${RECIPE}"
root="${XDG_CACHE_HOME:-$HOME/.cache}/roomcast/tools/${key}"
bin="${root}/bin"
tools="${ROOMCAST_TOOLS_ONLY:-$ALL_TOOLS}"

missing() {
    local tool
    for tool in $tools; do
        [[ -x "${bin}/${tool}" ]] || echo "$tool"
    done
}

if [[ -z "$(missing)" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$bin" "${root}/src"
exec 9>"${root}/.lock"
if ! flock -n 9; then
    echo "build.sh: another build holds ${root}/.lock, waiting" >&2
    flock 9
fi

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false"
stage="${root}/stage"
rm -rf "$stage"
mkdir -p "$stage"

log() { printf '%s build.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

timed() {
    # timed TOOL CMD...: run CMD, then move stage/TOOL into bin and record the duration.
    local tool=$1 start end
    shift
    start=$(date +%s)
    log "building $tool"
    "$@"
    install -m 0755 "${stage}/${tool}" "${bin}/${tool}.new"
    mv -f "${bin}/${tool}.new" "${bin}/${tool}"
    end=$(date +%s)
    log "built $tool in $((end - start))s"
    if [[ -n "${ROOMCAST_TOOLS_LOG:-}" ]]; then
        printf '%s\t%s\n' "$tool" "$((end - start))" >>"$ROOMCAST_TOOLS_LOG"
    fi
}

module_time() {
    # The tag time reported by the proxy, as the reproducible build date.
    "$go" list -m -json "$1" | sed -n 's/.*"Time": "\([^"]*\)".*/\1/p' | sed 's/\.[0-9]*Z$/Z/'
}

k8s_module() {
    local dir="${root}/src/kubernetes" name
    [[ -f "${dir}/.ready" ]] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    {
        echo "module roomcast.local/e2e/kubernetes-tools"
        echo
        echo "go 1.26.0"
        echo
        echo "godebug default=go1.26"
        echo
        echo "require k8s.io/kubernetes v${K8S_VERSION}"
        echo
        echo "replace ("
        for name in $K8S_STAGING; do
            echo "	k8s.io/${name} => k8s.io/${name} v0.${K8S_VERSION#1.}"
        done
        echo ")"
    } >"${dir}/go.mod"
    log "resolving k8s.io/kubernetes v${K8S_VERSION}"
    (cd "$dir" && "$go" get -tool \
        "k8s.io/kubernetes/cmd/kube-apiserver@v${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kube-controller-manager@v${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kube-scheduler@v${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kubectl@v${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kubelet@v${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kube-proxy@v${K8S_VERSION}")
    touch "${dir}/.ready"
}

k8s_build() {
    local tool=$1 dir="${root}/src/kubernetes" date flags="-s -w" pkg
    date=$(cd "$dir" && module_time "k8s.io/kubernetes@v${K8S_VERSION}")
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X ${pkg}.gitVersion=v${K8S_VERSION}"
        flags+=" -X ${pkg}.gitMajor=${K8S_VERSION%%.*}"
        flags+=" -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
        flags+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000"
        flags+=" -X ${pkg}.gitTreeState=clean"
        flags+=" -X ${pkg}.buildDate=${date}"
    done
    (cd "$dir" && "$go" build -trimpath -tags selinux,notest -ldflags "all=${flags}" \
        -o "${stage}/${tool}" "k8s.io/kubernetes/cmd/${tool}")
}

etcd_build() {
    local dir="${root}/src/etcd"
    if [[ ! -f "${dir}/.ready" ]]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        printf 'module roomcast.local/e2e/etcd-tools\n\ngo 1.25.0\n' >"${dir}/go.mod"
        (cd "$dir" && "$go" get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}")
        touch "${dir}/.ready"
    fi
    (cd "$dir" && "$go" build -trimpath -ldflags "-s -w" -o "${stage}/etcd" \
        go.etcd.io/etcd/server/v3)
}

pause_build() {
    # The sandbox ("pause") program of the real node, compiled from the kubelet's own
    # source as upstream does (static, -Os), stamped with the release's pause tag.
    local src tag
    src="$(cd "${root}/src/kubernetes" && "$go" list -m -f '{{.Dir}}' k8s.io/kubernetes)"
    tag="$(sed -n 's/^TAG ?= //p' "${src}/build/pause/Makefile")"
    ${CC:-gcc} -Os -Wall -Werror -static "-DVERSION=v${tag}-roomcast" \
        -o "${stage}/pause" "${src}/build/pause/linux/pause.c"
}

go_install() {
    # go_install TOOL PKG@VERSION [LDFLAGS]
    local tool=$1 pkg=$2 flags="-s -w ${3:-}"
    (cd "$stage" && GOBIN="$stage" "$go" install -trimpath -ldflags "$flags" "$pkg")
    [[ -x "${stage}/${tool}" ]] || mv "${stage}/$(basename "${pkg%@*}")" "${stage}/${tool}"
}

build_one() {
    local tool=$1 helm_flags
    case "$tool" in
        etcd) timed etcd etcd_build ;;
        kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet | kube-proxy)
            k8s_module
            timed "$tool" k8s_build "$tool"
            ;;
        pause)
            k8s_module
            timed pause pause_build
            ;;
        kwok | kwokctl)
            timed "$tool" go_install "$tool" "sigs.k8s.io/kwok/cmd/${tool}@v${KWOK_VERSION}"
            ;;
        helm)
            helm_flags="-X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION}"
            helm_flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
            local pkg
            for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
                helm_flags+=" -X ${pkg}.k8sVersionMajor=${K8S_VERSION%%.*}"
                helm_flags+=" -X ${pkg}.k8sVersionMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
            done
            timed helm go_install helm "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}" "$helm_flags"
            ;;
        kind) timed kind go_install kind "sigs.k8s.io/kind@v${KIND_VERSION}" ;;
        actionlint)
            timed actionlint go_install actionlint \
                "github.com/rhysd/actionlint/cmd/actionlint@v${ACTIONLINT_VERSION}" \
                "-X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION}"
            ;;
        *)
            echo "build.sh: unknown tool $tool" >&2
            return 2
            ;;
    esac
}

total_start=$(date +%s)
for tool in $(missing); do
    build_one "$tool"
done
rm -rf "$stage"
log "tool set complete in $(($(date +%s) - total_start))s"
echo "$bin"
