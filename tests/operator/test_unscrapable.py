"""Pods whose /metrics cannot be read: named while the judge waits, never a silent pass."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from roomcast_operator import render
from roomcast_operator.conditions import find
from roomcast_operator.health import (
    Phase,
    PodMetrics,
    PodState,
    WindowResult,
    WindowState,
    judge_rollout,
)
from roomcast_operator.releases import Observed, Revision, decide

from .helpers import complete_deployment, make_spec

SPEC = make_spec()
LIMITS = SPEC.rollout.health
OBSERVED = LIMITS.observation_seconds
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

COMPLETE = complete_deployment(2)
ROLLING = dataclasses.replace(COMPLETE, replicas=3, updated_replicas=1)


def pod(name: str, revision: int = 2, **fields: object) -> PodState:
    values: dict[str, object] = {"ready": True, "restarts": 0, "age_seconds": 40.0}
    values.update(fields)
    return PodState(name, revision, **values)  # type: ignore[arg-type]


def silent(name: str, revision: int = 2, **fields: object) -> PodState:
    return pod(name, revision, unscrapable=True, **fields)


def test_from_object_carries_the_failed_scrape() -> None:
    raw = {"metadata": {"name": "chat-a"}, "status": {"phase": "Running"}}
    assert PodState.from_object(raw, T0, unscrapable=True).unscrapable
    assert not PodState.from_object(raw, T0).unscrapable


# Must not roll back (nor pass on no data).


def test_unscrapable_pods_are_named_while_the_judge_waits() -> None:
    verdict = judge_rollout(ROLLING, [silent("chat-a")], 2, LIMITS, 180, 10, None)
    assert verdict.phase is Phase.PROGRESSING
    assert "no /metrics from chat-a" in verdict.message
    verdict = judge_rollout(COMPLETE, [silent("chat-a"), pod("chat-b")], 2, LIMITS, 180, 10, 5)
    assert verdict.phase is Phase.OBSERVING
    assert "no /metrics from chat-a" in verdict.message


def test_release_none_of_whose_pods_answers_stays_in_observation() -> None:
    pods = [silent("chat-a"), silent("chat-b")]
    for available in (OBSERVED, OBSERVED + 3600):
        verdict = judge_rollout(COMPLETE, pods, 2, LIMITS, 180, 10, available)
        assert (verdict.phase, verdict.reason) == (Phase.OBSERVING, "MetricsUnavailable")
        assert "chat-a, chat-b" in verdict.message


def test_inconclusive_release_is_neither_recorded_good_nor_rolled_back() -> None:
    release = render.release_of(SPEC)
    status = {
        "specHash": release.hash,
        "currentRevision": 2,
        "lastGoodRevision": 1,
        "releases": [
            {
                "revision": 2,
                "started": "2026-01-01T12:00:00Z",
                "available": "2026-01-01T12:00:10Z",
                "outcome": "Progressing",
                "cause": "Spec",
            }
        ],
    }
    observed = Observed(
        revisions=[Revision(1, render.release_of(make_spec(image="x:1"))), Revision(2, release)],
        deployment=COMPLETE,
        deployment_revision=2,
        pods=[silent("chat-a")],
        rollback_request=None,
    )
    plan = decide(SPEC, 1, status, release, observed, T0 + timedelta(minutes=10))
    assert plan.status["releases"][-1]["outcome"] == "Progressing"
    assert plan.status["lastGoodRevision"] == 1
    assert not plan.events
    progressing = find(plan.status["conditions"], "Progressing")
    assert progressing is not None
    assert progressing["reason"] == "ObservingRelease"
    assert "none of its pods could be read (chat-a)" in progressing["message"]


def test_one_answering_pod_is_enough_and_the_others_are_named() -> None:
    pods = [silent("chat-a"), pod("chat-b", metrics=PodMetrics())]
    good = [WindowResult(WindowState.GOOD)]
    verdict = judge_rollout(COMPLETE, pods, 2, LIMITS, 180, 10, OBSERVED, good)
    assert verdict.phase is Phase.SUCCEEDED
    assert verdict.message.endswith("no /metrics from chat-a")


def test_old_and_terminating_pods_do_not_hold_the_release() -> None:
    pods = [silent("chat-old", revision=1), silent("chat-gone", terminating=True), pod("chat-b")]
    verdict = judge_rollout(COMPLETE, pods, 2, LIMITS, 180, 10, OBSERVED)
    assert (verdict.phase, verdict.message) == (Phase.SUCCEEDED, "revision 2 is healthy")


def test_with_scraping_turned_off_the_release_succeeds_without_metrics() -> None:
    verdict = judge_rollout(COMPLETE, [pod("chat-a")], 2, LIMITS, 180, 10, OBSERVED)
    assert verdict.phase is Phase.SUCCEEDED


# Must roll back.


def test_bad_metrics_on_an_answering_pod_still_fail_beside_unscrapable_ones() -> None:
    refusing = PodMetrics(connects_accepted=10, connects_rejected=90)
    pods = [silent("chat-a"), pod("chat-b", metrics=refusing)]
    bad = [WindowResult(WindowState.BAD, ("connect error ratio 0.90 > 0.2",))] * 3
    verdict = judge_rollout(COMPLETE, pods, 2, LIMITS, 180, 10, 5, bad)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "UnhealthyMetrics")
