"""The progress deadline: from the rollout's last progress, never applied in observation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from roomcast_operator import render
from roomcast_operator.health import DeploymentState, Phase, PodState, judge_rollout
from roomcast_operator.releases import Observed, Plan, Revision, decide
from roomcast_operator.spec import ClusterSpec

from .helpers import complete_deployment, make_spec

SPEC = make_spec()  # progressDeadlineSeconds 180, observationSeconds 30
LIMITS = SPEC.rollout.health
DEADLINE = SPEC.rollout.progress_deadline_seconds
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

COMPLETE = complete_deployment(3)
ROLLING = dataclasses.replace(COMPLETE, replicas=4, updated_replicas=1)
# An autoscaler asked for a fourth pod, which is not available yet.
SCALING = dataclasses.replace(COMPLETE, replicas=4, desired_replicas=4, updated_replicas=4)


def rolling_out(last_progress: datetime | None, seconds: float, spec: ClusterSpec = SPEC) -> Plan:
    """Judge revision 1, started at T0, ``seconds`` later, on a Deployment still rolling."""
    release = render.release_of(spec)
    status = {
        "specHash": release.hash,
        "currentRevision": 1,
        "releases": [
            {
                "revision": 1,
                "started": "2026-01-01T12:00:00Z",
                "outcome": "Progressing",
                "cause": "Spec",
            }
        ],
    }
    observed = Observed(
        revisions=[Revision(1, release)],
        deployment=dataclasses.replace(ROLLING, last_progress=last_progress),
        deployment_revision=1,
        pods=[],
        rollback_request=None,
    )
    return decide(spec, 1, status, release, observed, T0 + timedelta(seconds=seconds))


def outcome(plan: Plan) -> tuple[str, str | None]:
    record = plan.status["releases"][-1]
    return record["outcome"], record.get("reason")


def test_deployment_state_reads_its_last_progress() -> None:
    raw = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "ReplicaSetUpdated",
                    "lastTransitionTime": "2026-01-01T12:00:00Z",
                    "lastUpdateTime": "2026-01-01T12:05:00Z",
                }
            ],
        },
    }
    state = DeploymentState.from_object(raw)
    assert state.last_progress == T0 + timedelta(minutes=5)
    assert not state.deadline_exceeded


# Must not roll back.


def test_long_rollout_that_keeps_progressing_is_not_stalled() -> None:
    # Ten minutes in, the last pod became available five seconds ago.
    plan = rolling_out(T0 + timedelta(seconds=595), 600)
    assert outcome(plan) == ("Progressing", None)
    assert not plan.events


def test_scale_up_during_observation_is_not_a_missed_deadline() -> None:
    stalled = dataclasses.replace(SCALING, deadline_exceeded=True)
    pending = PodState("chat-4", 2, ready=False, restarts=0, age_seconds=600, pending_reason="x")
    for available in (5.0, LIMITS.observation_seconds + 600.0):
        verdict = judge_rollout(stalled, [pending], 2, LIMITS, DEADLINE, 10_000, available)
        assert verdict.phase is Phase.OBSERVING, verdict
        assert "3/4 pods available" in verdict.message
    verdict = judge_rollout(COMPLETE, [], 2, LIMITS, DEADLINE, 10_000, 600)
    assert verdict.phase is Phase.SUCCEEDED


# Must roll back.


def test_rollout_without_progress_fails_at_the_backstop() -> None:
    last = T0 + timedelta(seconds=100)
    assert outcome(rolling_out(last, 100 + DEADLINE + 30)) == ("Progressing", None)
    assert outcome(rolling_out(last, 100 + DEADLINE + 31)) == (
        "Failed",
        "ProgressDeadlineExceeded",
    )


def test_the_backstop_uses_the_deadline_as_rendered() -> None:
    """A deadline below a drain is raised where it is rendered (a new pod waits a drain
    between Ready and available); the operator's backstop waits as long."""
    spec = make_spec(
        drain={"preStopSeconds": 10, "drainWindowSeconds": 300},
        rollout={"progressDeadlineSeconds": 60},
    )
    rendered = render.progress_deadline_seconds(spec)
    assert rendered > 310
    assert outcome(rolling_out(T0, rendered + 30, spec)) == ("Progressing", None)
    assert outcome(rolling_out(T0, rendered + 31, spec)) == (
        "Failed",
        "ProgressDeadlineExceeded",
    )


def test_progress_reported_before_the_rollout_does_not_count() -> None:
    # The Deployment last progressed an hour before this rollout: the clock starts at T0.
    earlier = T0 - timedelta(hours=1)
    assert outcome(rolling_out(earlier, 10)) == ("Progressing", None)
    assert outcome(rolling_out(earlier, DEADLINE + 31)) == ("Failed", "ProgressDeadlineExceeded")
    assert outcome(rolling_out(None, DEADLINE + 31)) == ("Failed", "ProgressDeadlineExceeded")


def test_crash_looping_pod_fails_the_release_during_observation() -> None:
    looping = PodState("chat-4", 2, ready=False, restarts=5, age_seconds=40)
    verdict = judge_rollout(SCALING, [looping], 2, LIMITS, DEADLINE, 10, 5)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "ContainerRestarts")
