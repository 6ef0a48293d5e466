"""The release state machine: revisions, success, automatic and manual rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from roomcast_operator import render
from roomcast_operator.conditions import find
from roomcast_operator.health import PodState
from roomcast_operator.releases import Plan, Revision, decide
from roomcast_operator.spec import ClusterSpec

from .helpers import make_spec, observed_pass

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
GOOD_IMAGE = "ghcr.io/roomcast/roomcast:1.0.0"
BAD_IMAGE = "ghcr.io/roomcast/roomcast:1.1.0"


class Cluster:
    """Feeds decide() the way the reconciler does, remembering status and revisions."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.status: dict[str, Any] = {}
        self.revisions: list[Revision] = []
        self.now = T0
        self.generation = 1

    def step(
        self,
        *,
        running: int | None = None,
        complete: bool = True,
        pods: list[PodState] | None = None,
        rollback_to: int | None = None,
        invalid: str | None = None,
        seconds: float = 1,
    ) -> Plan:
        self.now += timedelta(seconds=seconds)
        observed = observed_pass(
            self.revisions,
            self.status,
            running=running,
            complete=complete,
            pods=pods,
            rollback_to=rollback_to,
            invalid=invalid,
        )
        plan = decide(
            self.spec,
            self.generation,
            self.status,
            render.release_of(self.spec),
            observed,
            self.now,
        )
        if plan.new_revision is not None:
            self.revisions.append(plan.new_revision)
        self.status = plan.status
        return plan

    def change(self, **fields: Any) -> None:
        self.spec = make_spec(**{**self.spec.raw, **fields})
        self.generation += 1

    def condition(self, kind: str) -> tuple[str, str]:
        found = find(self.status["conditions"], kind)
        assert found is not None
        return found["status"], found["reason"]

    def settle(self) -> None:
        """Let the current release pass its observation period."""
        self.step()
        self.step(seconds=self.spec.rollout.health.observation_seconds)


def crash_looping(revision: int) -> list[PodState]:
    return [PodState("chat-new", revision, ready=False, restarts=3, age_seconds=5)]


def test_first_release_becomes_revision_one_and_succeeds() -> None:
    cluster = Cluster(make_spec())
    plan = cluster.step(running=0)
    assert plan.new_revision is not None and plan.new_revision.number == 1
    assert plan.run == plan.new_revision
    assert [e.reason for e in plan.events] == ["RolloutStarted"]
    assert cluster.status["releases"][0]["outcome"] == "Progressing"
    assert cluster.condition("Progressing") == ("True", "RollingUpdate")

    cluster.step()
    assert cluster.condition("Progressing") == ("True", "ObservingRelease")
    plan = cluster.step(seconds=30)
    assert [e.reason for e in plan.events] == ["ReleaseSucceeded"]
    assert cluster.status["lastGoodRevision"] == 1
    assert cluster.status["releases"][0]["outcome"] == "Succeeded"
    assert cluster.condition("Ready") == ("True", "PodsAvailable")
    assert cluster.condition("Progressing") == ("False", "RolloutFinished")
    assert cluster.condition("Degraded") == ("False", "AsExpected")
    assert cluster.condition("RolledBack") == ("False", "RunningSpec")


def test_failed_release_rolls_back_to_the_last_good_revision() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    cluster.settle()
    cluster.change(image=BAD_IMAGE)
    plan = cluster.step(running=1)
    assert plan.new_revision is not None and plan.new_revision.number == 2

    plan = cluster.step(running=2, complete=False, pods=crash_looping(2))
    assert [e.reason for e in plan.events] == ["ReleaseFailed", "AutoRollback"]
    assert plan.run is not None and plan.run.number == 1
    assert plan.run.release.image == GOOD_IMAGE
    failed, rollback = cluster.status["releases"][-2:]
    assert (failed["revision"], failed["outcome"], failed["reason"]) == (
        2,
        "Failed",
        "ContainerRestarts",
    )
    assert (rollback["revision"], rollback["cause"]) == (1, "AutoRollback")
    assert cluster.condition("RolledBack") == ("True", "AutoRollback")
    assert cluster.condition("Degraded") == ("True", "ReleaseFailed")

    # The failed spec is not retried; the rollback release settles as good.
    cluster.settle()
    assert cluster.status["currentRevision"] == 1
    assert cluster.status["specRevision"] == 2
    assert cluster.condition("Degraded") == ("True", "ReleaseFailed")

    # A new spec clears it.
    cluster.change(image="ghcr.io/roomcast/roomcast:1.1.1")
    plan = cluster.step(running=1)
    assert plan.new_revision is not None and plan.new_revision.number == 3
    cluster.settle()
    assert cluster.condition("Degraded") == ("False", "AsExpected")
    assert cluster.condition("RolledBack") == ("False", "RunningSpec")


def test_without_auto_rollback_the_failure_stays() -> None:
    cluster = Cluster(make_spec(rollout={"autoRollback": False}))
    cluster.step(running=0)
    cluster.settle()
    cluster.change(image=BAD_IMAGE)
    cluster.step(running=1)
    plan = cluster.step(running=2, complete=False, pods=crash_looping(2))
    assert [e.reason for e in plan.events] == ["ReleaseFailed"]
    assert cluster.status["currentRevision"] == 2
    assert cluster.condition("Degraded") == ("True", "ReleaseFailed")


def test_manual_rollback_runs_the_old_release_and_clears_the_request() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    cluster.settle()
    cluster.change(image="ghcr.io/roomcast/roomcast:2.0.0")
    cluster.step(running=1)
    cluster.settle()
    plan = cluster.step(rollback_to=1)
    assert plan.clear_rollback_request
    assert plan.run is not None and plan.run.number == 1
    assert [e.reason for e in plan.events] == ["RollingBack"]
    assert cluster.status["releases"][-1]["cause"] == "Rollback"
    cluster.settle()
    assert cluster.condition("RolledBack") == ("True", "ManualRollback")
    # The spec did not change, so its release is not rolled out again.
    plan = cluster.step()
    assert plan.run is not None and plan.run.number == 1


def test_rollback_to_an_unknown_revision_is_reported() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    plan = cluster.step(rollback_to=7)
    assert plan.clear_rollback_request
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RollbackFailed")]
    assert cluster.status["currentRevision"] == 1


def test_identical_content_reuses_its_revision_number() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    cluster.settle()
    cluster.change(image="ghcr.io/roomcast/roomcast:2.0.0")
    cluster.step(running=1)
    cluster.settle()
    cluster.change(image=GOOD_IMAGE)
    plan = cluster.step(running=2)
    assert plan.new_revision is None
    assert cluster.status["currentRevision"] == 1
    assert len(cluster.revisions) == 2


def test_invalid_spec_is_a_condition_not_a_rollout() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    cluster.settle()
    cluster.change(redis={"urls": ["redis://:0/x"]})
    plan = cluster.step(invalid="redis URL has no host")
    assert plan.new_revision is None
    assert cluster.status["currentRevision"] == 1
    assert cluster.condition("Degraded") == ("True", "InvalidSpec")
    assert cluster.condition("Ready") == ("True", "PodsAvailable")


def test_status_is_unchanged_when_nothing_happens() -> None:
    cluster = Cluster(make_spec())
    cluster.step(running=0)
    cluster.settle()
    before = cluster.status
    assert cluster.step(seconds=60).status == before


def test_history_is_bounded() -> None:
    cluster = Cluster(make_spec(revisionHistoryLimit=2))
    cluster.step(running=0)
    for minor in range(1, 5):
        cluster.change(image=f"ghcr.io/roomcast/roomcast:1.{minor}.0")
        cluster.step()
    assert [r["revision"] for r in cluster.status["releases"]] == [4, 5]
