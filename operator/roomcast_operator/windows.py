"""A release's realtime signals over windows of time, from successive scrapes.

A pod's /metrics counts since its container started: one scrape says nothing about now,
and a pod that served well for an hour hides a bad minute. So the operator keeps each
pod's recent scrapes in memory (:class:`ScrapeMemory`) and judges the counters' deltas
between them over windows of ``windowSeconds``: the release's latest
``consecutiveBadWindows`` windows, ending now, each beside the other releases' live pods
over the same window (:func:`windows`).

The memory is the operator's only state outside the API server. It is lost on restart,
and re-seeded by the first pass after it: windows fill again as scrapes accrue, and until
one does the judge neither fails a release on metrics nor calls it healthy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .health import (
    COUNTERS,
    PodMetrics,
    PodState,
    WindowResult,
    WindowTotals,
    judge_window,
)
from .spec import HealthThresholds

MIN_SAMPLE_SPACING_SECONDS = 1.0
"""Passes come in bursts (every pod event triggers one); scrapes closer than this to a
pod's previous sample are not kept."""


@dataclass(frozen=True)
class Sample:
    """One scrape of one pod."""

    at: float
    """Seconds since the epoch."""
    revision: int | None
    metrics: PodMetrics


Samples = Mapping[str, Sequence[Sample]]
"""Scrapes by pod name, oldest first."""


class ScrapeMemory:
    """Recent scrapes of every cluster's pods, bounded in time."""

    def __init__(self) -> None:
        self._clusters: dict[tuple[str, str], dict[str, list[Sample]]] = {}

    def record(
        self,
        cluster: tuple[str, str],
        now: datetime,
        pods: Sequence[PodState],
        limits: HealthThresholds,
    ) -> dict[str, tuple[Sample, ...]]:
        """Add this pass's scrapes and return the cluster's samples.

        Pods no longer listed are forgotten; of the older samples only the newest one
        before the oldest window is kept, as that window's start.
        """
        at = now.timestamp()
        keep_after = at - limits.window_seconds * limits.consecutive_bad_windows
        known = self._clusters.setdefault(cluster, {})
        listed = {pod.name for pod in pods}
        for name in list(known):
            if name not in listed:
                del known[name]
        for pod in pods:
            series = known.setdefault(pod.name, [])
            if pod.metrics is not None and (
                not series or at - series[-1].at >= MIN_SAMPLE_SPACING_SECONDS
            ):
                series.append(Sample(at, pod.revision, pod.metrics))
            older = [i for i, sample in enumerate(series) if sample.at <= keep_after]
            if len(older) > 1:
                del series[: older[-1]]
        return {name: tuple(series) for name, series in known.items() if series}

    def forget(self, cluster: tuple[str, str]) -> None:
        self._clusters.pop(cluster, None)


def delta(start: PodMetrics, end: PodMetrics) -> PodMetrics:
    """What happened between two scrapes of one pod. A counter lower than before means
    the container restarted and counted from zero again: its whole value is new."""
    changes: dict[str, float] = {}
    for name in COUNTERS:
        before, after = getattr(start, name), getattr(end, name)
        changes[name] = after - before if after >= before else after
    before_buckets = dict(start.latency_buckets)
    restarted = any(count < before_buckets.get(bound, 0.0) for bound, count in end.latency_buckets)
    buckets = tuple(
        (bound, count if restarted else count - before_buckets.get(bound, 0.0))
        for bound, count in end.latency_buckets
    )
    return PodMetrics(
        connections=end.connections,
        latency_buckets=buckets,
        engine_available=end.engine_available,
        **changes,
    )


def add(a: PodMetrics, b: PodMetrics) -> PodMetrics:
    """Two pods' deltas summed (histograms bucket by bucket)."""
    sums = {name: getattr(a, name) + getattr(b, name) for name in COUNTERS}
    buckets = dict(a.latency_buckets)
    for bound, count in b.latency_buckets:
        buckets[bound] = buckets.get(bound, 0.0) + count
    return PodMetrics(
        connections=a.connections + b.connections,
        latency_buckets=tuple(sorted(buckets.items())),
        **sums,
    )


def totals(
    samples: Samples, belongs: Callable[[int | None], bool], start: float, end: float
) -> WindowTotals:
    """The deltas of the pods whose revision ``belongs``, over [start, end], summed.

    A pod's window runs from its newest scrape at or before ``start`` (or its first one
    inside the window) to its newest scrape at or before ``end``.
    """
    result = WindowTotals()
    for series in samples.values():
        if not series or not belongs(series[-1].revision):
            continue
        before = [s for s in series if s.at <= start]
        inside = [s for s in series if start < s.at <= end]
        first = before[-1] if before else inside[0] if inside else None
        last = inside[-1] if inside else None
        if first is None or last is None or last.at <= first.at:
            continue
        result = dataclasses.replace(
            result,
            pods=result.pods + 1,
            pod_seconds=result.pod_seconds + (last.at - first.at),
            deltas=add(result.deltas, delta(first.metrics, last.metrics)),
        )
    return result


def windows(
    samples: Samples, revision: int, now: datetime, limits: HealthThresholds
) -> list[WindowResult]:
    """The release's latest ``consecutive_bad_windows`` windows ending now, oldest first,
    each judged beside the other revisions' pods over the same window."""
    seconds = limits.window_seconds
    end = now.timestamp()
    results = []
    for k in range(limits.consecutive_bad_windows, 0, -1):
        start, stop = end - k * seconds, end - (k - 1) * seconds
        new = totals(samples, lambda r: r == revision, start, stop)
        old = totals(samples, lambda r: r != revision, start, stop)
        results.append(judge_window(new, old, limits, seconds))
    return results
