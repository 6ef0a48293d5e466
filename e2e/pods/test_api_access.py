"""Pods on the real node reach the API server, as in-cluster clients do.

The API server listens on 127.0.0.1; with the real node it advertises the node's own
address, where the bed relays its port (``e2e/relay.py``), so the ``kubernetes`` Service
(10.96.0.1:443) leads there through kube-proxy. A pod authenticates with the
service-account token the kubelet projects and verifies the API server against the
cluster CA it is given, by the Service's address.

Then the chart's CRD upgrade hook runs for real: ``helm install`` and ``helm upgrade`` with
an older RoomcastCluster CRD in the cluster; the hook Job's pod runs
``python -m roomcast_operator.crdapply`` in the Roomcast image on the real node, under its
ServiceAccount's narrow ClusterRole, and the new schema is served afterwards.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import yaml

from e2e import node as real_node
from e2e.bed import eventually, tools_bin_dir
from e2e.cluster import Cluster
from e2e.kube import Obj
from e2e.pods.images import IMAGE
from e2e.pods.release import CHART
from e2e.pods.workloads import ON_REAL_NODE

CRD_NAME = "roomcastclusters.roomcast.io"
WHOAMI = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
token = open(sa + "token").read()
request = urllib.request.Request(
    f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=json.dumps(review).encode(),
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    method="POST",
)
context = ssl.create_default_context(cafile=sa + "ca.crt")
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    print(json.dumps({"address": f"{host}:{port}", "review": json.load(response)}))
"""


def _finished_pod(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> Obj:
    def done() -> Obj | None:
        pod = cluster.kube.get("pod", name, namespace)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    return eventually(done, timeout, interval_seconds=0.5, what=f"pod {name} finished")


def test_pod_reaches_the_api_server_with_its_service_account(
    cluster: Cluster, namespace: str, node_images: list[str]
) -> None:
    assert IMAGE in node_images
    service = cluster.kube.get("service", "kubernetes", "default")
    endpoints = cluster.kube.get("endpoints", "kubernetes", "default")
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == [real_node.NODE_IP]

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "whoami"},
        "spec": {
            **ON_REAL_NODE,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "whoami",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", WHOAMI],
                }
            ],
        },
    }
    cluster.kube.apply(pod, namespace)
    finished = _finished_pod(cluster, namespace, "whoami")
    logs = cluster.kube.run("logs", "whoami", "-n", namespace).stdout
    assert finished["status"]["phase"] == "Succeeded", logs
    assert finished["spec"]["nodeName"] == real_node.NODE_NAME
    answer = json.loads(logs.strip().splitlines()[-1])
    assert answer["address"] == f"{service['spec']['clusterIP']}:443"
    user = answer["review"]["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:default"
    assert "system:serviceaccounts" in user["groups"]


def _spec_fields(cluster: Cluster) -> set[str]:
    crd = cluster.kube.get("crd", CRD_NAME)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"]["properties"])


def _kept_by_schema(cluster: Cluster, namespace: str) -> bool:
    """A RoomcastCluster with imagePullSecrets, dry-run on the server: the field survives
    only if the served schema knows it (unknown fields are pruned; kubectl's own strict
    validation is off so the API server's pruning is what is seen)."""
    obj = {
        "apiVersion": "roomcast.io/v1alpha1",
        "kind": "RoomcastCluster",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "image": IMAGE,
            "redis": {"urls": ["redis://redis:6379/0"]},
            "imagePullSecrets": [{"name": "registry"}],
        },
    }
    created = cluster.kube.run(
        "create",
        "--dry-run=server",
        "--validate=ignore",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(obj),
    ).stdout
    return "imagePullSecrets" in json.loads(created)["spec"]


def test_chart_crd_hook_job_upgrades_the_crd_on_the_real_node(
    cluster: Cluster, namespace: str, node_images: list[str], tmp_path: Path
) -> None:
    kube = cluster.kube
    helm = str(tools_bin_dir() / "helm")
    current = yaml.safe_load((CHART / "crds" / f"{CRD_NAME}.yaml").read_text())
    old = copy.deepcopy(current)
    spec = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["imagePullSecrets"]
    repository, tag = IMAGE.split(":")
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "crds": {"upgrade": True},
        # Only the hook: no operator Deployment, no cluster; the hook Job takes the
        # operator's placement, here the real node.
        "operator": {"enabled": False, "watchNamespace": namespace, **ON_REAL_NODE},
        "cluster": {"enabled": False},
        "tests": {"enabled": False},
    }
    (tmp_path / "values.json").write_text(json.dumps(values))
    release = f"roomcast-crd-{namespace.rsplit('-', 1)[-1]}"

    def helm_run(command: str) -> None:
        result = subprocess.run(
            [helm, command, release, str(CHART), "-n", namespace, "-f",
             str(tmp_path / "values.json"), "--wait", "--timeout=180s",
             f"--kubeconfig={kube.kubeconfig}"],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"helm {command}: {result.stderr}"

    def downgrade_crd() -> None:
        kube.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(old))
        eventually(lambda: not _kept_by_schema(cluster, namespace), 30, what="old CRD served")

    try:
        for command in ("install", "upgrade"):
            downgrade_crd()
            assert "imagePullSecrets" not in _spec_fields(cluster)
            helm_run(command)
            assert "imagePullSecrets" in _spec_fields(cluster)
            assert _kept_by_schema(cluster, namespace)
            # The hook's objects are gone once it succeeded.
            assert not kube.items("jobs", namespace, "app.kubernetes.io/component=crd-upgrade")
        # What the hook's pods did, from the events they leave: scheduled on the real node
        # and started there by its kubelet, twice; the Job completed twice.
        events = kube.items("events", namespace)
        hook_pods = {
            e["involvedObject"]["name"]
            for e in events
            if e["involvedObject"]["kind"] == "Pod"
            and e["reason"] == "Started"
            and real_node.NODE_NAME in (e.get("source", {}).get("host"), e.get("reportingInstance"))
            and e["involvedObject"]["name"].startswith(f"{release}-crd-upgrade-")
        }
        assert len(hook_pods) == 2, events
        completed = [
            e for e in events if e["involvedObject"]["kind"] == "Job" and e["reason"] == "Completed"
        ]
        assert sum(e.get("count", 1) for e in completed) == 2
        shown = kube.run("get", "crd", CRD_NAME, "-o", "json", "--show-managed-fields").stdout
        fields = json.loads(shown)["metadata"]["managedFields"]
        assert "roomcast-crd-upgrade" in {f["manager"] for f in fields}
    finally:
        kube.run(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(current)
        )
        subprocess.run(
            [helm, "uninstall", release, "-n", namespace, "--wait",
             f"--kubeconfig={kube.kubeconfig}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
