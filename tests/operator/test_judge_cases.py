"""The judge against real-traffic cases, pass by pass, with the CRD's defaults.

Each test plays a timeline through the operator's pure parts the way the reconciler
does every few seconds: the pods' scrapes go into a ScrapeMemory, and ``decide`` judges
revision 2, rolled out after the good revision 1. Cases that must not roll back (noise,
clients, an outage outside the release) sit beside cases that must (the release itself
is broken).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from roomcast_operator import render
from roomcast_operator.conditions import find
from roomcast_operator.health import DeploymentState, PodMetrics, PodState
from roomcast_operator.releases import Observed, Plan, Revision, decide
from roomcast_operator.windows import ScrapeMemory

from .helpers import complete_deployment, make_spec

SPEC = make_spec(image="roomcast:2")
LIMITS = SPEC.rollout.health  # ready 60s, observation 30s, windows 20s x 3, minSamples 50
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PASS_SECONDS = 3

COMPLETE = complete_deployment(2)
# One new pod surged beside the two old ones.
ROLLING = dataclasses.replace(COMPLETE, replicas=3, updated_replicas=1)

Pods = Callable[[float], list[PodState]]
"""The pods as seen ``t`` seconds into the rollout."""


class Rollout:
    """Revision 2 rolling out after the good revision 1, judged pass by pass."""

    def __init__(self) -> None:
        self.good = Revision(1, render.release_of(make_spec(image="roomcast:1")))
        self.new = Revision(2, render.release_of(SPEC))
        self.status: dict[str, Any] = {
            "specHash": self.new.release.hash,
            "specRevision": 2,
            "currentRevision": 2,
            "lastGoodRevision": 1,
            "releases": [
                {"revision": 1, "outcome": "Succeeded", "cause": "Spec"},
                {"revision": 2, "started": "2026-01-01T12:00:00Z", "outcome": "Progressing"}
                | {"cause": "Spec"},
            ],
        }
        self.memory = ScrapeMemory()
        self.events: list[str] = []
        self.paused: list[bool] = []

    def run(
        self,
        pods: Pods,
        seconds: float,
        deployment: Callable[[float], DeploymentState] = lambda t: COMPLETE,
        start: float = 0,
    ) -> Plan:
        """Passes every PASS_SECONDS from ``start`` until ``seconds``, or until the
        release ends; the last plan."""
        t = start
        while True:
            now = T0 + timedelta(seconds=t)
            states = pods(t)
            observed = Observed(
                revisions=[self.good, self.new],
                deployment=deployment(t),
                deployment_revision=self.status["currentRevision"],
                pods=states,
                rollback_request=None,
                samples=self.memory.record(("prod", "chat"), now, states, LIMITS),
            )
            plan = decide(SPEC, 1, self.status, self.new.release, observed, now)
            self.status = plan.status
            self.events += [event.reason for event in plan.events]
            self.paused.append(plan.paused)
            t += PASS_SECONDS
            if t > seconds or self.outcome(2) != "Progressing":
                return plan

    def outcome(self, revision: int) -> str:
        records = [r for r in self.status["releases"] if r["revision"] == revision]
        return str(records[-1]["outcome"]) if records else "absent"

    def condition(self, kind: str) -> dict[str, Any]:
        found = find(self.status["conditions"], kind)
        assert found is not None
        return found


def pod(name: str, revision: int, t: float, **fields: Any) -> PodState:
    values: dict[str, Any] = {"ready": True, "restarts": 0, "age_seconds": t + 5}
    values.update(fields)
    return PodState(name, revision, **values)


def serving(t: float, **counters: Any) -> PodMetrics:
    """A healthy pod's counters ``t`` seconds in: 5 accepted connects a second."""
    values: dict[str, Any] = {"connects_accepted": 5 * t, "engine_available": True}
    return PodMetrics(**(values | counters))


def succeeded(rollout: Rollout) -> bool:
    return rollout.outcome(2) == "Succeeded" and rollout.status["lastGoodRevision"] == 2


# Must not roll back.


def test_expired_tokens_are_the_clients_not_the_release() -> None:
    # 11 of every 51 connects carry an expired token (ratio 0.22 > 0.2 if counted).
    def pods(t: float) -> list[PodState]:
        metrics = serving(t, connects_rejected_by_client=1.1 * t)
        return [pod("new-a", 2, t, metrics=metrics), pod("new-b", 2, t, metrics=metrics)]

    rollout = Rollout()
    rollout.run(pods, 180)
    assert succeeded(rollout), rollout.status
    assert "AutoRollback" not in rollout.events


def test_invalid_tokens_on_a_young_pod_are_the_clients() -> None:
    # 60 invalid tokens (close 3500) in a new pod's first ten seconds: 6/s > 5/s if counted.
    def pods(t: float) -> list[PodState]:
        refused = 6 * min(t, 10)
        metrics = serving(t, terminal_disconnects_by_client=refused)
        return [pod("new-a", 2, t, age_seconds=t, metrics=metrics)]

    rollout = Rollout()
    rollout.run(pods, 180)
    assert succeeded(rollout), rollout.status


def test_bad_minute_long_before_is_not_judged_now() -> None:
    # The pod's counters since its start say 1000 rejected of 1500; the last minutes are clean.
    def pods(t: float) -> list[PodState]:
        metrics = serving(t + 100, connects_rejected=1000)
        return [pod("new-a", 2, t, age_seconds=600, metrics=metrics)]

    rollout = Rollout()
    rollout.run(pods, 180)
    assert succeeded(rollout), rollout.status


def test_redis_blip_during_observation_does_not_roll_back() -> None:
    # Seconds 30-38: every pod's /ready answers 503, backplane errors pile up, recoveries
    # after the blip fail (Redis restarted empty).
    def pods(t: float) -> list[PodState]:
        blip = 30 <= t <= 38
        errors = 40 * min(max(t - 30, 0), 8)
        failed = 60 if t > 38 else 0
        metrics = serving(
            t,
            engine_errors=errors,
            recoveries_failed=failed,
            recoveries_ok=t,
            engine_available=not blip,
        )
        return [
            pod(
                name,
                2,
                t,
                ready=not blip,
                unready_seconds=t - 30 if blip else None,
                metrics=metrics,
            )
            for name in ("new-a", "new-b")
        ]

    rollout = Rollout()
    rollout.run(pods, 240)
    assert succeeded(rollout), rollout.status
    assert "ReleaseFailed" not in rollout.events


def test_redis_outage_mid_rollout_pauses_the_release_instead_of_failing_it() -> None:
    # From second 10 to 130 Redis is down: every pod, old and new, fails /ready.
    def outage(t: float) -> bool:
        return 10 <= t < 130

    def pods(t: float) -> list[PodState]:
        down = outage(t)
        unready = {"ready": False, "unready_seconds": t - 10} if down else {}
        metrics = serving(t, engine_errors=30 * max(0, min(t, 130) - 10), engine_available=not down)
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=metrics, **unready),
            pod("old-b", 1, t, age_seconds=3600, metrics=metrics, **unready),
            pod("new-a", 2, t, metrics=metrics, **(unready if t >= 10 else {"ready": False})),
        ]

    rollout = Rollout()
    plan = rollout.run(pods, 125, deployment=lambda t: ROLLING)
    assert rollout.outcome(2) == "Progressing"
    assert plan.paused
    progressing = rollout.condition("Progressing")
    assert progressing["reason"] == "ReleaseInconclusive"
    assert progressing["message"].startswith("OldReleaseUnready: pod new-a not Ready for ")
    assert "but no pod of the old release is Ready either (old-a, old-b)" in progressing["message"]
    assert rollout.events.count("ReleaseInconclusive") == 1
    assert "ReleaseFailed" not in rollout.events
    # Redis is back: the rollout resumes and completes, and the release is judged as usual.
    rollout.run(pods, 300, start=130)
    assert rollout.events.count("ReleaseResumed") == 1
    assert not rollout.paused[-1]
    assert succeeded(rollout), rollout.status


def test_new_pod_back_a_little_after_the_old_ones_is_not_failed() -> None:
    # Redis down from second 10 to 100; the old pods are Ready again at 103, the new pod,
    # whose reconnect backoff was longer, only at 110.
    def pods(t: float) -> list[PodState]:
        old_down = 10 <= t < 103
        new_down = t < 110
        metrics = serving(t, engine_available=not 10 <= t < 100)
        return [
            pod(
                "old-a",
                1,
                t,
                age_seconds=3600,
                ready=not old_down,
                unready_seconds=t - 10,
                metrics=metrics,
            ),
            pod("new-a", 2, t, ready=not new_down, unready_seconds=t, metrics=metrics),
        ]

    rollout = Rollout()
    rollout.run(pods, 300, deployment=lambda t: ROLLING if t < 110 else COMPLETE)
    assert rollout.events.count("ReleaseInconclusive") == 1
    assert "ReleaseFailed" not in rollout.events
    assert succeeded(rollout), rollout.status


def test_backplane_errors_the_old_release_shares_are_inconclusive() -> None:
    # Both releases ready, but every pod's Redis calls fail at 10/s.
    def pods(t: float) -> list[PodState]:
        metrics = serving(t, engine_errors=10 * t)
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=metrics),
            pod("new-a", 2, t, metrics=metrics),
        ]

    rollout = Rollout()
    plan = rollout.run(pods, 120, deployment=lambda t: ROLLING)
    assert rollout.outcome(2) == "Progressing"
    assert plan.paused
    assert "OldReleaseUnhealthy" in rollout.condition("Progressing")["message"]


def test_redis_outage_during_observation_is_inconclusive() -> None:
    # No old pod is left to compare with; from second 10 no pod reaches Redis.
    def pods(t: float) -> list[PodState]:
        down = t >= 10
        metrics = serving(t, engine_available=not down)
        return [pod("new-a", 2, t, ready=not down, unready_seconds=t - 10, metrics=metrics)]

    def deployment(t: float) -> DeploymentState:
        return COMPLETE if t < 10 else dataclasses.replace(COMPLETE, available_replicas=0)

    rollout = Rollout()
    plan = rollout.run(pods, 150, deployment=deployment)
    assert rollout.outcome(2) == "Progressing"
    assert plan.paused
    assert "BackplaneUnavailable" in rollout.condition("Progressing")["message"]


def test_operator_restart_reseeds_its_windows() -> None:
    def pods(t: float) -> list[PodState]:
        return [pod("new-a", 2, t, metrics=serving(t))]

    rollout = Rollout()
    rollout.run(pods, 27)
    rollout.memory = ScrapeMemory()  # a new operator process: nothing remembered
    rollout.run(pods, 33, start=30)
    assert rollout.condition("Progressing")["message"].startswith("revision 2 observed; waiting")
    assert rollout.outcome(2) == "Progressing"
    rollout.run(pods, 120, start=36)
    assert succeeded(rollout), rollout.status


# Must roll back.


def test_crash_loop_rolls_back() -> None:
    def pods(t: float) -> list[PodState]:
        return [pod("new-a", 2, t, ready=False, restarts=int(t // 10))]

    rollout = Rollout()
    rollout.run(pods, 120, deployment=lambda t: ROLLING)
    assert rollout.outcome(2) == "Failed"
    assert rollout.status["currentRevision"] == 1
    assert rollout.events[-1] == "AutoRollback"


def test_pod_never_ready_beside_ready_old_pods_rolls_back() -> None:
    def pods(t: float) -> list[PodState]:
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=serving(t)),
            pod("new-a", 2, t, ready=False, unready_seconds=t, metrics=serving(0)),
        ]

    rollout = Rollout()
    rollout.run(pods, 120, deployment=lambda t: ROLLING)
    assert rollout.status["releases"][1]["reason"] == "PodNotReady"
    assert rollout.status["currentRevision"] == 1


def test_wrong_redis_settings_roll_back_while_the_old_pods_reach_redis() -> None:
    def pods(t: float) -> list[PodState]:
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=serving(t)),
            pod(
                "new-a",
                2,
                t,
                ready=False,
                unready_seconds=t,
                metrics=serving(0, engine_available=False),
            ),
        ]

    rollout = Rollout()
    rollout.run(pods, 120, deployment=lambda t: ROLLING)
    assert rollout.status["releases"][1]["reason"] == "PodNotReady"


def test_connect_errors_caused_by_the_release_roll_back_after_three_windows() -> None:
    # From second 30 the new pods answer every connect with an internal error; the old
    # pods beside them accept theirs.
    def pods(t: float) -> list[PodState]:
        failing = PodMetrics(connects_accepted=50, connects_rejected=10 * max(0, t - 30))
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=serving(t)),
            pod("new-a", 2, t, metrics=failing),
        ]

    rollout = Rollout()
    rollout.run(pods, 60, deployment=lambda t: ROLLING)
    assert rollout.outcome(2) == "Progressing"  # two bad windows are not enough
    rollout.run(pods, 120, deployment=lambda t: ROLLING, start=63)
    failed = rollout.status["releases"][1]
    assert (failed["outcome"], failed["reason"]) == ("Failed", "UnhealthyMetrics")
    assert rollout.status["currentRevision"] == 1


def test_an_inconclusive_release_that_then_crash_loops_rolls_back() -> None:
    # Redis is down for the first 100 s (every pod unready); then the new pod crash-loops.
    def pods(t: float) -> list[PodState]:
        down = t < 100
        metrics = serving(t, engine_available=not down)
        unready = {"ready": False, "unready_seconds": t} if down else {}
        restarts = 0 if down else 3
        return [
            pod("old-a", 1, t, age_seconds=3600, metrics=metrics, **unready),
            pod("new-a", 2, t, ready=False, unready_seconds=t, restarts=restarts, metrics=metrics),
        ]

    rollout = Rollout()
    rollout.run(pods, 150, deployment=lambda t: ROLLING)
    assert rollout.events == ["ReleaseInconclusive", "ReleaseFailed", "AutoRollback"]
    assert rollout.status["releases"][1]["reason"] == "ContainerRestarts"
    assert rollout.status["currentRevision"] == 1


def test_new_pod_still_unready_after_an_outage_fails_a_ready_timeout_later() -> None:
    # The outage ends at 100 for the old pods; the new pod never becomes Ready.
    def pods(t: float) -> list[PodState]:
        down = 10 <= t < 100
        metrics = serving(t, engine_available=not down)
        return [
            pod(
                "old-a",
                1,
                t,
                age_seconds=3600,
                ready=not down,
                unready_seconds=t - 10,
                metrics=metrics,
            ),
            pod("new-a", 2, t, ready=False, unready_seconds=t, metrics=metrics),
        ]

    rollout = Rollout()
    rollout.run(pods, 300, deployment=lambda t: ROLLING)
    failed = rollout.status["releases"][1]
    assert (failed["outcome"], failed["reason"]) == ("Failed", "PodNotReady")
    resumed = datetime.fromisoformat(failed["resumed"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(failed["finished"].replace("Z", "+00:00"))
    assert resumed - T0 == timedelta(seconds=102)
    assert finished - resumed > timedelta(seconds=LIMITS.ready_timeout_seconds)
