"""roomcast-operator end to end: a real API server, the operator as a process under its RBAC.

Pods run on kwok nodes: they become Ready unless their template carries the bed's fail
annotation, which is how a broken release is shipped here. The images are placeholders,
so the rollout tests are ``bed_only``; the schema tests run on any cluster.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from e2e.bed import FAIL_ANNOTATION, KWOK_NODE_ANNOTATION, NODE_LABEL, eventually
from e2e.cluster import Cluster
from e2e.kube import Kube, KubectlError, Obj
from e2e.operator.harness import (
    OperatorProcess,
    condition,
    events,
    roomcast_cluster,
    serving,
    status,
)
from roomcast_operator.render import REVISION_ANNOTATION

NAME = "chat"
GOOD = "ghcr.io/roomcast/roomcast:1.0.0"
NEXT = "ghcr.io/roomcast/roomcast:1.1.0"
BAD = "roomcast.invalid/never-ready:1.2.0"
QUICK = {"rollout": {"healthThresholds": {"observationSeconds": 2}}}
ROLLBACK_TARGET_SECONDS = 120.0


def patch(kube: Kube, namespace: str, spec: Obj) -> None:
    kube.run(
        "patch",
        "roomcastcluster",
        NAME,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
    )


def wait_succeeded(cluster: Cluster, namespace: str, revision: int, image: str) -> Obj:
    """Until ``revision`` runs ``image`` on every pod and its release has succeeded."""

    def done() -> Obj | None:
        st = status(cluster.kube, NAME, namespace)
        last = (st.get("releases") or [{}])[-1]
        ok = (
            st.get("currentRevision") == revision
            and last.get("outcome") == "Succeeded"
            and serving(cluster.kube, NAME, namespace, image)
        )
        return st if ok else None

    return eventually(done, cluster.timeout_seconds, what=f"revision {revision} succeeded")


def create(cluster: Cluster, namespace: str, **spec: Any) -> Obj:
    cluster.kube.create(roomcast_cluster(NAME, **{**QUICK, **spec}), namespace)
    return wait_succeeded(cluster, namespace, 1, spec.get("image", GOOD))


def owned_by_cluster(obj: Obj, uid: str) -> bool:
    return any(
        ref["uid"] == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def mounted_config(template: Obj) -> str:
    """The ConfigMap a pod template mounts its server config from."""
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    return str(volumes["config"]["configMap"]["name"])


def config_of(kube: Kube, namespace: str) -> tuple[str, str]:
    """(ConfigMap name, config.yaml) of the Deployment's current template."""
    name = mounted_config(kube.get("deployment", NAME, namespace)["spec"]["template"])
    return name, kube.get("configmap", name, namespace)["data"]["config.yaml"]


def bad_release() -> Obj:
    return {"image": BAD, "podAnnotations": {FAIL_ANNOTATION: "true"}}


@pytest.mark.bed_only
def test_create_makes_every_child_and_becomes_ready(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    kube = cluster.kube
    kube.run(
        "create",
        "secret",
        "generic",
        "roomcast",
        "-n",
        namespace,
        "--from-literal=hmac=" + "x" * 32,
        "--from-literal=api-key=secret",
    )
    st = create(
        cluster,
        namespace,
        redis={"urls": ["redis://redis-0:6379/0", "redis://redis-1:6379/0"]},
        auth={"hmacSecretRef": {"name": "roomcast", "key": "hmac"}},
        apiKeySecretRef={"name": "roomcast", "key": "api-key"},
        autoscaling={"metricSource": "prometheus-adapter", "targetConnectionsPerPod": 1000},
    )
    uid = kube.get("roomcastcluster", NAME, namespace)["metadata"]["uid"]
    config_map, config = config_of(kube, namespace)
    for kind, name in [
        ("configmap", config_map),
        ("deployment", NAME),
        ("service", NAME),
        ("poddisruptionbudget", NAME),
        ("horizontalpodautoscaler", NAME),
    ]:
        assert owned_by_cluster(kube.get(kind, name, namespace), uid), kind
    revisions = kube.items("controllerrevisions", namespace)
    assert [r["revision"] for r in revisions] == [1]
    assert owned_by_cluster(revisions[0], uid)

    assert condition(kube, NAME, namespace, "Ready")["status"] == "True"
    assert condition(kube, NAME, namespace, "Degraded")["status"] == "False"
    assert st["lastGoodRevision"] == 1 and st["readyReplicas"] == 3
    generation = kube.get("roomcastcluster", NAME, namespace)["metadata"]["generation"]
    assert all(c["observedGeneration"] == generation for c in st["conditions"])

    assert "redis://redis-1:6379/0" in config
    assert kube.get("configmap", config_map, namespace)["immutable"] is True
    printed = kube.run("get", "rcc", NAME, "-n", namespace).stdout
    assert printed.split("\n")[0].split() == [
        "NAME",
        "READY",
        "PODS",
        "CONNECTIONS",
        "REVISION",
        "AGE",
    ]


@pytest.mark.bed_only
def test_image_change_is_a_drained_rolling_update(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    kube = cluster.kube
    create(
        cluster,
        namespace,
        rollout={"maxSurge": 1, "healthThresholds": {"observationSeconds": 2}},
        drain={"preStopSeconds": 1, "drainWindowSeconds": 1},
    )
    installed = kube.get("deployment", NAME, namespace)
    assert installed["spec"].get("minReadySeconds", 0) == 0, "an install has nothing to drain"
    patch(kube, namespace, {"image": NEXT})
    lowest_available = 3
    waits: set[int] = set()

    def rolled() -> Obj | None:
        nonlocal lowest_available
        deployment = kube.get("deployment", NAME, namespace)
        available = (deployment.get("status") or {}).get("availableReplicas", 0)
        lowest_available = min(lowest_available, available)
        if deployment["metadata"]["annotations"][REVISION_ANNOTATION] == "2":
            waits.add(deployment["spec"].get("minReadySeconds", 0))
        st = status(kube, NAME, namespace)
        last = (st.get("releases") or [{}])[-1]
        done = st.get("currentRevision") == 2 and last.get("outcome") == "Succeeded"
        return deployment if done and serving(kube, NAME, namespace, NEXT) else None

    deployment = eventually(
        rolled, cluster.timeout_seconds, interval_seconds=0.1, what="revision 2 rolled out"
    )
    assert lowest_available == 3, "capacity dropped during the rolling update"
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    # While it rolled, a new pod was available a drain after it was Ready: preStop +
    # drain window + exit; once the old pods are gone, as soon as it is Ready again.
    assert 1 + 1 + 5 in waits
    eventually(
        lambda: (
            kube.get("deployment", NAME, namespace)["spec"].get("minReadySeconds", 0) == 0 or None
        ),
        cluster.timeout_seconds,
        what="minReadySeconds back to 0 after the rollout",
    )
    pod = kube.items("pods", namespace)[0]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 1}}
    assert pod["terminationGracePeriodSeconds"] == 1 + 1 + 10 + 5
    releases = status(kube, NAME, namespace)["releases"]
    assert [(r["revision"], r["image"], r["outcome"]) for r in releases] == [
        (1, GOOD, "Succeeded"),
        (2, NEXT, "Succeeded"),
    ]
    assert {r["revision"] for r in kube.items("controllerrevisions", namespace)} == {1, 2}


@pytest.mark.bed_only
def test_failed_release_is_rolled_back_automatically(
    cluster: Cluster,
    namespace: str,
    operator_running: OperatorProcess,
    record_property: Any,
) -> None:
    """Default rollout settings; the target is under two minutes from detection to serving."""
    kube = cluster.kube
    kube.create(roomcast_cluster(NAME), namespace)
    wait_succeeded(cluster, namespace, 1, GOOD)
    pushed = time.monotonic()
    patch(kube, namespace, bad_release())

    def detected() -> Obj | None:
        st = status(kube, NAME, namespace)
        failed = [r for r in st.get("releases") or [] if r.get("outcome") == "Failed"]
        return failed[-1] if failed else None

    failed = eventually(detected, 240, interval_seconds=0.1, what="release failure detected")
    detected_at = time.monotonic()
    eventually(
        lambda: serving(kube, NAME, namespace, GOOD),
        ROLLBACK_TARGET_SECONDS,
        interval_seconds=0.1,
        what="previous release serving again",
    )
    serving_at = time.monotonic()
    rollback_seconds = serving_at - detected_at
    record_property("detect_seconds", round(detected_at - pushed, 2))
    record_property("rollback_to_serving_seconds", round(rollback_seconds, 2))
    print(
        f"\nfailure detected {detected_at - pushed:.2f}s after the push; previous "
        f"release serving {rollback_seconds:.2f}s after detection"
    )
    assert rollback_seconds < ROLLBACK_TARGET_SECONDS
    assert failed["revision"] == 2 and failed["image"] == BAD

    st = eventually(
        lambda: (
            (s := status(kube, NAME, namespace)).get("currentRevision") == 1
            and s["releases"][-1]["outcome"] == "Succeeded"
            and s
        ),
        60,
        what="rollback release settled",
    )
    assert st["specRevision"] == 2 and st["lastGoodRevision"] == 1
    assert [(r["revision"], r["cause"], r["outcome"]) for r in st["releases"]] == [
        (1, "Spec", "Succeeded"),
        (2, "Spec", "Failed"),
        (1, "AutoRollback", "Succeeded"),
    ]
    rolled_back = condition(kube, NAME, namespace, "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("True", "AutoRollback")
    degraded = condition(kube, NAME, namespace, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ReleaseFailed")
    reasons = {(e["type"], e["reason"]) for e in events(kube, NAME, namespace)}
    assert {("Warning", "ReleaseFailed"), ("Warning", "AutoRollback")} <= reasons
    # No pod of the bad release is left, and it is not retried.
    time.sleep(3)
    assert status(kube, NAME, namespace)["currentRevision"] == 1
    images = {
        p["spec"]["containers"][0]["image"]
        for p in kube.items("pods", namespace)
        if "deletionTimestamp" not in p["metadata"]
    }
    assert images == {GOOD}


@pytest.mark.bed_only
def test_manual_rollback_by_field_and_by_annotation(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    kube = cluster.kube
    create(cluster, namespace)
    patch(kube, namespace, {"image": NEXT})
    wait_succeeded(cluster, namespace, 2, NEXT)

    patch(kube, namespace, {"rollbackTo": 1})
    st = wait_succeeded(cluster, namespace, 1, GOOD)
    assert st["releases"][-1]["cause"] == "Rollback"
    assert "rollbackTo" not in kube.get("roomcastcluster", NAME, namespace)["spec"]
    assert condition(kube, NAME, namespace, "RolledBack")["reason"] == "ManualRollback"

    kube.run("annotate", "roomcastcluster", NAME, "-n", namespace, "roomcast.io/rollback-to=2")
    wait_succeeded(cluster, namespace, 2, NEXT)
    annotations = kube.get("roomcastcluster", NAME, namespace)["metadata"].get("annotations")
    assert "roomcast.io/rollback-to" not in (annotations or {})
    rolled_back = condition(kube, NAME, namespace, "RolledBack")
    assert (rolled_back["status"], rolled_back["reason"]) == ("False", "RunningSpec")


@pytest.mark.bed_only
def test_redis_change_rolls_out_and_bad_redis_is_a_condition(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """Each config gets its own immutable ConfigMap: the old release's pods keep theirs
    (one restarting mid-rollout reads its own config), and it goes with its revision."""
    kube = cluster.kube
    create(cluster, namespace, redis={"urls": ["redis://redis-a:6379/0"]}, revisionHistoryLimit=2)
    before = kube.get("deployment", NAME, namespace)["spec"]["template"]["metadata"]
    first_map, first_config = config_of(kube, namespace)
    patch(kube, namespace, {"redis": {"urls": ["redis://redis-a:6379/0", "redis://b:6379/0"]}})
    st = wait_succeeded(cluster, namespace, 2, GOOD)
    after = kube.get("deployment", NAME, namespace)["spec"]["template"]["metadata"]
    hash_key = "roomcast.io/config-hash"
    assert after["annotations"][hash_key] != before["annotations"][hash_key]
    assert st["releases"][-1]["configHash"] == after["annotations"][hash_key]
    second_map, second_config = config_of(kube, namespace)
    assert second_map != first_map and "redis://b:6379/0" in second_config
    # The first release's ReplicaSet still mounts the first ConfigMap, unchanged.
    mounts = {mounted_config(rs["spec"]["template"]) for rs in kube.items("replicasets", namespace)}
    assert mounts == {first_map, second_map}
    assert kube.get("configmap", first_map, namespace)["data"]["config.yaml"] == first_config

    # A third config: revision 1 falls out of the history (limit 2), its ConfigMap with it.
    patch(kube, namespace, {"redis": {"urls": ["redis://redis-c:6379/0"]}})
    wait_succeeded(cluster, namespace, 3, GOOD)
    eventually(
        lambda: (
            not kube.run(
                "get", "configmap", first_map, "-n", namespace, "--ignore-not-found", "-o", "name"
            ).stdout.strip()
        ),
        30,
        what="revision 1's ConfigMap deleted",
    )
    assert {r["revision"] for r in kube.items("controllerrevisions", namespace)} == {2, 3}
    assert kube.get("configmap", second_map, namespace)["data"]["config.yaml"] == second_config

    patch(kube, namespace, {"redis": {"urls": ["redis://:6379/zero"]}})

    def degraded() -> Obj | None:
        found = condition(kube, NAME, namespace, "Degraded")
        return found if found.get("reason") == "InvalidSpec" else None

    found = eventually(degraded, 30, what="InvalidSpec condition")
    assert found["status"] == "True" and "has no host" in found["message"]
    st = status(kube, NAME, namespace)
    assert st["currentRevision"] == 3 and len(st["releases"]) == 2
    assert serving(kube, NAME, namespace, GOOD)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minReplicas": 2}, "spec.image: Required value"),
        ({"image": "x", "minReplicas": 0}, "spec.minReplicas"),
        ({"image": "x", "minReplicas": 5, "maxReplicas": 2}, "maxReplicas must be at least"),
        ({"image": "x", "autoscaling": {"metricSource": "keda"}}, "keda needs"),
        ({"image": "x", "autoscaling": {"metricSource": "hpa"}}, "Unsupported value"),
        ({"image": "x", "redis": {"urls": ["http://redis:6379"]}}, "spec.redis.urls[0]"),
        ({"image": "x", "redis": {}}, "set urls, urlsSecretRef or sentinel"),
        ({"image": "x", "rollout": {"progressDeadlineSeconds": 1}}, "progressDeadlineSeconds"),
        ({"image": "x", "auth": {"hmacSecretRef": {"name": "s"}}}, "key: Required value"),
        ({"image": "x", "replicas": 3}, 'unknown field "spec.replicas"'),
        ({"image": "x", "drain": {"maxDrainingPods": 0}}, "spec.drain.maxDrainingPods"),
        ({"image": "x", "rebalance": {"enabled": True}}, "rebalance.enabled needs apiKeySecretRef"),
    ],
)
def test_invalid_spec_is_rejected_by_the_schema(
    cluster: Cluster, namespace: str, spec: Obj, message: str
) -> None:
    body = {**roomcast_cluster(NAME), "spec": spec}
    with pytest.raises(KubectlError) as failure:
        cluster.kube.create(body, namespace)
    assert message in failure.value.stderr


@pytest.mark.bed_only
def test_operator_restart_mid_rollout_resumes(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """Killed while a release it started is still undecided, the next operator finishes it."""
    kube = cluster.kube
    create(
        cluster,
        namespace,
        rollout={
            "healthThresholds": {
                "observationSeconds": 2,
                "maxContainerRestarts": 100,
                "readyTimeoutSeconds": 12,
            }
        },
    )
    patch(kube, namespace, bad_release())
    eventually(
        lambda: status(kube, NAME, namespace).get("currentRevision") == 2,
        30,
        interval_seconds=0.1,
        what="rollout of revision 2 started",
    )
    operator_running.kill()
    st = status(kube, NAME, namespace)
    assert st["releases"][-1]["outcome"] == "Progressing"
    time.sleep(3)  # the operator is down; nothing decides meanwhile
    assert status(kube, NAME, namespace)["releases"][-1]["outcome"] == "Progressing"

    operator_running.start()
    st = wait_succeeded(cluster, namespace, 1, GOOD)
    assert [(r["revision"], r["outcome"]) for r in st["releases"]] == [
        (1, "Succeeded"),
        (2, "Failed"),
        (1, "Succeeded"),
    ]
    assert st["releases"][1]["reason"] == "PodNotReady"
    assert len(kube.items("controllerrevisions", namespace)) == 2

    # A good release interrupted the same way completes after the restart.
    patch(kube, namespace, {"image": NEXT, "podAnnotations": None})
    eventually(
        lambda: status(kube, NAME, namespace).get("currentRevision") == 3,
        30,
        interval_seconds=0.1,
        what="rollout of revision 3 started",
    )
    operator_running.kill()
    operator_running.start()
    st = wait_succeeded(cluster, namespace, 3, NEXT)
    assert [r["revision"] for r in st["releases"]] == [1, 2, 1, 3]


@pytest.mark.bed_only
def test_delete_garbage_collects_every_child(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    kube = cluster.kube
    create(cluster, namespace, autoscaling={"metricSource": "prometheus-adapter"})
    kube.delete("roomcastcluster", NAME, namespace, wait=True)

    def gone() -> bool:
        left = []
        for kind in (
            "deployments",
            "replicasets",
            "pods",
            "configmaps",
            "services",
            "poddisruptionbudgets",
            "horizontalpodautoscalers",
            "controllerrevisions",
        ):
            left += [
                f"{kind}/{o['metadata']['name']}"
                for o in kube.items(kind, namespace)
                if o["metadata"]["name"] != "kube-root-ca.crt"
            ]
        return not left

    eventually(gone, cluster.timeout_seconds, what="children garbage-collected")


@pytest.mark.bed_only
def test_missed_progress_deadline_rolls_back(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """Pods that never report a problem still fail the release at the Deployment's deadline."""
    kube = cluster.kube
    create(
        cluster,
        namespace,
        rollout={
            "progressDeadlineSeconds": 10,
            "healthThresholds": {
                "observationSeconds": 2,
                "maxContainerRestarts": 100,
                "readyTimeoutSeconds": 600,
            },
        },
    )
    patch(kube, namespace, bad_release())
    eventually(
        lambda: len(status(kube, NAME, namespace).get("releases") or []) >= 3,
        60,
        what="revision 2 failed and rolled back",
    )
    st = wait_succeeded(cluster, namespace, 1, GOOD)
    failed = st["releases"][1]
    assert (failed["revision"], failed["outcome"], failed["reason"]) == (
        2,
        "Failed",
        "ProgressDeadlineExceeded",
    )
    assert st["releases"][-1]["cause"] == "AutoRollback"


@pytest.mark.bed_only
def test_unschedulable_resources_after_a_good_release_roll_back(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """Resources no node can hold are a release like any other: gated and rolled back to
    the good release, its resources restored."""
    kube = cluster.kube
    good = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    create(
        cluster,
        namespace,
        resources=good,
        rollout={"progressDeadlineSeconds": 10, "healthThresholds": {"observationSeconds": 2}},
    )
    patch(kube, namespace, {"resources": {"requests": {"cpu": "1000"}}})

    def rolled_back() -> Obj | None:
        st = status(kube, NAME, namespace)
        records = st.get("releases") or []
        done = (
            len(records) >= 3
            and st.get("currentRevision") == 1
            and records[-1].get("outcome") == "Succeeded"
        )
        return st if done and serving(kube, NAME, namespace, GOOD) else None

    st = eventually(rolled_back, cluster.timeout_seconds, what="rollback to revision 1")
    failed = st["releases"][1]
    assert (failed["revision"], failed["outcome"]) == (2, "Failed")
    assert failed["reason"] in ("PodPending", "ProgressDeadlineExceeded"), failed
    assert [(r["revision"], r["cause"]) for r in st["releases"]] == [
        (1, "Spec"),
        (2, "Spec"),
        (1, "AutoRollback"),
    ]
    container = kube.get("deployment", NAME, namespace)["spec"]["template"]["spec"]
    assert container["containers"][0]["resources"] == good
    pods = [p for p in kube.items("pods", namespace) if "deletionTimestamp" not in p["metadata"]]
    assert all(p["spec"]["containers"][0]["resources"] == good for p in pods)
    assert all(p["status"].get("phase") == "Running" for p in pods)
    rolled = condition(kube, NAME, namespace, "RolledBack")
    assert (rolled["status"], rolled["reason"]) == ("True", "AutoRollback")


@pytest.mark.bed_only
def test_pods_pending_for_a_node_being_added_do_not_roll_back(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """A release whose pods wait for capacity (a node being added) well past
    readyTimeoutSeconds is not failed: Pending is judged against the progress deadline."""
    kube = cluster.kube
    create(
        cluster,
        namespace,
        rollout={
            "progressDeadlineSeconds": 120,
            "healthThresholds": {"observationSeconds": 2, "readyTimeoutSeconds": 5},
        },
    )
    # No node of the bed has 40 CPUs: the first new pod waits.
    patch(kube, namespace, {"resources": {"requests": {"cpu": "40"}}})
    waited = 15

    def pending_long() -> bool:
        st = status(kube, NAME, namespace)
        pending = [
            p
            for p in kube.items("pods", namespace)
            if p["status"].get("phase") == "Pending"
            and p["spec"]["containers"][0]["resources"].get("requests", {}).get("cpu") == "40"
        ]
        return st.get("currentRevision") == 2 and any(
            time.time() - _created(p) > waited for p in pending
        )

    eventually(pending_long, 60, what=f"a new pod Pending for {waited}s")
    assert status(kube, NAME, namespace)["releases"][-1]["outcome"] == "Progressing"
    node = f"kwok-big-{namespace}"[:63]
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node,
                "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                "labels": {NODE_LABEL: "kwok", "type": "kwok", "kubernetes.io/hostname": node},
            },
            "status": {
                "allocatable": {"cpu": "128", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "128", "memory": "256Gi", "pods": "110"},
            },
        }
    )
    try:
        st = wait_succeeded(cluster, namespace, 2, GOOD)
    finally:
        kube.delete("node", node, wait=False)
    assert [(r["revision"], r["outcome"]) for r in st["releases"]] == [
        (1, "Succeeded"),
        (2, "Succeeded"),
    ]


def _created(obj: Obj) -> float:
    stamp = obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


@pytest.mark.bed_only
def test_the_shared_config_map_of_older_operators_is_deleted(
    cluster: Cluster, namespace: str, operator_running: OperatorProcess
) -> None:
    """Older operators kept one mutable ``<cluster>-config``; once no pod mounts it, a new
    operator deletes it, but a ConfigMap of that name the cluster does not own stays."""
    kube = cluster.kube
    create(cluster, namespace)
    uid = kube.get("roomcastcluster", NAME, namespace)["metadata"]["uid"]
    legacy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{NAME}-config",
            "ownerReferences": [
                {
                    "apiVersion": "roomcast.io/v1alpha1",
                    "kind": "RoomcastCluster",
                    "name": NAME,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "data": {"config.yaml": "{}"},
    }
    operator_running.kill()
    kube.create(legacy, namespace)
    operator_running.start()

    def listed() -> list[str]:
        return kube.run("get", "configmap", "-n", namespace, "-o", "name").stdout.split()

    eventually(
        lambda: f"configmap/{NAME}-config" not in listed(), 60, what="the shared ConfigMap deleted"
    )
    assert wait_succeeded(cluster, namespace, 1, GOOD)["currentRevision"] == 1

    # A ConfigMap of that name the cluster does not own is someone else's.
    operator_running.kill()
    kube.create({**legacy, "metadata": {"name": f"{NAME}-config"}}, namespace)
    operator_running.start()
    for _ in range(2):  # the second request is cleared by a pass after the first one ended
        kube.run("annotate", "roomcastcluster", NAME, "-n", namespace, "roomcast.io/rollback-to=1")
        eventually(
            lambda: (
                "roomcast.io/rollback-to"
                not in (
                    kube.get("roomcastcluster", NAME, namespace)["metadata"].get("annotations")
                    or {}
                )
            ),
            30,
            what="a reconcile pass",
        )
    assert f"configmap/{NAME}-config" in listed()
