"""Roomcast on the real node: images, a Redis pod, a chart release run by the operator.

Everything here goes through the API server, the chart and the operator, as a platform
team would; the clients reach the pods only through the Service's ClusterIP, which
kube-proxy programs on this host.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e import node as real_node
from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.kube import Kube, Obj
from e2e.operator.harness import (
    RUNNING,
    OperatorProcess,
    service_account_kubeconfig,
    serving,
)
from e2e.pods.traffic import Traffic, namespace_options

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "roomcast"
IMAGES_SCRIPT = REPO / "e2e" / "images" / "build.sh"
IMAGE = "roomcast:e2e"
NEXT_IMAGE = "roomcast:e2e-next"
CRASH_IMAGE = "roomcast:e2e-crash"
REFUSE_IMAGE = "roomcast:e2e-refuse"
REDIS_IMAGE = "roomcast-redis:bookworm"
CLUSTER_NAME = "chat"

ON_REAL_NODE: Obj = {
    "nodeSelector": {"roomcast.io/bed-node": "real"},
    "tolerations": [{"key": real_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


def docker_ref(image: str) -> str:
    """The name containerd gives an image imported from ``docker save``."""
    name = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
    return name


def build_and_import_images(layout: real_node.NodeLayout) -> list[str]:
    """Build the suite's images with the local Docker daemon and import them into the node."""
    result = subprocess.run(
        [str(IMAGES_SCRIPT)], capture_output=True, text=True, timeout=1200, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"e2e/images/build.sh failed:\n{result.stdout}\n{result.stderr}")
    images = result.stdout.split()
    for image in images:
        real_node.import_docker_image(layout, image)
    present = set(real_node.node_images(layout))
    missing = [i for i in images if docker_ref(i) not in present]
    if missing:
        raise RuntimeError(f"images not in the node after import: {missing}")
    return images


# --- Redis --------------------------------------------------------------------------------


def redis_objects(name: str) -> list[Obj]:
    """A Redis Deployment on the real node with AOF (fsync always) and a ClusterIP Service.

    The AOF lives in an emptyDir, which survives a container restart (a killed process)
    but not the pod's deletion, as on any node.
    """
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **ON_REAL_NODE,
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "redis",
                                "image": REDIS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "redis-server",
                                    "--protected-mode",
                                    "no",
                                    "--appendonly",
                                    "yes",
                                    "--appendfsync",
                                    "always",
                                    "--save",
                                    "",
                                    "--dir",
                                    "/data",
                                ],
                                "ports": [{"name": "redis", "containerPort": 6379}],
                                "readinessProbe": {
                                    "exec": {"command": ["redis-cli", "ping"]},
                                    "periodSeconds": 1,
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
            },
        },
    ]


def start_redis(kube: Kube, namespace: str, name: str = "redis", timeout: float = 120) -> str:
    """Run Redis on the real node; return its URL by ClusterIP (the bed runs no DNS)."""
    for obj in redis_objects(name):
        kube.apply(obj, namespace)
    kube.run(
        "rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={int(timeout)}s"
    )
    ip = kube.get("service", name, namespace)["spec"]["clusterIP"]
    return f"redis://{ip}:6379/0"


# --- pods and containers ------------------------------------------------------------------


def pods(kube: Kube, namespace: str, selector: str) -> list[Obj]:
    return kube.items("pods", namespace, selector=selector)


def container_pid(layout: real_node.NodeLayout, pod: Obj) -> int:
    """The host pid of a pod's first container's main process."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in real_node.ctr(layout, "tasks", "ls").splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == container_id:
            return int(parts[1])
    raise LookupError(f"no running task for {pod['metadata']['name']}")


def kill_container(layout: real_node.NodeLayout, pod: Obj) -> int:
    """SIGKILL a container's main process, as the kernel's OOM killer would."""
    pid = container_pid(layout, pod)
    os.kill(pid, signal.SIGKILL)
    return pid


def restarts(pod: Obj) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", []))


# --- the release ------------------------------------------------------------------------


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
            "drain": {"preStopSeconds": 2, "drainWindowSeconds": 5},
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


# --- sampling pods' /metrics --------------------------------------------------------------

_SAMPLE = re.compile(r"^(roomcast_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$")


def scrape(pod_ip: str, timeout: float = 0.5) -> dict[str, float]:
    """A pod's Roomcast samples by name plus labels (what the operator reads too)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{pod_ip}:8000/metrics", timeout=timeout) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def busiest(release: Release) -> tuple[Obj, float]:
    """The serving pod with the most open connections, and that number."""
    live = [p for p in release.server_pods() if not p["metadata"].get("deletionTimestamp")]
    counts = [(p, scrape(p["status"]["podIP"])["roomcast_connections"]) for p in live]
    return max(counts, key=lambda item: item[1])


@dataclass
class DrainTimeline:
    """One pod's connections over time, as its /metrics reported them."""

    pod: str
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(time, open connections, 3001 disconnects so far)."""

    def shutdown_closes(self) -> tuple[float, float] | None:
        """(first, last) time the pod's 3001 count rose, relative to the first sample."""
        rises = [
            t
            for (t, _, n), (_, _, before) in zip(self.samples[1:], self.samples, strict=False)
            if n > before
        ]
        return (rises[0], rises[-1]) if rises else None


class MetricsWatch:
    """Samples every server pod's /metrics in the background while something happens."""

    def __init__(self, release: Release, interval: float = 0.25) -> None:
        self.release = release
        self.interval = interval
        self.timelines: dict[str, DrainTimeline] = {}
        self._start = time.monotonic()

    async def run(self, stop: Any) -> None:
        import asyncio

        found: list[Obj] = []
        listed_at = 0.0
        while not stop.is_set():
            # Listing pods costs a kubectl call; scraping them is cheap.
            if time.monotonic() - listed_at > 2.0:
                found = await asyncio.to_thread(self.release.server_pods)
                listed_at = time.monotonic()
            for pod in found:
                ip = pod.get("status", {}).get("podIP")
                if not ip:
                    continue
                try:
                    samples = await asyncio.to_thread(scrape, ip)
                except OSError:
                    continue
                line = self.timelines.setdefault(
                    pod["metadata"]["name"], DrainTimeline(pod["metadata"]["name"])
                )
                shutdown = sum(
                    v
                    for k, v in samples.items()
                    if k.startswith("roomcast_disconnects_total") and 'code="3001"' in k
                )
                line.samples.append(
                    (
                        time.monotonic() - self._start,
                        samples.get("roomcast_connections", 0.0),
                        shutdown,
                    )
                )
            await asyncio.sleep(self.interval)

    def drains(self) -> dict[str, dict[str, float]]:
        """Per drained pod: when its shutdown closes began and how long they took."""
        result = {}
        for name, line in self.timelines.items():
            window = line.shutdown_closes()
            if window is None:
                continue
            peak = max(c for _, c, _ in line.samples)
            result[name] = {
                "first_close_s": round(window[0], 2),
                "spread_s": round(window[1] - window[0], 2),
                "closed": max(n for _, _, n in line.samples),
                "peak_connections": peak,
            }
        return result


def write_report(name: str, figures: Obj) -> Path:
    """The suite's measured figures as JSON, under ``$ROOMCAST_E2E_REPORTS`` (or
    ``.e2e-reports/`` in the repository), one file per suite, overwritten per run."""
    directory = Path(os.environ.get("ROOMCAST_E2E_REPORTS") or REPO / ".e2e-reports")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(
        json.dumps(
            {"suite": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures},
            indent=2,
        )
        + "\n"
    )
    print(f"{name}: {json.dumps(figures)}")
    return path
