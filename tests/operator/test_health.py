"""Health decisions on a release being rolled out."""

from __future__ import annotations

import dataclasses

from roomcast_operator.health import (
    DeploymentState,
    Phase,
    PodMetrics,
    PodState,
    judge_rollout,
    metric_problems,
)

from .helpers import complete_deployment, make_spec

LIMITS = make_spec().rollout.health

COMPLETE = complete_deployment(3)
ROLLING = dataclasses.replace(COMPLETE, replicas=4, updated_replicas=1, available_replicas=3)


def pod(revision: int = 2, **fields: object) -> PodState:
    values: dict[str, object] = {
        "name": f"chat-{revision}",
        "revision": revision,
        "ready": True,
        "restarts": 0,
        "age_seconds": 10.0,
    }
    values.update(fields)
    return PodState(**values)  # type: ignore[arg-type]


def judge(deployment: DeploymentState, pods: list[PodState], **kwargs: float | None) -> Phase:
    elapsed = kwargs.get("elapsed", 10.0) or 0.0
    verdict = judge_rollout(deployment, pods, 2, LIMITS, 180, elapsed, kwargs.get("available"))
    return verdict.phase


def test_rolling_update_in_progress() -> None:
    assert judge(ROLLING, [pod(1), pod(2, ready=False)]) is Phase.PROGRESSING


def test_crash_looping_new_pod_fails_at_once() -> None:
    verdict = judge_rollout(ROLLING, [pod(2, ready=False, restarts=3)], 2, LIMITS, 180, 5, None)
    assert verdict.phase is Phase.FAILED
    assert verdict.reason == "ContainerRestarts"


def test_old_pods_do_not_fail_the_new_release() -> None:
    assert judge(ROLLING, [pod(1, ready=False, restarts=9)]) is Phase.PROGRESSING


def test_pod_never_ready_fails_after_the_ready_timeout() -> None:
    young = pod(2, ready=False, age_seconds=LIMITS.ready_timeout_seconds - 1)
    old = pod(2, ready=False, age_seconds=LIMITS.ready_timeout_seconds + 1)
    assert judge(ROLLING, [young]) is Phase.PROGRESSING
    assert judge(ROLLING, [old]) is Phase.FAILED


def test_deadline_reported_by_the_deployment_fails() -> None:
    stalled = dataclasses.replace(ROLLING, deadline_exceeded=True)
    verdict = judge_rollout(stalled, [], 2, LIMITS, 180, 200, None)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "ProgressDeadlineExceeded")


def test_deadline_backstop_when_the_deployment_is_silent() -> None:
    assert judge(ROLLING, [], elapsed=180 + 31) is Phase.FAILED


def test_complete_release_is_observed_then_succeeds() -> None:
    assert judge(COMPLETE, [pod()], available=None) is Phase.OBSERVING
    assert judge(COMPLETE, [pod()], available=LIMITS.observation_seconds - 1) is Phase.OBSERVING
    assert judge(COMPLETE, [pod()], available=LIMITS.observation_seconds) is Phase.SUCCEEDED


def test_stale_deadline_of_an_older_template_is_ignored() -> None:
    raw = {
        "metadata": {"generation": 5},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 4,
            "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
        },
    }
    assert DeploymentState.from_object(raw).deadline_exceeded is False
    raw["status"]["observedGeneration"] = 5  # type: ignore[index]
    assert DeploymentState.from_object(raw).deadline_exceeded is True


def test_bad_realtime_metrics_fail_the_release() -> None:
    metrics = PodMetrics(connects_accepted=50, connects_rejected=50)
    verdict = judge_rollout(ROLLING, [pod(metrics=metrics)], 2, LIMITS, 180, 5, None)
    assert verdict.phase is Phase.FAILED
    assert verdict.reason == "UnhealthyMetrics"
    assert "connect error ratio 0.50" in verdict.message


def test_metric_thresholds() -> None:
    assert metric_problems(PodMetrics(), 10, LIMITS) == []
    # Too few samples to judge a ratio.
    assert metric_problems(PodMetrics(connects_rejected=10), 10, LIMITS) == []
    assert metric_problems(PodMetrics(recoveries_ok=10, recoveries_failed=90), 10, LIMITS) == [
        "failed recovery ratio 0.90 > 0.2"
    ]
    assert metric_problems(PodMetrics(terminal_disconnects=100), 10, LIMITS) == [
        "terminal disconnects 10.00/s > 5.0/s"
    ]
    assert metric_problems(PodMetrics(engine_errors=20), 10, LIMITS) == [
        "backplane errors 2.00/s > 1.0/s"
    ]
    assert metric_problems(PodMetrics(publish_latency_p99_seconds=2.5), 10, LIMITS) == [
        "publish latency p99 2.500s > 1.0s"
    ]
