"""The operator's own Prometheus metrics: what it did, and what it saw of each cluster.

Release counters are derived from one reconcile pass's status before and after
:func:`releases.decide`, so the state machine stays a pure function that knows nothing
of metrics, and nothing is counted twice when a pass is retried: a record counts once,
in the pass that started or finished it. Per-cluster gauges are replaced whole on every
pass and dropped with the cluster. The counters' label sets that are known in advance
(result, cause) start at 0 when a cluster is first seen, so that the first error or
rollback shows in ``increase()`` rather than appearing already counted. Exported metric
labels name the RoomcastCluster as
``cluster_namespace``/``cluster`` so they never collide with the scrape target's own
``namespace`` label.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import conditions

Obj = dict[str, Any]

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IN_PROGRESS = "Progressing"  # releases.IN_PROGRESS, without importing the state machine


@dataclass(frozen=True)
class ClusterSnapshot:
    """What the last pass saw of one RoomcastCluster."""

    replicas: int
    ready_replicas: int
    pods: int
    pods_draining: int
    connections: int
    current_revision: int
    last_good_revision: int
    release_in_progress: bool
    rolled_back: bool
    rolled_back_reason: str
    last_rollback: float | None
    last_rollback_cause: str = ""
    last_rollback_reason: str = ""


class OperatorMetrics:
    """The operator's registry; one per process (:data:`METRICS`), fresh ones in tests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        cluster = ["cluster_namespace", "cluster"]
        r = self.registry
        self.reconciles = Counter(
            "roomcast_operator_reconciles",
            "Reconcile passes by result (ok, error).",
            [*cluster, "result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "roomcast_operator_reconcile_duration_seconds",
            "Duration of one reconcile pass, reads and writes included.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.releases_started = Counter(
            "roomcast_operator_releases_started",
            "Releases started, by cause (Spec, Rollback, AutoRollback).",
            [*cluster, "cause"],
            registry=r,
        )
        self.releases_finished = Counter(
            "roomcast_operator_releases_finished",
            "Releases finished, by outcome (Succeeded, Failed, Superseded) and reason.",
            [*cluster, "outcome", "reason"],
            registry=r,
        )
        self.rollbacks = Counter(
            "roomcast_operator_rollbacks",
            "Rollbacks started, by cause (AutoRollback, Rollback); the failed releases' "
            'reasons are in roomcast_operator_releases_finished_total{outcome="Failed"}.',
            [*cluster, "cause"],
            registry=r,
        )
        self.judge_decisions = Counter(
            "roomcast_operator_judge_decisions",
            "The judge's verdict on the release in progress, one per pass, by phase "
            "(Progressing, Observing, Succeeded, Failed) and reason.",
            [*cluster, "phase", "reason"],
            registry=r,
        )
        self.time_to_rollback = Histogram(
            "roomcast_operator_time_to_rollback_seconds",
            "From a release's start to the automatic rollback off it.",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )
        self.api_writes = Counter(
            "roomcast_operator_api_writes",
            "Writes to the Kubernetes API by verb, resource and HTTP status code.",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.clusters: dict[tuple[str, str], ClusterSnapshot] = {}
        self.registry.register(_ClusterCollector(self.clusters))

    @contextmanager
    def reconcile(self, namespace: str, name: str) -> Iterator[None]:
        """Time one pass and count it as ok, or as error when it raises."""
        start = time.monotonic()
        for known in ("ok", "error"):
            self.reconciles.labels(namespace, name, known)
        result = "error"
        try:
            yield
            result = "ok"
        finally:
            self.reconcile_duration.observe(time.monotonic() - start)
            self.reconciles.labels(namespace, name, result).inc()

    def api_write(self, verb: str, path: str, code: int) -> None:
        """Count one request if it writes; ``path`` is an API path like /api/v1/.../pods/x."""
        if verb in WRITE_VERBS:
            self.api_writes.labels(verb, resource_of(path), str(code)).inc()

    def record_pass(
        self,
        namespace: str,
        name: str,
        before: Obj,
        after: Obj,
        *,
        pods_draining: int,
        pods: int,
    ) -> None:
        """Count what one pass decided (``before``/``after``: the status around decide())."""
        labels = (namespace, name)
        if labels not in self.clusters:
            for cause in ("Spec", "Rollback", "AutoRollback"):
                self.releases_started.labels(*labels, cause)
            for cause in ("Rollback", "AutoRollback"):
                self.rollbacks.labels(*labels, cause)
        old = {_key(r): r.get("outcome") for r in before.get("releases") or []}
        records: list[Obj] = after.get("releases") or []
        judged = False
        for index, record in enumerate(records):
            key = _key(record)
            outcome = record.get("outcome")
            if key not in old:
                cause = str(record.get("cause", "Spec"))
                self.releases_started.labels(*labels, cause).inc()
                if cause != "Spec":
                    self._count_rollback(labels, cause, records[:index], record)
            if outcome != IN_PROGRESS and old.get(key, IN_PROGRESS) == IN_PROGRESS:
                reason = str(record.get("reason", ""))
                self.releases_finished.labels(*labels, str(outcome), reason).inc()
                if outcome in ("Succeeded", "Failed"):
                    self.judge_decisions.labels(*labels, str(outcome), reason).inc()
                    judged = True
        last = records[-1] if records else None
        if last is not None and last.get("outcome") == IN_PROGRESS and not judged:
            phase = "Observing" if "available" in last else "Progressing"
            progressing = conditions.find(after.get("conditions") or [], conditions.PROGRESSING)
            reason = str((progressing or {}).get("reason", "Applying"))
            self.judge_decisions.labels(*labels, phase, reason).inc()

        rolled_back = conditions.find(after.get("conditions") or [], conditions.ROLLED_BACK)
        rollback_at = [i for i, r in enumerate(records) if r.get("cause") not in (None, "Spec")]
        newest = records[rollback_at[-1]] if rollback_at else None
        self.clusters[labels] = ClusterSnapshot(
            replicas=int(after.get("replicas") or 0),
            ready_replicas=int(after.get("readyReplicas") or 0),
            pods=pods,
            pods_draining=pods_draining,
            connections=int(after.get("connections") or 0),
            current_revision=int(after.get("currentRevision") or 0),
            last_good_revision=int(after.get("lastGoodRevision") or 0),
            release_in_progress=last is not None and last.get("outcome") == IN_PROGRESS,
            rolled_back=bool(rolled_back and rolled_back.get("status") == "True"),
            rolled_back_reason=str((rolled_back or {}).get("reason", "RunningSpec")),
            last_rollback=_timestamp(newest.get("started")) if newest else None,
            last_rollback_cause=str(newest.get("cause")) if newest else "",
            last_rollback_reason=_rollback_reason(
                str(newest.get("cause")), records[: rollback_at[-1]]
            )
            if newest
            else "",
        )

    def forget(self, namespace: str, name: str) -> None:
        """The cluster is gone: stop exporting its gauges."""
        self.clusters.pop((namespace, name), None)

    def _count_rollback(
        self, labels: tuple[str, str], cause: str, earlier: list[Obj], record: Obj
    ) -> None:
        failed = earlier[-1] if earlier and earlier[-1].get("outcome") == "Failed" else None
        if cause == "AutoRollback" and failed is not None:
            started = _timestamp(failed.get("started"))
            finished = _timestamp(record.get("started"))
            if started is not None and finished is not None:
                self.time_to_rollback.observe(max(0.0, finished - started))
        self.rollbacks.labels(*labels, cause).inc()


def resource_of(path: str) -> str:
    """The resource plural of an API path, with a subresource: ``pods``, ``x/status``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    # /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]] or /apis/GROUP/VERSION[...]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:] if len(rest) > 2 else ["namespaces"]
    if not rest:
        return "unknown"
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")


def serve(port: int, address: str = "0.0.0.0", metrics: OperatorMetrics | None = None) -> None:
    """Serve ``/metrics`` from a background thread (the kopf loop stays untouched)."""
    start_http_server(port, address, registry=(metrics or METRICS).registry)


def _rollback_reason(cause: str, earlier: list[Obj]) -> str:
    """Why a rollback happened: the failed release's reason, or Requested (manual)."""
    if cause == "AutoRollback" and earlier and earlier[-1].get("outcome") == "Failed":
        return str(earlier[-1].get("reason", ""))
    return "Requested"


def _key(record: Obj) -> tuple[object, object]:
    return record.get("revision"), record.get("started")


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _ClusterCollector(Collector):
    """Per-cluster gauges from the last pass's snapshots."""

    def __init__(self, clusters: dict[tuple[str, str], ClusterSnapshot]) -> None:
        self._clusters = clusters

    def collect(self) -> Iterator[Metric]:
        labels = ["cluster_namespace", "cluster"]
        families = {
            "replicas": GaugeMetricFamily(
                "roomcast_operator_cluster_replicas", "Pods the Deployment wants.", labels=labels
            ),
            "ready_replicas": GaugeMetricFamily(
                "roomcast_operator_cluster_ready_replicas", "Ready pods.", labels=labels
            ),
            "pods": GaugeMetricFamily(
                "roomcast_operator_cluster_pods", "Pods of the cluster, any state.", labels=labels
            ),
            "pods_draining": GaugeMetricFamily(
                "roomcast_operator_cluster_pods_draining",
                "Pods being deleted, draining their connections.",
                labels=labels,
            ),
            "connections": GaugeMetricFamily(
                "roomcast_operator_cluster_connections",
                "Connections on the pods the operator scraped.",
                labels=labels,
            ),
            "current_revision": GaugeMetricFamily(
                "roomcast_operator_cluster_current_revision",
                "The revision the Deployment runs.",
                labels=labels,
            ),
            "last_good_revision": GaugeMetricFamily(
                "roomcast_operator_cluster_last_good_revision",
                "The newest revision that passed its observation.",
                labels=labels,
            ),
            "release_in_progress": GaugeMetricFamily(
                "roomcast_operator_cluster_release_in_progress",
                "1 while a release is rolling out or under observation.",
                labels=labels,
            ),
        }
        rolled_back = GaugeMetricFamily(
            "roomcast_operator_cluster_rolled_back",
            "1 while the cluster runs an older revision than its spec's, by the RolledBack "
            "condition's reason (AutoRollback, ManualRollback; RunningSpec at 0).",
            labels=[*labels, "reason"],
        )
        last_rollback = GaugeMetricFamily(
            "roomcast_operator_cluster_last_rollback_timestamp_seconds",
            "When the newest rollback in the release history started, with its cause "
            "(AutoRollback, Rollback) and reason (the failed release's, or Requested).",
            labels=[*labels, "cause", "reason"],
        )
        for (namespace, name), snap in sorted(self._clusters.items()):
            for field, family in families.items():
                family.add_metric([namespace, name], float(getattr(snap, field)))
            rolled_back.add_metric(
                [namespace, name, snap.rolled_back_reason], float(snap.rolled_back)
            )
            if snap.last_rollback is not None:
                last_rollback.add_metric(
                    [namespace, name, snap.last_rollback_cause, snap.last_rollback_reason],
                    snap.last_rollback,
                )
        yield from families.values()
        yield rolled_back
        yield last_rollback


METRICS = OperatorMetrics()
"""The process's metrics, served by ``roomcast-operator --metrics-port``."""
