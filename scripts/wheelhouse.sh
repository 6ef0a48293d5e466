#!/usr/bin/env bash
# Build the wheels the image installs (Roomcast with the operator extra and every
# dependency) into images/wheelhouse, so `docker build` needs no network. Wheels are
# built by the host's Python, which must match the image's (3.11, glibc x86_64/arm64).
#   scripts/wheelhouse.sh [python]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${1:-${ROOT}/.venv/bin/python}"
OUT="${ROOT}/images/wheelhouse"
version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" ]]; then
    echo "wheelhouse: need Python 3.11 to match the image, got $version" >&2
    exit 1
fi
# A stale Roomcast wheel would win over the source: drop it first.
rm -f "$OUT"/roomcast-*.whl
"$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT" "${ROOT}[operator]" >&2
# Markers are evaluated for the host's interpreter, so add what an older 3.11 patch release
# needs too (redis wants async-timeout below 3.11.3; Debian 12 ships 3.11.2).
extra="$("$PYTHON" - "$OUT" <<'PY'
import sys, zipfile
from pathlib import Path

for wheel in Path(sys.argv[1]).glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "python_full_version" in line:
                if "extra" not in line:
                    print(line.split(":", 1)[1].split(";", 1)[0].strip())
PY
)"
if [[ -n "$extra" ]]; then
    # shellcheck disable=SC2086
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT" $extra >&2
fi
echo "$OUT"
