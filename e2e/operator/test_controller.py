"""The operator as a quiet, safe controller on a real API server: it leaves the replica
count to the autoscaler, writes nothing while a cluster is at rest, acts as one when two
processes run, and sees optional APIs installed after it started.

Writes are counted in the bed API server's audit log (``e2e.audit``), by the operator's
ServiceAccount, so nothing else on the bed blurs the count.
"""

from __future__ import annotations

import collections
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from e2e.audit import summary, writes_by
from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.kube import Kube, Obj
from e2e.operator.harness import (
    OPERATOR_NAMESPACE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    events,
    leader_log_line,
    roomcast_cluster,
    serving,
    status,
)
from e2e.operator.test_operator import GOOD, NAME, NEXT, QUICK, bad_release, patch, wait_succeeded

AUTOSCALED = {"metricSource": "prometheus-adapter", "targetConnectionsPerPod": 1000}


def replicas(kube: Kube, namespace: str) -> int:
    found: int = kube.get("deployment", NAME, namespace)["spec"]["replicas"]
    return found


def replica_owners(kube: Kube, namespace: str) -> set[str]:
    """Managers whose field set holds the Deployment's spec.replicas."""
    deployment = kube.run(
        "get", "deployment", NAME, "-n", namespace, "-o", "json", "--show-managed-fields"
    ).stdout
    owners = set()
    for entry in json.loads(deployment)["metadata"].get("managedFields") or []:
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            owners.add(f"{entry['manager']}/{entry.get('subresource', '')}".rstrip("/"))
    return owners


def steady(kube: Kube, namespace: str, expected: int, seconds: float) -> None:
    """The Deployment keeps ``expected`` replicas for ``seconds`` of reconcile passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert replicas(kube, namespace) == expected
        time.sleep(0.25)


@pytest.mark.bed_only
def test_autoscaler_decisions_survive_reconcile_passes(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    kube = cluster.kube
    kube.create(
        roomcast_cluster(NAME, minReplicas=2, maxReplicas=6, autoscaling=AUTOSCALED, **QUICK),
        namespace,
    )
    wait_succeeded(cluster, namespace, 1, GOOD)
    # Created at minReplicas, and the field already handed over: the operator's own
    # applies no longer carry it.
    assert replicas(kube, namespace) == 2
    eventually(
        lambda: "roomcast-operator" not in replica_owners(kube, namespace),
        30,
        what="replicas handed over",
    )

    # The HPA controller's write: the scale subresource. The bed has no metrics API, so
    # the real HPA leaves a count inside [min, max] alone.
    kube.run("scale", "deployment", NAME, "-n", namespace, "--replicas=5")
    # Passes from resyncs (every 2 s) and from events: a spec change that renders the
    # same children, and the pods the scale-up adds.
    kube.run("annotate", "roomcastcluster", NAME, "-n", namespace, "touched=1")
    steady(kube, namespace, 5, 10)
    assert "roomcast-operator" not in replica_owners(kube, namespace)

    # A decision of the real HPA controller: minReplicas above the count makes it scale.
    patch(kube, namespace, {"minReplicas": 6})
    eventually(lambda: replicas(kube, namespace) == 6, 90, what="the HPA raised the count")
    hpa = kube.get("horizontalpodautoscaler", NAME, namespace)["spec"]
    assert hpa["minReplicas"] == 6
    steady(kube, namespace, 6, 6)

    # Autoscaling off: the operator owns the count again and applies minReplicas.
    patch(kube, namespace, {"autoscaling": {"metricSource": "none"}, "minReplicas": 3})
    eventually(lambda: replicas(kube, namespace) == 3, 30, what="minReplicas applied")
    assert "roomcast-operator" in replica_owners(kube, namespace)


@pytest.mark.bed_only
def test_a_cluster_at_rest_costs_no_writes(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess, record_property: Any
) -> None:
    """Resync passes every 2 s read the cluster; none of them writes anything."""
    assert cluster.bed is not None
    kube = cluster.kube
    kube.create(roomcast_cluster(NAME, autoscaling=AUTOSCALED, **QUICK), namespace)
    wait_succeeded(cluster, namespace, 1, GOOD)
    time.sleep(3)  # the pass that follows success settles the conditions
    since = datetime.now(UTC)
    time.sleep(20)
    mine = [
        w
        for w in writes_by(cluster.bed, OPERATOR_NAMESPACE, SERVICE_ACCOUNT, since)
        if w.namespace == namespace
    ]
    leases = [
        w
        for w in writes_by(cluster.bed, OPERATOR_NAMESPACE, SERVICE_ACCOUNT, since)
        if w.resource == "leases"
    ]
    record_property("writes_at_rest_20s", len(mine))
    record_property("lease_renewals_20s", len(leases))
    print(f"\n20 s at rest: {summary(mine)}; lease: {summary(leases)}")
    assert not mine, summary(mine)


def _transitions(kube: Kube, namespace: str) -> collections.Counter[str]:
    return collections.Counter(e["reason"] for e in events(kube, NAME, namespace))


@pytest.mark.bed_only
def test_two_operators_keep_one_history(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """A second process on the same Lease stands by; when the leader dies it takes over,
    and every transition still has one record and one event."""
    kube = cluster.kube
    second = OperatorProcess(
        operator_running.kubeconfig,
        operator_running.log.with_name("operator-2.log"),
        scrape_metrics=False,
        lease_namespace=OPERATOR_NAMESPACE,
    )
    second.start()
    try:
        kube.create(roomcast_cluster(NAME, **QUICK), namespace)
        wait_succeeded(cluster, namespace, 1, GOOD)
        patch(kube, namespace, {"image": NEXT})
        wait_succeeded(cluster, namespace, 2, NEXT)
        time.sleep(4)  # two more resyncs: a second actor would have written by now
        st = status(kube, NAME, namespace)
        assert [(r["revision"], r["outcome"]) for r in st["releases"]] == [
            (1, "Succeeded"),
            (2, "Succeeded"),
        ]
        assert len(kube.items("controllerrevisions", namespace)) == 2
        seen = _transitions(kube, namespace)
        assert seen["RolloutStarted"] == 2 and seen["ReleaseSucceeded"] == 2, seen
        leaders = [p for p in (operator_running, second) if leader_log_line(p)]
        assert len(leaders) == 1, "exactly one process says it leads"
        lease = kube.get("lease", "roomcast-operator", OPERATOR_NAMESPACE)["spec"]

        # The leader dies without releasing the Lease; the standby waits it out.
        leader, standby = (
            leaders[0],
            (second if leaders[0] is operator_running else operator_running),
        )
        leader.kill()
        patch(kube, namespace, bad_release())
        eventually(
            lambda: (
                kube.get("lease", "roomcast-operator", OPERATOR_NAMESPACE)["spec"]["holderIdentity"]
                != lease["holderIdentity"]
            ),
            60,
            what="the standby took the Lease",
        )
        assert leader_log_line(standby)
        st = eventually(
            lambda: (
                (s := status(kube, NAME, namespace)).get("currentRevision") == 2
                and len(s["releases"]) == 4
                and s["releases"][-1]["outcome"] == "Succeeded"
                and s
            ),
            cluster.timeout_seconds + 60,
            what="bad release rolled back by the new leader",
        )
        assert [(r["revision"], r["cause"], r["outcome"]) for r in st["releases"]] == [
            (1, "Spec", "Succeeded"),
            (2, "Spec", "Succeeded"),
            (3, "Spec", "Failed"),
            (2, "AutoRollback", "Succeeded"),
        ]
        assert serving(kube, NAME, namespace, NEXT)
        seen = _transitions(kube, namespace)
        assert seen["RolloutStarted"] == 3 and seen["ReleaseFailed"] == 1, seen
        assert seen["AutoRollback"] == 1 and seen["ReleaseSucceeded"] == 3, seen
        renewed = kube.get("lease", "roomcast-operator", OPERATOR_NAMESPACE)["spec"]
        assert renewed["leaseTransitions"] > lease.get("leaseTransitions", 0)
    finally:
        second.stop()
        operator_running.start()


KEDA_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "names": {
            "kind": "ScaledObject",
            "listKind": "ScaledObjectList",
            "plural": "scaledobjects",
            "singular": "scaledobject",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.mark.bed_only
def test_keda_installed_later_is_used(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """The ScaledObject API appears after the operator started: within the discovery
    interval (2 s here) the cluster gets its ScaledObject and the count is handed over."""
    kube = cluster.kube
    keda = {
        "metricSource": "keda",
        "prometheusServerAddress": "http://prometheus.monitoring:9090",
    }
    kube.create(
        roomcast_cluster(NAME, minReplicas=2, maxReplicas=4, autoscaling=keda, **QUICK), namespace
    )
    wait_succeeded(cluster, namespace, 1, GOOD)
    assert "roomcast-operator" in replica_owners(kube, namespace), "no KEDA: replicas are ours"
    kube.run("apply", "-f", "-", stdin=json.dumps(KEDA_CRD))
    try:
        kube.run(
            "wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=30s"
        )
        found = eventually(
            lambda: kube.items("scaledobjects.keda.sh", namespace) or None,
            60,
            what="ScaledObject created",
        )
        query = found[0]["spec"]["triggers"][0]["metadata"]["query"]
        assert query.startswith("sum(max by (pod)")
        eventually(
            lambda: "roomcast-operator" not in replica_owners(kube, namespace),
            30,
            what="replicas handed to the autoscaler",
        )
        assert replicas(kube, namespace) == 2
    finally:
        kube.run("delete", "crd", "scaledobjects.keda.sh", "--wait=false")


@pytest.mark.bed_only
def test_leader_hands_over_on_shutdown_and_exits_when_its_lease_is_taken(
    cluster: Cluster, operator_running: OperatorProcess
) -> None:
    """On a Lease of their own: a stopped leader releases the Lease, so the standby takes
    over well within the lease duration (12 s here); a leader that finds the Lease held by
    someone else stops acting and exits with status 1."""
    kube = cluster.kube
    lease = f"roomcast-operator-{int(time.time())}"

    def process(suffix: str) -> OperatorProcess:
        return OperatorProcess(
            operator_running.kubeconfig,
            operator_running.log.with_name(f"operator-{lease}-{suffix}.log"),
            scrape_metrics=False,
            lease_namespace=OPERATOR_NAMESPACE,
            extra_env={"ROOMCAST_OPERATOR_LEASE_NAME": lease},
        )

    first, second = process("a"), process("b")
    try:
        first.start()
        eventually(lambda: leader_log_line(first), 30, what="first process leads")
        second.start()
        time.sleep(4)  # two renewals: the standby has seen the Lease held
        assert not leader_log_line(second)
        first.stop()
        stopped = time.monotonic()
        eventually(lambda: leader_log_line(second), 30, what="second process leads")
        assert time.monotonic() - stopped < 8, "took over without waiting out the Lease"

        kube.run(
            "patch", "lease", lease, "-n", OPERATOR_NAMESPACE, "--type=merge",
            "-p", json.dumps({"spec": {"holderIdentity": "intruder"}}),
        )  # fmt: skip
        eventually(lambda: not second.running(), 30, what="the deposed leader exited")
        assert second.process is not None and second.process.returncode == 1
        assert "exiting: leadership lost" in second.tail()
    finally:
        first.stop()
        second.stop()
        kube.run("delete", "lease", lease, "-n", OPERATOR_NAMESPACE, check=False)
