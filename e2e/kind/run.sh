#!/usr/bin/env bash
# The whole kind path in one go: create the cluster, build and load the images, install
# the chart, run the e2e suite, and delete the cluster (KEEP_CLUSTER=1 keeps it).
# Extra arguments go to pytest.
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/env.sh"
finish() {
    status=$?
    if [[ $status -ne 0 ]]; then
        "${here}/dump.sh"
    fi
    if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
        "${here}/delete-cluster.sh"
    fi
    exit "$status"
}
trap finish EXIT
"${here}/create-cluster.sh"
"${here}/load-images.sh"
"${here}/install-chart.sh"
"${here}/test.sh" "$@"
