"""The `helm test` release check's verdict on a RoomcastCluster (files/check_release.py)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.helm.chart import CHART


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module; it reads its target from the environment at import."""
    monkeypatch.setenv("ROOMCAST_CLUSTER", "chat")
    monkeypatch.setenv("ROOMCAST_NAMESPACE", "prod")
    spec = importlib.util.spec_from_file_location(
        "check_release", CHART / "files" / "check_release.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cluster(generation: int = 2, observed: int = 2, **conditions: str) -> dict:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "currentRevision": 3,
            "conditions": [
                {"type": kind, "status": status, "reason": "R", "message": "m"}
                for kind, status in conditions.items()
            ],
        },
    }


def test_passes_when_the_spec_runs_and_is_ready(check: ModuleType) -> None:
    passed, why = check.verdict(
        cluster(Ready="True", Progressing="False", RolledBack="False", Degraded="False")
    )
    assert passed is True and "revision 3" in why


def test_fails_at_once_on_rolled_back_or_degraded(check: ModuleType) -> None:
    passed, why = check.verdict(cluster(Ready="True", Progressing="True", RolledBack="True"))
    assert passed is False and why.startswith("RolledBack")
    passed, why = check.verdict(cluster(observed=1, Degraded="True"))
    assert passed is False and why.startswith("Degraded")


@pytest.mark.parametrize(
    "state",
    [
        cluster(observed=1, Ready="True", Progressing="False"),
        cluster(Ready="True", Progressing="True"),
        cluster(Ready="False", Progressing="False"),
    ],
    ids=["spec-not-seen", "rolling-out", "not-ready"],
)
def test_waits_while_undecided(check: ModuleType, state: dict) -> None:
    assert check.verdict(state)[0] is None
