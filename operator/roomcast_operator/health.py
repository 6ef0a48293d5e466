"""Is a release healthy? Pure decisions over what the pods and the Deployment report.

A release fails fast on signals from its own pods (crash loops, pods that never become
Ready, bad realtime metrics) and at the latest at the progress deadline. It succeeds
once the Deployment is complete and the pods stayed healthy for the observation period.

A pod still Pending (waiting for a node, pulling its image, creating its container) is
not judged as unready: a slow scheduler or registry says nothing about the release. It
fails the release only once Pending longer than the progress deadline, the longest the
Deployment itself lets a rollout go without progress.

Realtime metrics are judged over windows (see :mod:`windows`): one window's rates and
ratios come from the counters' deltas between scrapes, and only ``consecutiveBadWindows``
bad windows in a row fail a release, so a blip never does. What the client causes
(expired or invalid tokens, forced disconnects, denied permissions) is not counted
against the release, and what the old release's pods show in the same window is not
blamed on the new one: the release is then *inconclusive*, neither failed nor healthy,
and its rollout waits until the cause outside it goes away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any

from .render import REVISION_ANNOTATION
from .spec import HealthThresholds

Obj = dict[str, Any]


class Phase(Enum):
    PROGRESSING = "Progressing"
    OBSERVING = "Observing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    """The old release is as unhealthy as the new one: the cause is outside the release."""


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    message: str


@dataclass(frozen=True)
class PodMetrics:
    """One pod's /metrics. Counters start at zero when the pod's container starts.

    Rejected connects and terminal disconnects are split by who caused them:
    ``connects_rejected`` and ``terminal_disconnects`` are the server's (internal
    errors, unavailable backplane, limits), the ``..._by_client`` ones the client's
    (expired or invalid token, permission denied, bad request, a forced disconnect).
    """

    connections: float = 0.0
    connects_accepted: float = 0.0
    connects_rejected: float = 0.0
    connects_rejected_by_client: float = 0.0
    terminal_disconnects: float = 0.0
    terminal_disconnects_by_client: float = 0.0
    recoveries_ok: float = 0.0
    recoveries_failed: float = 0.0
    engine_errors: float = 0.0
    latency_buckets: tuple[tuple[float, float], ...] = ()
    """Cumulative publish-to-write histogram: (upper bound, count), +Inf last."""
    engine_available: bool | None = None
    """The pod's backplane (Redis) reachable; None when the pod does not say."""

    @property
    def publish_latency_p99_seconds(self) -> float | None:
        return quantile(list(self.latency_buckets), 0.99)

    @property
    def latency_observations(self) -> float:
        return max((count for _, count in self.latency_buckets), default=0.0)


COUNTERS = tuple(
    f.name
    for f in fields(PodMetrics)
    if f.name not in ("connections", "latency_buckets", "engine_available")
)
"""The PodMetrics fields that only grow while a container runs."""


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` of a cumulative histogram."""
    if not buckets:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    for bound, count in ordered:
        if count >= q * total:
            return bound if not math.isinf(bound) else ordered[-2][0] if len(ordered) > 1 else None
    return None


@dataclass(frozen=True)
class PodState:
    """One pod as the judge sees it.

    ``unready_seconds`` counts from the moment the pod last stopped being Ready, or from
    its container's start if it never was: a missed probe on an old pod is seconds old,
    not as old as the pod. None stands for "since creation" (``age_seconds``).
    ``pending_reason`` is set while the pod is Pending; ``age_seconds`` then is how long.
    ``unscrapable``: the operator tried to read the pod's /metrics and could not.
    """

    name: str
    revision: int | None
    ready: bool
    restarts: int
    age_seconds: float
    terminating: bool = False
    metrics: PodMetrics | None = None
    unready_seconds: float | None = None
    pending_reason: str | None = None
    unscrapable: bool = False

    @classmethod
    def from_object(
        cls,
        pod: Obj,
        now: datetime,
        metrics: PodMetrics | None = None,
        unscrapable: bool = False,
    ) -> PodState:
        meta, status = pod["metadata"], pod.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready_condition = conditions.get("Ready") or {}
        ready = ready_condition.get("status") == "True"
        containers = status.get("containerStatuses") or []
        restarts = sum(c.get("restartCount", 0) for c in containers)
        revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
        created = _parse_time(meta.get("creationTimestamp"))
        pending = status.get("phase", "Pending") == "Pending"
        unready_since = None
        if not ready and not pending:
            unready_since = _parse_time(ready_condition.get("lastTransitionTime")) or created
            if restarts == 0:
                # A container that never restarted and never was Ready: count from its start,
                # not from the scheduling (its image pull was Pending time).
                starts = [
                    _parse_time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
                    for c in containers
                ]
                unready_since = max(
                    [t for t in [unready_since, *starts] if t is not None], default=None
                )
        return cls(
            name=meta["name"],
            revision=int(revision) if revision and revision.isdigit() else None,
            ready=ready,
            restarts=restarts,
            age_seconds=_seconds_between(created, now),
            terminating="deletionTimestamp" in meta,
            metrics=metrics,
            unready_seconds=None if unready_since is None else _seconds_between(unready_since, now),
            pending_reason=_pending_reason(status, conditions) if pending else None,
            unscrapable=unscrapable,
        )


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _seconds_between(then: datetime | None, now: datetime) -> float:
    return 0.0 if then is None else max(0.0, (now - then).total_seconds())


def _pending_reason(status: Obj, conditions: dict[str, Obj]) -> str:
    """Why a pod is Pending, in the scheduler's or the kubelet's words."""
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        parts = [scheduled.get("reason"), scheduled.get("message")]
        return ": ".join(str(part) for part in parts if part) or "not scheduled"
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            message = waiting.get("message")
            return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return "Pending"


@dataclass(frozen=True)
class DeploymentState:
    generation: int
    observed_generation: int
    replicas: int
    desired_replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    deadline_exceeded: bool
    last_progress: datetime | None = None
    """When the Deployment last reported progress (its Progressing condition's update)."""

    @property
    def complete(self) -> bool:
        """Every pod runs the current template and is available, none from older ones."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == self.desired_replicas
            and self.replicas == self.desired_replicas
            and self.available_replicas == self.desired_replicas
        )

    @classmethod
    def from_object(cls, deployment: Obj) -> DeploymentState:
        status = deployment.get("status") or {}
        generation = deployment["metadata"].get("generation", 0)
        observed = status.get("observedGeneration", 0)
        progressing: Obj = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
        )
        # A deadline reported for an older template says nothing about the current one.
        deadline = (
            observed >= generation and progressing.get("reason") == "ProgressDeadlineExceeded"
        )
        return cls(
            generation=generation,
            observed_generation=observed,
            replicas=status.get("replicas", 0),
            desired_replicas=(deployment.get("spec") or {}).get("replicas", 1),
            updated_replicas=status.get("updatedReplicas", 0),
            ready_replicas=status.get("readyReplicas", 0),
            available_replicas=status.get("availableReplicas", 0),
            deadline_exceeded=deadline,
            last_progress=_parse_time(
                progressing.get("lastUpdateTime") or progressing.get("lastTransitionTime")
            ),
        )


@dataclass(frozen=True)
class WindowTotals:
    """What a set of pods did during one window: their counters' deltas, summed.

    ``pod_seconds`` is the time the scrapes span, summed over the pods, so rates come out
    per pod and second however many pods served in the window and for how long.
    """

    pods: int = 0
    pod_seconds: float = 0.0
    deltas: PodMetrics = PodMetrics()


def window_problems(totals: WindowTotals, limits: HealthThresholds) -> dict[str, str]:
    """The realtime thresholds a window breaks, by signal (empty when healthy or too few
    samples). Client-caused rejects and disconnects are not counted."""
    problems: dict[str, str] = {}
    if totals.pod_seconds <= 0:
        return problems
    d = totals.deltas
    connects = d.connects_accepted + d.connects_rejected
    if connects >= limits.min_samples:
        ratio = d.connects_rejected / connects
        if ratio > limits.max_connect_error_ratio:
            problems["connects"] = (
                f"connect error ratio {ratio:.2f} > {limits.max_connect_error_ratio}"
            )
    recoveries = d.recoveries_ok + d.recoveries_failed
    if recoveries >= limits.min_samples:
        ratio = d.recoveries_failed / recoveries
        if ratio > limits.max_failed_recovery_ratio:
            problems["recoveries"] = (
                f"failed recovery ratio {ratio:.2f} > {limits.max_failed_recovery_ratio}"
            )
    rate = d.terminal_disconnects / totals.pod_seconds
    if rate > limits.max_terminal_disconnects_per_second:
        problems["disconnects"] = (
            f"terminal disconnects {rate:.2f}/s per pod > "
            f"{limits.max_terminal_disconnects_per_second}/s"
        )
    rate = d.engine_errors / totals.pod_seconds
    if rate > limits.max_engine_errors_per_second:
        problems["engine"] = (
            f"backplane errors {rate:.2f}/s per pod > {limits.max_engine_errors_per_second}/s"
        )
    p99 = d.publish_latency_p99_seconds
    if (
        p99 is not None
        and d.latency_observations >= limits.min_samples
        and p99 > limits.max_publish_latency_seconds
    ):
        problems["latency"] = (
            f"publish latency p99 {p99:.3f}s > {limits.max_publish_latency_seconds}s"
        )
    return problems


class WindowState(Enum):
    EMPTY = "Empty"
    """Too little of the window was scraped to judge it."""
    GOOD = "Good"
    BAD = "Bad"
    """The release breaks a threshold the old release's pods do not."""
    SHARED = "Shared"
    """The release breaks thresholds, and so does the old release in the same window."""


@dataclass(frozen=True)
class WindowResult:
    state: WindowState
    problems: tuple[str, ...] = ()


def judge_window(
    new: WindowTotals, old: WindowTotals, limits: HealthThresholds, seconds: float
) -> WindowResult:
    """One window of the release (``new``) beside the other releases' live pods (``old``).

    Empty while the release's scrapes span less than half the window (summed over its
    pods): too little to judge, as right after an operator restart. A
    problem the old release shows too (a Redis outage raises backplane errors on every
    pod) is not the release's; a window with only such problems is SHARED.
    """
    if new.pod_seconds < seconds / 2:
        return WindowResult(WindowState.EMPTY)
    mine = window_problems(new, limits)
    theirs = window_problems(old, limits)
    own = tuple(text for key, text in mine.items() if key not in theirs)
    if own:
        return WindowResult(WindowState.BAD, own)
    if mine:
        shared = tuple(f"{text} (old release: {theirs[key]})" for key, text in mine.items())
        return WindowResult(WindowState.SHARED, shared)
    return WindowResult(WindowState.GOOD)


def pod_problems(
    pod: PodState, limits: HealthThresholds, pending_timeout_seconds: float | None = None
) -> tuple[str, str] | None:
    """(reason, message) for the first threshold a pod breaks, or None.

    A Pending pod is judged only against ``pending_timeout_seconds`` (None: not at all).
    """
    if pod.terminating:
        return None
    if pod.restarts > limits.max_container_restarts:
        return "ContainerRestarts", (
            f"pod {pod.name} restarted {pod.restarts} times (limit {limits.max_container_restarts})"
        )
    if pod.pending_reason is not None:
        if pending_timeout_seconds is not None and pod.age_seconds > pending_timeout_seconds:
            return "PodPending", (
                f"pod {pod.name} Pending for {pod.age_seconds:.0f}s (limit "
                f"{pending_timeout_seconds:.0f}s): {pod.pending_reason}"
            )
        return None
    unready = pod.age_seconds if pod.unready_seconds is None else pod.unready_seconds
    if not pod.ready and unready > limits.ready_timeout_seconds:
        return "PodNotReady", (
            f"pod {pod.name} not Ready for {unready:.0f}s (limit {limits.ready_timeout_seconds}s)"
        )
    return None


def shared_unreadiness(
    pod: PodState, pods: list[PodState], revision: int
) -> tuple[str, str] | None:
    """(reason, message) when an unready pod of the release is unready for a cause
    outside it, or None when the release is to blame.

    * The old release's pods are all unready too (their /ready fails as well: a Redis
      outage makes every pod's /ready answer 503).
    * The pod reports its backplane unavailable and no pod of any release reports it
      available: a release whose Redis settings are wrong is still caught while the old
      release's pods reach Redis.
    """
    live = [p for p in pods if not p.terminating and p.pending_reason is None]
    old = [p for p in live if p.revision != revision]
    if old and not any(p.ready for p in old):
        return "OldReleaseUnready", (
            f"no pod of the old release is Ready either ({', '.join(p.name for p in old)}): "
            "the cause is outside the release"
        )
    backplane_down = pod.metrics is not None and pod.metrics.engine_available is False
    if backplane_down and not any(p.metrics and p.metrics.engine_available for p in live):
        return "BackplaneUnavailable", (
            f"pod {pod.name} reports its backplane (Redis) unavailable and no pod reaches "
            "it: the cause is outside the release"
        )
    return None


def judge_rollout(
    deployment: DeploymentState,
    pods: list[PodState],
    revision: int,
    limits: HealthThresholds,
    progress_deadline_seconds: int,
    stalled_seconds: float,
    available_seconds: float | None,
    windows: Sequence[WindowResult] = (),
    resumed_seconds: float | None = None,
) -> Verdict:
    """Decide on the release ``revision`` being rolled out.

    ``stalled_seconds`` counts from the rollout's last progress (the later of its start
    and the Deployment's last reported progress), ``available_seconds`` from the moment
    it was first complete (None while it never was). Once complete, the release is in
    observation: no deadline applies any more, since an autoscaler's scale-up or a
    replaced pod makes the Deployment incomplete again without saying anything about the
    release; its new pods are still judged one by one.

    ``resumed_seconds``: since the release was last inconclusive (None: never). An outage
    that kept every pod unready ends for the pods one by one, as each reconnects: a new
    pod is not failed as unready until ``readyTimeoutSeconds`` after the old release's
    pods came back.

    ``windows`` are the release's latest metric windows, oldest first (see
    :mod:`windows`). The release fails on metrics only when the last
    ``consecutive_bad_windows`` of them are all BAD; it is inconclusive while the latest
    is SHARED, and it does not succeed while the latest is BAD.

    A pod whose /metrics the operator could not read has no metrics gates, so it is never
    passed over in silence: every message names the release's unscrapable pods. And a
    release is not called healthy on no data: after its observation period it succeeds
    only once its answering pods filled a window; while none answers it stays in
    observation (MetricsUnavailable) and is neither rolled back nor recorded as good.
    With scraping turned off in the operator's settings no pod is unscrapable and no pod
    has metrics: the metric gates are simply off.
    """
    observing = available_seconds is not None
    live = [p for p in pods if p.revision == revision and not p.terminating]
    silent = [p.name for p in live if p.unscrapable]
    unscraped = f"; no /metrics from {', '.join(silent)}" if silent else ""
    # Once complete, the release has shown that its pods schedule and start: a pod Pending
    # later (an autoscaler's scale-up waiting for a node) is capacity, not the release.
    pending_timeout = None if observing else progress_deadline_seconds
    for pod in pods:
        if pod.revision != revision:
            continue
        problem = pod_problems(pod, limits, pending_timeout)
        if problem is None:
            continue
        if problem[0] == "PodNotReady":
            excuse = shared_unreadiness(pod, pods, revision)
            if excuse is not None:
                return Verdict(Phase.INCONCLUSIVE, excuse[0], f"{problem[1]}, but {excuse[1]}")
            if resumed_seconds is not None and resumed_seconds <= limits.ready_timeout_seconds:
                continue
        return Verdict(Phase.FAILED, *problem)
    count = limits.consecutive_bad_windows
    latest = windows[-1] if windows else None
    if len(windows) >= count and all(w.state is WindowState.BAD for w in windows[-count:]):
        return Verdict(
            Phase.FAILED,
            "UnhealthyMetrics",
            f"revision {revision}: {'; '.join(windows[-1].problems)} in {count} consecutive "
            f"windows of {limits.window_seconds}s",
        )
    if latest is not None and latest.state is WindowState.SHARED:
        return Verdict(
            Phase.INCONCLUSIVE,
            "OldReleaseUnhealthy",
            f"revision {revision}: {'; '.join(latest.problems)}: the old release is as "
            "unhealthy, so the cause is outside the release",
        )
    if not deployment.complete and not observing:
        if deployment.deadline_exceeded:
            return Verdict(
                Phase.FAILED,
                "ProgressDeadlineExceeded",
                f"revision {revision} not available within {progress_deadline_seconds}s",
            )
        # The Deployment controller reports the deadline; this is the backstop when it
        # cannot (for instance while the operator itself was down).
        if stalled_seconds > progress_deadline_seconds + 30:
            return Verdict(
                Phase.FAILED,
                "ProgressDeadlineExceeded",
                f"revision {revision} made no progress for {stalled_seconds:.0f}s",
            )
        return Verdict(
            Phase.PROGRESSING,
            "RollingUpdate",
            f"revision {revision}: {deployment.updated_replicas}/{deployment.desired_replicas}"
            f" updated, {deployment.available_replicas} available{unscraped}",
        )
    if available_seconds is None or available_seconds < limits.observation_seconds:
        return Verdict(
            Phase.OBSERVING,
            "ObservingRelease",
            f"revision {revision} available; watching it for {limits.observation_seconds}s"
            + _scaling(deployment)
            + _bad_window(latest)
            + unscraped,
        )
    if not deployment.complete:
        return Verdict(
            Phase.OBSERVING,
            "ObservingRelease",
            f"revision {revision} observed; waiting for the Deployment to settle"
            + _scaling(deployment)
            + unscraped,
        )
    if latest is not None and latest.state is WindowState.BAD:
        return Verdict(
            Phase.OBSERVING,
            "ObservingRelease",
            f"revision {revision} observed; not called healthy while its latest window is "
            f"bad{_bad_window(latest)}{unscraped}",
        )
    if live and len(silent) == len(live):
        return Verdict(
            Phase.OBSERVING,
            "MetricsUnavailable",
            f"revision {revision} observed for {limits.observation_seconds}s but the /metrics "
            f"of none of its pods could be read ({', '.join(silent)}); waiting for one to "
            "answer before calling it healthy",
        )
    scraped = any(p.metrics is not None for p in live)
    if scraped and not any(w.state is not WindowState.EMPTY for w in windows):
        return Verdict(
            Phase.OBSERVING,
            "CollectingMetrics",
            f"revision {revision} observed; waiting for a full window of {limits.window_seconds}s"
            " of /metrics before calling it healthy" + unscraped,
        )
    return Verdict(Phase.SUCCEEDED, "ReleaseHealthy", f"revision {revision} is healthy{unscraped}")


def _bad_window(window: WindowResult | None) -> str:
    if window is None or window.state is not WindowState.BAD:
        return ""
    return f" (latest window: {'; '.join(window.problems)})"


def _scaling(deployment: DeploymentState) -> str:
    if deployment.complete:
        return ""
    return f" ({deployment.available_replicas}/{deployment.desired_replicas} pods available)"
