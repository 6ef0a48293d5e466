"""The operator's metrics: counted from the real state machine's passes, served as text."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roomcast_operator import render
from roomcast_operator.health import PodState
from roomcast_operator.metrics import OperatorMetrics, resource_of, serve
from roomcast_operator.releases import Revision, decide
from roomcast_operator.spec import ClusterSpec

from .helpers import make_spec, observed_pass

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
BAD_IMAGE = "ghcr.io/roomcast/roomcast:1.1.0"


class Passes:
    """Runs decide() pass after pass the way the reconciler does, recording each one."""

    def __init__(self, spec: ClusterSpec, metrics: OperatorMetrics) -> None:
        self.spec = spec
        self.metrics = metrics
        self.status: dict[str, Any] = {}
        self.revisions: list[Revision] = []
        self.now = T0

    def step(
        self,
        *,
        running: int | None = None,
        complete: bool = True,
        pods: list[PodState] | None = None,
        seconds: float = 1,
    ) -> None:
        self.now += timedelta(seconds=seconds)
        observed = observed_pass(
            self.revisions, self.status, running=running, complete=complete, pods=pods
        )
        plan = decide(self.spec, 1, self.status, render.release_of(self.spec), observed, self.now)
        if plan.new_revision is not None:
            self.revisions.append(plan.new_revision)
        self.metrics.record_pass(
            "prod",
            "chat",
            self.status,
            plan.status,
            pods=len(observed.pods),
            pods_draining=sum(p.terminating for p in observed.pods),
        )
        self.status = plan.status


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_a_failed_release_and_its_automatic_rollback_are_counted_once() -> None:
    metrics = OperatorMetrics()
    cluster = Passes(make_spec(), metrics)
    cluster.step(running=0)
    cluster.step()
    cluster.step(seconds=cluster.spec.rollout.health.observation_seconds)
    ids = {"cluster_namespace": "prod", "cluster": "chat"}
    assert value(metrics, "roomcast_operator_releases_started_total", **ids, cause="Spec") == 1
    assert (
        value(
            metrics,
            "roomcast_operator_releases_finished_total",
            **ids,
            outcome="Succeeded",
            reason="ReleaseHealthy",
        )
        == 1
    )

    cluster.spec = make_spec(image=BAD_IMAGE)
    cluster.step(running=1)
    crash = [PodState("chat-new", 2, ready=False, restarts=3, age_seconds=5)]
    cluster.step(running=2, complete=False, pods=crash, seconds=20)
    # Passes after the decision change nothing in the counters.
    cluster.step(running=1)
    cluster.step(running=1)

    assert value(metrics, "roomcast_operator_releases_started_total", **ids, cause="Spec") == 2
    assert (
        value(metrics, "roomcast_operator_releases_started_total", **ids, cause="AutoRollback") == 1
    )
    assert value(metrics, "roomcast_operator_rollbacks_total", **ids, cause="AutoRollback") == 1
    assert value(metrics, "roomcast_operator_rollbacks_total", **ids, cause="Rollback") == 0
    assert (
        value(
            metrics,
            "roomcast_operator_releases_finished_total",
            **ids,
            outcome="Failed",
            reason="ContainerRestarts",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "roomcast_operator_judge_decisions_total",
            **ids,
            phase="Failed",
            reason="ContainerRestarts",
        )
        == 1
    )
    # The failed release started 20 s before the rollback off it.
    assert value(metrics, "roomcast_operator_time_to_rollback_seconds_count") == 1
    assert value(metrics, "roomcast_operator_time_to_rollback_seconds_sum") == 20
    assert value(metrics, "roomcast_operator_cluster_current_revision", **ids) == 1
    assert value(metrics, "roomcast_operator_cluster_last_good_revision", **ids) == 1
    assert (
        value(metrics, "roomcast_operator_cluster_rolled_back", **ids, reason="AutoRollback") == 1
    )
    last_rollback = value(
        metrics,
        "roomcast_operator_cluster_last_rollback_timestamp_seconds",
        **ids,
        cause="AutoRollback",
        reason="ContainerRestarts",
    )
    assert last_rollback == (T0 + timedelta(seconds=1 + 1 + 30 + 1 + 20)).timestamp()


def test_known_label_sets_start_at_zero() -> None:
    """So that the first error or rollback of a cluster shows in increase()."""
    metrics = OperatorMetrics()
    Passes(make_spec(), metrics).step(running=0)
    ids = {"cluster_namespace": "prod", "cluster": "chat"}
    for cause in ("Rollback", "AutoRollback"):
        assert (
            metrics.registry.get_sample_value(
                "roomcast_operator_rollbacks_total", {**ids, "cause": cause}
            )
            == 0
        )
    with metrics.reconcile("prod", "chat"):
        pass
    assert (
        metrics.registry.get_sample_value(
            "roomcast_operator_reconciles_total", {**ids, "result": "error"}
        )
        == 0
    )


def test_the_judge_is_counted_every_pass_a_release_is_in_progress() -> None:
    metrics = OperatorMetrics()
    cluster = Passes(make_spec(), metrics)
    cluster.step(running=0)
    cluster.step()
    cluster.step()
    ids = {"cluster_namespace": "prod", "cluster": "chat"}
    assert (
        value(
            metrics,
            "roomcast_operator_judge_decisions_total",
            **ids,
            phase="Progressing",
            reason="RollingUpdate",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "roomcast_operator_judge_decisions_total",
            **ids,
            phase="Observing",
            reason="ObservingRelease",
        )
        == 2
    )
    assert value(metrics, "roomcast_operator_cluster_release_in_progress", **ids) == 1
    assert value(metrics, "roomcast_operator_cluster_replicas", **ids) == 2


def test_draining_pods_and_forgetting_a_cluster() -> None:
    metrics = OperatorMetrics()
    cluster = Passes(make_spec(), metrics)
    pods = [
        PodState("chat-a", 1, ready=True, restarts=0, age_seconds=50),
        PodState("chat-b", 1, ready=True, restarts=0, age_seconds=50, terminating=True),
    ]
    cluster.step(running=0, pods=pods)
    ids = {"cluster_namespace": "prod", "cluster": "chat"}
    assert value(metrics, "roomcast_operator_cluster_pods", **ids) == 2
    assert value(metrics, "roomcast_operator_cluster_pods_draining", **ids) == 1
    metrics.forget("prod", "chat")
    assert metrics.registry.get_sample_value("roomcast_operator_cluster_pods", ids) is None


def test_a_pass_that_raises_counts_as_an_error() -> None:
    metrics = OperatorMetrics()
    with metrics.reconcile("prod", "chat"):
        pass
    with pytest.raises(RuntimeError), metrics.reconcile("prod", "chat"):
        raise RuntimeError("API server gone")
    ids = {"cluster_namespace": "prod", "cluster": "chat"}
    assert value(metrics, "roomcast_operator_reconciles_total", **ids, result="ok") == 1
    assert value(metrics, "roomcast_operator_reconciles_total", **ids, result="error") == 1
    assert value(metrics, "roomcast_operator_reconcile_duration_seconds_count") == 2


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/prod/pods/chat-a", "pods"),
        ("/api/v1/namespaces/prod/events", "events"),
        ("/apis/apps/v1/namespaces/prod/deployments/chat", "deployments"),
        (
            "/apis/roomcast.io/v1alpha1/namespaces/prod/roomcastclusters/chat/status",
            "roomcastclusters/status",
        ),
        ("/api/v1/namespaces/prod", "namespaces"),
        ("/apis/roomcast.io/v1alpha1/roomcastclusters", "roomcastclusters"),
    ],
)
def test_api_paths_name_their_resource(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def test_only_writes_are_counted() -> None:
    metrics = OperatorMetrics()
    metrics.api_write("GET", "/api/v1/namespaces/prod/pods", 200)
    metrics.api_write("PATCH", "/api/v1/namespaces/prod/pods/chat-a", 200)
    metrics.api_write("POST", "/api/v1/namespaces/prod/events", 403)
    assert (
        value(
            metrics, "roomcast_operator_api_writes_total", verb="PATCH", resource="pods", code="200"
        )
        == 1
    )
    assert (
        value(
            metrics,
            "roomcast_operator_api_writes_total",
            verb="POST",
            resource="events",
            code="403",
        )
        == 1
    )
    assert (
        value(
            metrics, "roomcast_operator_api_writes_total", verb="GET", resource="pods", code="200"
        )
        == 0
    )


def test_metrics_are_served_over_http() -> None:
    metrics = OperatorMetrics()
    metrics.api_write("PATCH", "/api/v1/namespaces/prod/pods/chat-a", 200)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(port, "127.0.0.1", metrics)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'roomcast_operator_api_writes_total{code="200",resource="pods",verb="PATCH"} 1.0' in text
