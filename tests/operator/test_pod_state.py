"""Pods read from Kubernetes: how long unready, how long Pending, and what the judge makes of it.

Real pod objects go in, so the clocks come from the fields Kubernetes sets: the Ready
condition's lastTransitionTime, the container's start, the pod's phase.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from roomcast_operator.health import (
    DeploymentState,
    Phase,
    PodState,
    Verdict,
    judge_rollout,
)

from .helpers import make_spec

LIMITS = make_spec().rollout.health  # readyTimeoutSeconds 60, maxContainerRestarts 2
DEADLINE = 180
CREATED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

ROLLING = DeploymentState(
    generation=2,
    observed_generation=2,
    replicas=4,
    desired_replicas=3,
    updated_replicas=1,
    ready_replicas=3,
    available_replicas=3,
    deadline_exceeded=False,
)


def stamp(seconds: float) -> str:
    return (CREATED + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def k8s_pod(
    *,
    phase: str = "Running",
    ready: bool = False,
    ready_since: float = 1,
    started: float | None = 2,
    restarts: int = 0,
    waiting: str | None = None,
    scheduled: bool = True,
) -> dict[str, Any]:
    """A pod object as the API server returns it; times in seconds after creation."""
    state: dict[str, Any] = {}
    if waiting is not None:
        state = {"waiting": {"reason": waiting}}
    elif started is not None:
        state = {"running": {"startedAt": stamp(started)}}
    conditions: list[dict[str, Any]] = [
        {
            "type": "PodScheduled",
            "status": "True" if scheduled else "False",
            "lastTransitionTime": stamp(0),
            **(
                {}
                if scheduled
                else {"reason": "Unschedulable", "message": "0/3 nodes are available"}
            ),
        }
    ]
    if scheduled:
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": stamp(ready_since),
            }
        )
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if scheduled:
        status["containerStatuses"] = [
            {"name": "roomcast", "ready": ready, "restartCount": restarts, "state": state}
        ]
    return {
        "metadata": {
            "name": "chat-new",
            "creationTimestamp": stamp(0),
            "annotations": {"roomcast.io/revision": "2"},
        },
        "status": status,
    }


def judged(pod: dict[str, Any], at: float, available: float | None = None) -> Verdict:
    state = PodState.from_object(pod, CREATED + timedelta(seconds=at))
    deployment = (
        ROLLING
        if available is None
        else dataclasses.replace(ROLLING, replicas=3, updated_replicas=3)
    )
    return judge_rollout(deployment, [state], 2, LIMITS, DEADLINE, 10, available)


def test_pod_state_reads_revision_readiness_restarts_and_age() -> None:
    state = PodState.from_object(k8s_pod(restarts=3), CREATED + timedelta(seconds=60))
    assert (state.name, state.revision, state.ready, state.restarts) == ("chat-new", 2, False, 3)
    assert state.age_seconds == 60
    assert state.pending_reason is None
    assert not state.terminating


# Must not roll back.


def test_one_missed_probe_on_an_old_pod_is_not_a_failure() -> None:
    # Ready since second 5, one readiness probe missed at second 595: unready for 5s, not 600s.
    pod = k8s_pod(ready=False, ready_since=595)
    state = PodState.from_object(pod, CREATED + timedelta(seconds=600))
    assert state.unready_seconds == 5
    assert judged(pod, at=600).phase is Phase.PROGRESSING


def test_image_pull_time_does_not_count_as_unready() -> None:
    # Pending 50s pulling the image, then running and warming up for 20s.
    pod = k8s_pod(ready_since=1, started=50)
    assert PodState.from_object(pod, CREATED + timedelta(seconds=70)).unready_seconds == 20
    assert judged(pod, at=70).phase is Phase.PROGRESSING


def test_pending_pod_waits_for_the_pending_limit_not_the_ready_timeout() -> None:
    for pod in (
        k8s_pod(phase="Pending", scheduled=False),
        k8s_pod(phase="Pending", waiting="ContainerCreating"),
        k8s_pod(phase="Pending", waiting="ImagePullBackOff"),
    ):
        verdict = judged(pod, at=LIMITS.ready_timeout_seconds + 1)
        assert verdict.phase is Phase.PROGRESSING, verdict
        assert judged(pod, at=DEADLINE - 1).phase is Phase.PROGRESSING


def test_pending_pod_during_observation_is_capacity_not_the_release() -> None:
    # The release was complete; an autoscaler's new pod waits for a node.
    pod = k8s_pod(phase="Pending", scheduled=False)
    verdict = judged(pod, at=DEADLINE + 60, available=5)
    assert verdict.phase is Phase.OBSERVING, verdict


# Must roll back.


def test_pod_pending_past_the_limit_fails_and_says_why() -> None:
    verdict = judged(k8s_pod(phase="Pending", scheduled=False), at=DEADLINE + 1)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "PodPending")
    assert "Unschedulable: 0/3 nodes are available" in verdict.message
    verdict = judged(k8s_pod(phase="Pending", waiting="ErrImagePull"), at=DEADLINE + 1)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "PodPending")
    assert "ErrImagePull" in verdict.message


def test_container_that_never_becomes_ready_fails_at_the_ready_timeout() -> None:
    pod = k8s_pod(ready_since=1, started=1)
    assert judged(pod, at=LIMITS.ready_timeout_seconds).phase is Phase.PROGRESSING
    verdict = judged(pod, at=LIMITS.ready_timeout_seconds + 2)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "PodNotReady")


def test_crash_loop_fails_at_the_ready_timeout_or_on_restarts() -> None:
    # Restarted twice (within the limit), the container is waiting in CrashLoopBackOff:
    # its unready clock runs from the Ready condition, not from its latest start.
    looping = k8s_pod(ready_since=1, restarts=2, waiting="CrashLoopBackOff")
    assert judged(looping, at=LIMITS.ready_timeout_seconds).phase is Phase.PROGRESSING
    verdict = judged(looping, at=LIMITS.ready_timeout_seconds + 2)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "PodNotReady")
    # Restarting while running again: the latest start does not reset the clock either.
    running = k8s_pod(ready_since=1, restarts=2, started=55)
    assert judged(running, at=LIMITS.ready_timeout_seconds + 2).reason == "PodNotReady"
    verdict = judged(k8s_pod(restarts=3, waiting="CrashLoopBackOff"), at=20)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "ContainerRestarts")


def test_pod_ready_then_unready_past_the_timeout_fails() -> None:
    pod = k8s_pod(ready=False, ready_since=500)
    assert judged(pod, at=500 + LIMITS.ready_timeout_seconds + 1).reason == "PodNotReady"
