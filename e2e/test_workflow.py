"""The kind workflow is checked here, since it can only run on a host with Docker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from e2e.bed import BUILD_SCRIPT

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "kind.yml"


def actionlint() -> str:
    env = {**os.environ, "ROOMCAST_TOOLS_ONLY": "actionlint"}
    built = subprocess.run(
        [str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, env=env
    )
    return str(Path(built.stdout.strip().splitlines()[-1]) / "actionlint")


def test_kind_workflow_passes_actionlint() -> None:
    assert WORKFLOW.is_file()
    result = subprocess.run(
        [actionlint(), "-color=false", str(WORKFLOW)],
        capture_output=True,
        text=True,
        cwd=WORKFLOW.parent.parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kind_workflow_runs_the_scripts_in_the_repository() -> None:
    text = WORKFLOW.read_text()
    root = WORKFLOW.parent.parent.parent
    for script in ("create-cluster", "load-images", "install-chart", "test", "delete-cluster"):
        path = f"e2e/kind/{script}.sh"
        assert path in text, f"{path} not used by the workflow"
        assert os.access(root / path, os.X_OK), f"{path} is not executable"
