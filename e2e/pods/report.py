"""Each suite's measured figures, written where runs can be compared."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from e2e.kube import Obj
from e2e.pods.images import REPO


def write_report(name: str, figures: Obj) -> Path:
    """The suite's measured figures as JSON, under ``$ROOMCAST_E2E_REPORTS`` (or
    ``.e2e-reports/`` in the repository), one file per suite, overwritten per run."""
    directory = Path(os.environ.get("ROOMCAST_E2E_REPORTS") or REPO / ".e2e-reports")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(
        json.dumps(
            {"suite": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures},
            indent=2,
        )
        + "\n"
    )
    print(f"{name}: {json.dumps(figures)}")
    return path
