#!/usr/bin/env bash
# Start the local test bed (or keep the one already running); builds the tool set first
# when the cache is cold. The last line printed is `export KUBECONFIG=<path>`.
# Options are passed on to `python3 -m e2e.bed up` (--state-dir, --nodes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec "${BED_PYTHON:-python3}" -m e2e.bed up "$@"
