#!/usr/bin/env bash
# Stop exactly the processes the bed started (recorded in its bed.json) and remove its
# run directory. Safe to run when nothing is running. --keep-logs keeps the log files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec "${BED_PYTHON:-python3}" -m e2e.bed down "$@"
