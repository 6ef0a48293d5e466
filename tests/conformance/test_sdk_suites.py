"""The SDKs' own suites against Roomcast, in ``make test``: the Go suite in full but for
the tests listed as not offered (their Protobuf cases), so a regression in any protocol
feature those tests cover fails here. ``make conformance`` runs both suites completely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_centrifuge_go_suite_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "conformance" / "run.py"), "--sdk", "go", "--skip-expected"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (suite,) = json.loads((ROOT / ".conformance" / "results.json").read_text())["suites"]
    assert suite["failed"] == [] and len(suite["passed"]) >= 60, suite
