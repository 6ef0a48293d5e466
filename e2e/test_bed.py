"""Smoke tests of the cluster itself: what later e2e suites rely on.

They run against the local bed and, unchanged, against kind (``bed_only`` ones skip).
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.bed import FAIL_ANNOTATION, NODE_LABEL, Bed, eventually, processes_mentioning
from e2e.cluster import Cluster
from e2e.kube import KubectlError, Obj, condition

IMAGE = "registry.k8s.io/pause:3.10"
# On the bed the annotation keeps kwok from ever marking the pod Ready; on kind the image
# cannot be pulled. Either way the rollout stalls, as a broken release would.
BROKEN_IMAGE = "roomcast.invalid/never-ready:0"


def deployment(
    name: str,
    *,
    revision: str = "1",
    broken: bool = False,
    replicas: int = 3,
    progress_deadline_seconds: int = 600,
) -> Obj:
    annotations = {"roomcast.io/revision": revision}
    if broken:
        annotations[FAIL_ANNOTATION] = "true"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {
                    "containers": [{"name": "main", "image": BROKEN_IMAGE if broken else IMAGE}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def rolled_out(cluster: Cluster, namespace: str, name: str, replicas: int = 3) -> Obj | None:
    """The Deployment if its newest template is fully rolled out and available."""
    obj = cluster.kube.get("deployment", name, namespace)
    status: dict[str, Any] = obj.get("status", {})
    done = (
        status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("replicas") == replicas
        and status.get("availableReplicas") == replicas
        and (condition(obj, "Available") or {}).get("status") == "True"
    )
    return obj if done else None


def test_nodes_are_ready(cluster: Cluster) -> None:
    selector = f"{NODE_LABEL}=kwok" if cluster.is_bed else ""
    minimum = 3 if cluster.is_bed else 1

    def ready_nodes() -> list[str] | None:
        nodes = cluster.kube.items("nodes", selector=selector)
        ready = [
            n["metadata"]["name"]
            for n in nodes
            if (condition(n, "Ready") or {}).get("status") == "True"
        ]
        return ready if len(ready) >= minimum else None

    assert len(eventually(ready_nodes, cluster.timeout_seconds, what="nodes Ready")) >= minimum


def test_server_reports_a_stamped_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kube.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert int(version["serverVersion"]["minor"].rstrip("+")) >= 33
    if cluster.is_bed:
        assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]


def test_deployment_becomes_available(cluster: Cluster, namespace: str) -> None:
    cluster.kube.apply(deployment("web"), namespace)
    obj = eventually(
        lambda: rolled_out(cluster, namespace, "web"),
        cluster.timeout_seconds,
        what="3-replica Deployment Available",
    )
    assert obj["status"]["readyReplicas"] == 3
    pods = cluster.kube.items("pods", namespace, selector="app=web")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert all(p["spec"].get("nodeName") for p in pods), "the scheduler bound every pod"
    # The ServiceAccount admission plugin ran: the token volume was injected.
    volumes = [v["name"] for v in pods[0]["spec"].get("volumes", [])]
    assert any(v.startswith("kube-api-access-") for v in volumes), volumes


def test_rolling_update_completes(cluster: Cluster, namespace: str) -> None:
    cluster.kube.apply(deployment("web"), namespace)
    eventually(lambda: rolled_out(cluster, namespace, "web"), cluster.timeout_seconds)

    cluster.kube.apply(deployment("web", revision="2"), namespace)
    cluster.kube.run(
        "rollout", "status", "deployment/web", "-n", namespace,
        f"--timeout={cluster.timeout_seconds:.0f}s",
        timeout_seconds=cluster.timeout_seconds + 30,
    )  # fmt: skip
    eventually(lambda: rolled_out(cluster, namespace, "web"), cluster.timeout_seconds)

    def only_new_pods() -> list[Obj] | None:
        pods = [
            p
            for p in cluster.kube.items("pods", namespace, selector="app=web")
            if "deletionTimestamp" not in p["metadata"]
        ]
        revisions = {p["metadata"]["annotations"]["roomcast.io/revision"] for p in pods}
        return pods if len(pods) == 3 and revisions == {"2"} else None

    eventually(only_new_pods, cluster.timeout_seconds, what="old pods replaced")
    replica_sets = cluster.kube.items("replicasets", namespace, selector="app=web")
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 3]


def test_broken_release_reports_progress_deadline_exceeded(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kube.apply(deployment("web", progress_deadline_seconds=10), namespace)
    eventually(lambda: rolled_out(cluster, namespace, "web"), cluster.timeout_seconds)

    cluster.kube.apply(
        deployment("web", revision="2", broken=True, progress_deadline_seconds=10), namespace
    )

    def stalled() -> Obj | None:
        obj = cluster.kube.get("deployment", "web", namespace)
        progressing = condition(obj, "Progressing") or {}
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return obj
        return None

    obj = eventually(stalled, cluster.timeout_seconds + 10, what="ProgressDeadlineExceeded")
    assert (condition(obj, "Progressing") or {})["status"] == "False"
    # maxUnavailable 0: the old pods keep serving while the new one never becomes Ready.
    assert (condition(obj, "Available") or {})["status"] == "True"
    assert obj["status"]["availableReplicas"] == 3
    assert obj["status"].get("updatedReplicas") == 1

    if cluster.is_bed:
        new_pod = next(
            p
            for p in cluster.kube.items("pods", namespace, selector="app=web")
            if p["metadata"]["annotations"].get(FAIL_ANNOTATION) == "true"
        )
        assert new_pod["status"]["phase"] == "Running"
        assert (condition(new_pod, "Ready") or {})["status"] == "False"

    rollout = cluster.kube.run(
        "rollout", "status", "deployment/web", "-n", namespace, "--timeout=5s", check=False
    )
    assert rollout.returncode != 0
    assert "exceeded its progress deadline" in rollout.stderr


def test_service_account_without_role_is_denied(cluster: Cluster, namespace: str) -> None:
    kube = cluster.kube
    kube.run("create", "serviceaccount", "nobody", "-n", namespace)
    subject = f"system:serviceaccount:{namespace}:nobody"

    can_i = kube.run(
        "auth", "can-i", "list", "pods", "-n", namespace, f"--as={subject}", check=False
    )
    assert can_i.stdout.strip() == "no"

    # A real token, signed with the bed's service-account key, is authenticated and denied.
    token = kube.run("create", "token", "nobody", "-n", namespace).stdout.strip()
    as_sa = kube.as_token(token)
    whoami = json.loads(as_sa.run("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == subject
    with pytest.raises(KubectlError) as denied:
        as_sa.run("get", "pods", "-n", namespace)
    assert "Forbidden" in denied.value.stderr

    kube.run("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
    kube.run(
        "create", "rolebinding", "nobody-reads-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody", "-n", namespace,
    )  # fmt: skip
    eventually(
        lambda: as_sa.run("get", "pods", "-n", namespace).returncode == 0,
        cluster.timeout_seconds,
        what="access after the RoleBinding",
    )


CRD_GROUP = "e2e.roomcast.io"


@pytest.fixture
def probe_crd(cluster: Cluster) -> Iterator[str]:
    suffix = secrets.token_hex(3)
    plural = f"probes{suffix}"
    name = f"{plural}.{CRD_GROUP}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": f"probe{suffix}", "kind": f"Probe{suffix}"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "replicas": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": 10,
                                        },
                                        "mode": {"type": "string", "enum": ["fast", "safe"]},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.kube.create(crd)
    try:
        yield name
    finally:
        cluster.kube.delete("crd", name, wait=False)


def test_crd_with_structural_schema_is_served_and_validates(
    cluster: Cluster, namespace: str, probe_crd: str
) -> None:
    kube = cluster.kube

    def established() -> Obj | None:
        crd = kube.get("crd", probe_crd)
        ok = (condition(crd, "Established") or {}).get("status") == "True"
        return crd if ok else None

    crd = eventually(established, cluster.timeout_seconds, what="CRD Established")
    assert condition(crd, "NonStructuralSchema") is None
    kind = crd["spec"]["names"]["kind"]
    api_version = f"{CRD_GROUP}/v1alpha1"

    def probe(name: str, spec: dict[str, Any]) -> Obj:
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}

    # Discovery may lag Established by a moment.
    eventually(
        lambda: kube.create(probe("good", {"replicas": 3, "mode": "safe"}), namespace),
        cluster.timeout_seconds,
        what="valid custom object accepted",
    )
    assert kube.get(probe_crd, "good", namespace)["spec"] == {"replicas": 3, "mode": "safe"}

    # Unknown fields: rejected under strict field validation, pruned when it is off.
    extra = probe("extra", {"replicas": 2, "colour": "red"})
    strict = kube.create(extra, namespace, check=False)
    assert strict.returncode != 0 and 'unknown field "spec.colour"' in strict.stderr
    kube.create(extra, namespace, validate="ignore")
    assert kube.get(probe_crd, "extra", namespace)["spec"] == {"replicas": 2}

    for name, spec, message in (
        ("wrong-type", {"replicas": "three"}, "spec.replicas"),
        ("too-many", {"replicas": 11}, "spec.replicas"),
        ("no-replicas", {"mode": "fast"}, "spec.replicas: Required value"),
        ("bad-enum", {"replicas": 1, "mode": "reckless"}, "spec.mode"),
    ):
        result = kube.create(probe(name, spec), namespace, check=False)
        assert result.returncode != 0, f"{name} was accepted"
        assert "is invalid" in result.stderr and message in result.stderr, result.stderr


@pytest.mark.bed_only
def test_teardown_leaves_no_process_behind(cluster: Cluster, tmp_path: Path) -> None:
    """A second, throwaway bed: up, then down, then nothing of it is left running."""
    # Without the real node: the session bed has it, and a host runs one at a time.
    bed = Bed(tmp_path / "bed", nodes=1, real=False)
    try:
        bed.up()
        state = bed.state()
        assert state is not None
        assert all(record.alive() for record in state.processes)
        assert len(processes_mentioning(state.run_dir)) == len(state.processes)
    finally:
        killed = bed.down()
    assert killed == [], f"ignored SIGTERM: {killed}"
    assert not any(record.alive() for record in state.processes)
    assert processes_mentioning(state.run_dir) == []
    assert not Path(state.run_dir).exists()
    assert not bed.kubeconfig.exists()
    assert bed.state() is None
    assert bed.down() == [], "down is idempotent"
    shutil.rmtree(tmp_path / "bed", ignore_errors=True)

    assert cluster.bed is not None and cluster.bed.running(), "the session bed is untouched"
