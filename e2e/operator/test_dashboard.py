"""The operator dashboard on a real Prometheus scraping a real operator through a rollback.

The operator runs as a process under its RBAC with ``--metrics-port``; a RoomcastCluster
succeeds, then a broken release fails and is rolled back. Every panel query of
helm/roomcast/dashboards/operator-releases.json must then return finite, non-negative
samples, and the headline panels must tell that story.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from tests.helm.test_dashboards import load, panel_queries
from tests.processes import free_port
from tests.prometheus import PrometheusServer

from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.operator.harness import RUNNING, OperatorProcess, status
from e2e.operator.test_operator import GOOD, NAME, bad_release, create, patch


@pytest.mark.bed_only
def test_operator_panels_tell_the_rollback(
    cluster: Cluster, namespace: str, roomcast_operator: OperatorProcess, tmp_path: Path
) -> None:
    for other in list(RUNNING):  # one operator at a time; later tests restart the shared one
        other.stop()
    port = free_port()
    operator = OperatorProcess(
        roomcast_operator.kubeconfig,
        tmp_path / "operator.log",
        False,
        metrics_port=port,
        lease_namespace=roomcast_operator.lease_namespace,  # where its account may lead
    )
    operator.start()
    target = ("roomcast-operator", f"127.0.0.1:{port}", {"namespace": "roomcast-system"})
    try:
        prometheus = PrometheusServer([target], tmp_path).start()
    except BaseException:
        operator.stop()
        raise
    try:
        create(cluster, namespace, image=GOOD)
        patch(cluster.kube, namespace, bad_release())

        def rolled_back() -> Any:
            st = status(cluster.kube, NAME, namespace)
            releases = st.get("releases") or []
            settled = releases and releases[-1]["cause"] == "AutoRollback"
            return settled and releases[-1]["outcome"] == "Succeeded"

        eventually(rolled_back, 240, what="rollback release settled")

        def scraped() -> Any:
            found = prometheus.query("roomcast_operator_rollbacks_total")
            return found and prometheus.query("roomcast_operator_cluster_rolled_back == 1")

        eventually(scraped, 30, what="Prometheus saw the rollback")
        queries = panel_queries(load("operator-releases.json"))

        def every_panel() -> dict[str, list[tuple[dict[str, str], float]]] | None:
            """Each panel's samples once all have some (rates need two scrapes)."""
            found: dict[str, list[tuple[dict[str, str], float]]] = {}
            for title, expr in queries:
                samples = prometheus.query(expr)
                if not samples:
                    return None
                found.setdefault(title, []).extend(
                    (sample["metric"], float(sample["value"][1])) for sample in samples
                )
            return found

        seen = eventually(every_panel, 30, what="every operator panel has data")
        for title, samples in seen.items():
            for metric, value in samples:
                assert math.isfinite(value) and value >= 0, f"{title!r}: {metric} {value}"

        mine = {"cluster_namespace": namespace, "cluster": NAME}

        def panel(title: str, **labels: str) -> list[float]:
            """The panel's values for this test's cluster (or for series without the
            cluster's labels, such as totals over every cluster)."""
            want = {**mine, **labels}
            return [
                v
                for metric, v in seen[title]
                if all(metric.get(k, x) == x for k, x in want.items())
                and all(metric.get(k) == x for k, x in labels.items())
            ]

        assert panel("Revision running") == [1]
        assert panel("Last good revision") == [1]
        assert panel("Rolled back", reason="AutoRollback") == [1]
        assert 0 < min(panel("Since the last rollback", cause="AutoRollback")) < 600
        rollbacks = [v for m, v in seen["Rollbacks"] if m.get("cause") == "AutoRollback"]
        assert rollbacks and max(rollbacks) >= 1
        assert panel("Failed releases by reason", reason="ContainerRestarts") == [1]
        [time_to_rollback] = [v for _, v in seen["Time to roll back"]]
        assert 0 < time_to_rollback <= 3600
        writes = {m.get("resource") for m, _ in seen["Kubernetes API writes"]}
        assert {"deployments", "roomcastclusters/status", "events"} <= writes
    finally:
        prometheus.stop()
        operator.stop()
