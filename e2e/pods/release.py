"""A Roomcast chart release on the real node, and the operator that serves it.

Everything goes through the API server, the chart and the operator, as a platform team
would; clients reach the pods only through the Service's ClusterIP, which kube-proxy
programs on this host.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.kube import Kube, Obj
from e2e.operator.harness import (
    RUNNING,
    OperatorProcess,
    service_account_kubeconfig,
    serving,
)
from e2e.pods.images import IMAGE, REPO
from e2e.pods.traffic import Traffic, namespace_options
from e2e.pods.workloads import ON_REAL_NODE, pods, start_redis

CHART = REPO / "helm" / "roomcast"
CLUSTER_NAME = "chat"


@dataclass
class Release:
    """A chart release whose cluster runs on the real node, served by a host operator."""

    cluster: Cluster
    helm: str
    namespace: str
    name: str
    workdir: Path
    operator: OperatorProcess | None = None
    values: Obj = field(default_factory=dict)

    @property
    def kube(self) -> Kube:
        return self.cluster.kube

    def _helm(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [self.helm, *args, f"--kubeconfig={self.kube.kubeconfig}", "-n", self.namespace],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def install(self, values: Obj) -> None:
        # An operator for this namespace only: the chart refuses a second cluster-wide one.
        operator = {**values.get("operator", {}), "watchNamespace": self.namespace}
        values = {**values, "operator": operator}
        self.values = values
        path = self.workdir / "values.json"
        path.write_text(json.dumps(values))
        self._helm("install", self.name, str(CHART), "-f", str(path), "--wait", "--timeout=120s")
        self.start_operator()

    def start_operator(self) -> OperatorProcess:
        """The operator as a host process with the chart's ServiceAccount token, watching
        only this namespace (it must reach the pods' /metrics, which a pod on a kwok
        node could not)."""
        for other in list(RUNNING):
            other.stop()
        path = service_account_kubeconfig(
            self.kube, self.namespace, f"{self.name}-operator", self.workdir / "op.kubeconfig", "2h"
        )
        os.environ["ROOMCAST_OPERATOR_NAMESPACE"] = self.namespace
        try:
            self.operator = OperatorProcess(path, self.workdir / "operator.log")
            self.operator.start()
        finally:
            os.environ.pop("ROOMCAST_OPERATOR_NAMESPACE", None)
        return self.operator

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()

    def secret(self, key: str) -> str:
        data = self.kube.get("secret", f"{self.name}-auth", self.namespace)["data"]
        return base64.b64decode(data[key]).decode()

    def urls(self) -> tuple[str, str]:
        """(WebSocket URL, HTTP API base URL) through the Service's ClusterIP."""
        service = self.kube.get("service", CLUSTER_NAME, self.namespace)["spec"]
        base = f"{service['clusterIP']}:{service['ports'][0]['port']}"
        return f"ws://{base}/connection/websocket", f"http://{base}"

    def patch_spec(self, patch: Obj) -> None:
        """Change the RoomcastCluster as a platform engineer would (kubectl patch)."""
        self.kube.run(
            "patch", "roomcastcluster", CLUSTER_NAME, "-n", self.namespace,
            "--type=merge", "-p", json.dumps({"spec": patch}),
        )  # fmt: skip

    def serving(self, image: str) -> bool:
        return serving(self.kube, CLUSTER_NAME, self.namespace, image)

    def wait_serving(self, image: str, timeout: float = 180) -> None:
        """Every pod runs ``image`` and is available, and the Service routes to them all."""
        eventually(
            lambda: self.serving(image), timeout, interval_seconds=0.5, what=f"{image} serving"
        )
        eventually(self.routed, 30, interval_seconds=0.3, what="the Service routing to every pod")

    def routed(self) -> bool:
        """kube-proxy's rules send the Service's traffic to exactly the ready pods.

        Deployment status and EndpointSlices change before kube-proxy reprograms the
        node (seconds on a busy host); clients connecting in between would all land on
        the pods it already knew.
        """
        ready = {
            p["status"]["podIP"]
            for p in self.server_pods()
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        }
        return service_endpoints(self.namespace, CLUSTER_NAME) == ready

    def server_pods(self) -> list[Obj]:
        return pods(
            self.kube,
            self.namespace,
            f"app.kubernetes.io/instance={CLUSTER_NAME},app.kubernetes.io/component=server",
        )

    def status(self) -> Obj:
        found: Obj = (
            self.kube.get("roomcastcluster", CLUSTER_NAME, self.namespace).get("status") or {}
        )
        return found

    def operator_log(self, lines: int = 80) -> str:
        return self.operator.tail(lines) if self.operator else "(no operator)"


def service_endpoints(namespace: str, service: str) -> set[str]:
    """The pod IPs the node's iptables rules send a Service's traffic to."""
    rules = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
    marker = re.compile(
        rf'--comment "{re.escape(namespace)}/{re.escape(service)}:\S* -> ([0-9.]+):'
    )
    return {m.group(1) for line in rules.splitlines() if (m := marker.search(line))}


def chart_values(redis_url: str, **cluster: Any) -> Obj:
    """Chart values for three server pods on the real node, on the given Redis."""
    repository, tag = IMAGE.split(":")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "redis": {"urls": [redis_url]},
        "tests": {"enabled": False},
        "cluster": {
            "name": CLUSTER_NAME,
            "minReplicas": 3,
            "maxReplicas": 3,
            "placement": ON_REAL_NODE,
            "channel": {"namespaces": [namespace_options()]},
            "serverConfig": {
                "client": {"ping_interval": "5s", "pong_timeout": "3s"},
                "engine": {"redis": {"position_check_interval": "1s"}},
            },
            "drain": {"preStopSeconds": 5, "drainWindowSeconds": 5},
            "rollout": {"maxSurge": 1, "progressDeadlineSeconds": 120},
            **cluster,
        },
    }


@contextlib.asynccontextmanager
async def loaded(
    release: Release,
    *,
    clients: int,
    channels: int = 10,
    per_second: float = 10.0,
    **cluster: Any,
) -> AsyncIterator[Traffic]:
    """Redis and the chart's three server pods on the real node, ``clients`` SDK clients
    subscribed through the Service and a publisher running; the clients are disconnected
    on the way out, whatever happened."""
    redis_url = start_redis(release.kube, release.namespace)
    release.install(chart_values(redis_url, **cluster))
    release.wait_serving(IMAGE, timeout=180)
    ws_url, api_url = release.urls()
    traffic = Traffic(
        ws_url,
        api_url,
        secret=release.secret("token-hmac-secret"),
        api_key=release.secret("api-key"),
        clients=clients,
        channels=channels,
    )
    try:
        await traffic.start()
        traffic.start_publishing(per_second)
        yield traffic
    finally:
        await traffic.close()
