"""Health decisions on a release being rolled out."""

from __future__ import annotations

import dataclasses

from roomcast_operator.health import (
    DeploymentState,
    Phase,
    PodMetrics,
    PodState,
    WindowResult,
    WindowState,
    WindowTotals,
    judge_rollout,
    judge_window,
    quantile,
    window_problems,
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


BAD = WindowResult(WindowState.BAD, ("connect error ratio 0.50 > 0.2",))
GOOD = WindowResult(WindowState.GOOD)
SHARED = WindowResult(WindowState.SHARED, ("backplane errors 3.00/s per pod > 1.0/s",))
EMPTY = WindowResult(WindowState.EMPTY)


def test_consecutive_bad_windows_fail_the_release() -> None:
    assert LIMITS.consecutive_bad_windows == 3
    verdict = judge_rollout(ROLLING, [pod()], 2, LIMITS, 180, 5, None, [BAD, BAD, BAD])
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "UnhealthyMetrics")
    assert "connect error ratio 0.50 > 0.2 in 3 consecutive windows of 20s" in verdict.message


def test_fewer_bad_windows_only_hold_the_success_back() -> None:
    for windows in ([GOOD, BAD, BAD], [BAD, EMPTY, BAD], [BAD, BAD, GOOD]):
        assert judge_rollout(ROLLING, [pod()], 2, LIMITS, 180, 5, None, windows).phase is (
            Phase.PROGRESSING
        )
    verdict = judge_rollout(COMPLETE, [pod()], 2, LIMITS, 180, 5, 600, [GOOD, GOOD, BAD])
    assert verdict.phase is Phase.OBSERVING
    assert "latest window: connect error ratio 0.50 > 0.2" in verdict.message
    verdict = judge_rollout(COMPLETE, [pod()], 2, LIMITS, 180, 5, 600, [BAD, BAD, GOOD])
    assert verdict.phase is Phase.SUCCEEDED


def test_a_window_the_old_release_shares_makes_the_release_inconclusive() -> None:
    verdict = judge_rollout(ROLLING, [pod()], 2, LIMITS, 180, 5, None, [SHARED, SHARED, SHARED])
    assert (verdict.phase, verdict.reason) == (Phase.INCONCLUSIVE, "OldReleaseUnhealthy")
    assert "backplane errors" in verdict.message and "outside the release" in verdict.message


def test_answering_pods_must_fill_a_window_before_success() -> None:
    scraped = pod(metrics=PodMetrics())
    verdict = judge_rollout(COMPLETE, [scraped], 2, LIMITS, 180, 5, 600, [EMPTY, EMPTY, EMPTY])
    assert (verdict.phase, verdict.reason) == (Phase.OBSERVING, "CollectingMetrics")
    verdict = judge_rollout(COMPLETE, [scraped], 2, LIMITS, 180, 5, 600, [EMPTY, EMPTY, GOOD])
    assert verdict.phase is Phase.SUCCEEDED


def totals(seconds: float = 20.0, **deltas: object) -> WindowTotals:
    return WindowTotals(pods=1, pod_seconds=seconds, deltas=PodMetrics(**deltas))  # type: ignore[arg-type]


def test_window_thresholds() -> None:
    assert window_problems(totals(), LIMITS) == {}
    # Too few samples to judge a ratio.
    assert window_problems(totals(connects_rejected=10), LIMITS) == {}
    assert window_problems(totals(connects_accepted=40, connects_rejected=60), LIMITS) == {
        "connects": "connect error ratio 0.60 > 0.2"
    }
    assert window_problems(totals(recoveries_ok=10, recoveries_failed=90), LIMITS) == {
        "recoveries": "failed recovery ratio 0.90 > 0.2"
    }
    assert window_problems(totals(10, terminal_disconnects=100), LIMITS) == {
        "disconnects": "terminal disconnects 10.00/s per pod > 5.0/s"
    }
    assert window_problems(totals(10, engine_errors=20), LIMITS) == {
        "engine": "backplane errors 2.00/s per pod > 1.0/s"
    }
    slow = ((0.5, 10.0), (2.5, 100.0), (float("inf"), 100.0))
    assert window_problems(totals(latency_buckets=slow), LIMITS) == {
        "latency": "publish latency p99 2.500s > 1.0s"
    }
    # Too few publications for a p99.
    assert window_problems(totals(latency_buckets=((2.5, 3.0), (float("inf"), 3.0))), LIMITS) == {}


def test_client_caused_rejects_and_disconnects_are_not_counted() -> None:
    window = totals(
        10,
        connects_accepted=40,
        connects_rejected_by_client=60,
        terminal_disconnects_by_client=500,
    )
    assert window_problems(window, LIMITS) == {}


def test_judge_window_compares_with_the_old_release() -> None:
    seconds = LIMITS.window_seconds
    sick = totals(engine_errors=100)
    healthy = totals()
    assert judge_window(sick, healthy, LIMITS, seconds).state is WindowState.BAD
    shared = judge_window(sick, totals(engine_errors=80), LIMITS, seconds)
    assert shared.state is WindowState.SHARED
    assert "(old release: backplane errors 4.00/s per pod > 1.0/s)" in shared.problems[0]
    # A problem the old release does not share is still the release's own.
    both = totals(engine_errors=100, connects_accepted=10, connects_rejected=90)
    verdict = judge_window(both, totals(engine_errors=80), LIMITS, seconds)
    assert (verdict.state, verdict.problems) == (
        WindowState.BAD,
        ("connect error ratio 0.90 > 0.2",),
    )
    assert judge_window(healthy, sick, LIMITS, seconds).state is WindowState.GOOD
    # Scraped over less than half the window: not judged.
    assert judge_window(
        totals(seconds / 2 - 1, engine_errors=100), healthy, LIMITS, seconds
    ).state is (WindowState.EMPTY)


def test_quantile_of_an_empty_histogram_is_unknown() -> None:
    assert quantile([], 0.99) is None
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.99) is None
    assert quantile([(0.1, 50.0), (0.5, 100.0), (float("inf"), 100.0)], 0.99) == 0.5
