"""The SDKs' own suites against Roomcast, in ``make test``: centrifuge-go's (without the
test listed as not offered) and centrifuge-python's, in both encodings, so a regression in
any protocol feature they cover fails here. ``make conformance`` runs the same in full."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sdk_suites_pass() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "conformance" / "run.py"), "--skip-expected"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    go, python = json.loads((ROOT / ".conformance" / "results.json").read_text())["suites"]
    assert go["failed"] == [] and len(go["passed"]) >= 70, go
    assert python["failed"] == [] and len(python["passed"]) >= 180, python
