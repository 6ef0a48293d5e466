# shellcheck shell=bash disable=SC2034
# Shared settings for the kind scripts; sourced, not run.
# Tools come from ROOMCAST_TOOLS_BIN, else the pinned tool set (kind, helm, kubectl are
# built by e2e/tools/build.sh when missing), else whatever is on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIND_CLUSTER_NAME="${KIND_CLUSTER_NAME:-roomcast-e2e}"
ROOMCAST_KIND_KUBECONFIG="${ROOMCAST_KIND_KUBECONFIG:-${TMPDIR:-/tmp}/roomcast-kind-${KIND_CLUSTER_NAME}.kubeconfig}"
ROOMCAST_IMAGE_TAG="${ROOMCAST_IMAGE_TAG:-e2e}"
ROOMCAST_RELEASE_NAMESPACE="${ROOMCAST_RELEASE_NAMESPACE:-roomcast}"
CHART_DIR="${ROOT}/helm/roomcast"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"

if [[ -z "${ROOMCAST_TOOLS_BIN:-}" ]]; then
    ROOMCAST_TOOLS_BIN="$(ROOMCAST_TOOLS_ONLY="kind helm kubectl" "${ROOT}/e2e/tools/build.sh" | tail -n 1)"
fi
export PATH="${ROOMCAST_TOOLS_BIN}:${PATH}" ROOMCAST_TOOLS_BIN KIND_CLUSTER_NAME

# Images built from the repository: "<Dockerfile> <image name>", one per line.
ROOMCAST_IMAGES="server/Dockerfile roomcast
operator/Dockerfile roomcast-operator"

log() { printf '== e2e/kind: %s\n' "$*" >&2; }
