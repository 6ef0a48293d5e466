"""The bed's real node itself: what the suites on real pods rely on.

It registers through NodeRestriction as ``system:node:<name>``, is tainted so only pods
that ask land on it, runs a pod whose probes the kubelet carries out, serves ``kubectl
logs`` and ``kubectl exec`` (API server to kubelet to containerd), and routes a
Service's ClusterIP from this host to the pod through kube-proxy's rules.
"""

from __future__ import annotations

import socket

from e2e import node as real_node
from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.pods.images import REDIS_IMAGE
from e2e.pods.release import service_endpoints
from e2e.pods.workloads import start_redis


def test_node_registered_tainted_and_labelled(cluster: Cluster) -> None:
    node = cluster.kube.get("node", real_node.NODE_NAME)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.36.")
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert {"type": "InternalIP", "address": real_node.NODE_IP} in node["status"]["addresses"]
    assert real_node.NODE_LABELS.items() <= node["metadata"]["labels"].items()
    taints = node["spec"].get("taints") or []
    assert {"key": real_node.TAINT_KEY, "value": "true", "effect": "NoSchedule"} in taints


def test_pod_runs_probes_logs_exec_and_service(
    cluster: Cluster, namespace: str, node_images: list[str]
) -> None:
    assert REDIS_IMAGE in node_images
    url = start_redis(cluster.kube, namespace)
    pod = cluster.kube.items("pods", namespace, selector="app=redis")[0]
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == real_node.NODE_NAME
    assert pod["status"]["podIP"].startswith("10.245.")
    ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"  # an exec readiness probe passed

    logs = cluster.kube.run("logs", name, "-n", namespace).stdout
    assert "Ready to accept connections" in logs
    pong = cluster.kube.run("exec", name, "-n", namespace, "--", "redis-cli", "ping").stdout
    assert pong.strip() == "PONG"

    # The ClusterIP answers from this host, through kube-proxy's DNAT to the pod.
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    eventually(
        lambda: service_endpoints(namespace, "redis") == {pod["status"]["podIP"]},
        30,
        what="kube-proxy rules for the Redis Service",
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"
