"""Autoscaling on connections, end to end: SDK clients through the Service, the server
pods' ``roomcast_connections`` scraped by Prometheus, served per pod by prometheus-adapter
with the chart's own rule through ``custom.metrics.k8s.io``, and the HPA the operator
renders scaling the Deployment.

Short windows (a drain period of preStop 2 s + drain 3 s + the server's margin, 20 s,
and a scale-down stabilization window as long) keep it to a few minutes. The load is
three pods' worth of clients on the first pod; its end leaves a residue on that pod: the
HPA removes the two empty pods, one per drain period, and the busy pod (the highest
pod-deletion-cost) stays with its clients untouched. The timeline (replicas, per-pod
connections, the HPA's view and its decisions) goes to ``.e2e-reports/autoscale.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from pathlib import Path
from typing import Any

from e2e.bed import eventually
from e2e.kube import Obj
from e2e.pods.images import IMAGE
from e2e.pods.metrics_pipeline import MetricsPipeline
from e2e.pods.release import CLUSTER_NAME, Release, chart_values
from e2e.pods.report import write_report
from e2e.pods.traffic import Traffic
from e2e.pods.watch import scrape
from e2e.pods.workloads import start_redis
from roomcast_operator.render import termination_grace_seconds
from roomcast_operator.spec import parse

TARGET = 20
"""Connections per pod the HPA scales at."""
LOAD = 60
"""Clients at peak: three pods' worth."""
RESIDUE = 10
"""Clients left on the first pod after the load: one pod's worth."""
NEW_SIZE = re.compile(r"New size: (\d+)")
SCALE_DOWN_WINDOW = 20
"""Seconds: the drain period of the settings below (the operator renders no less)."""
SERVER_SELECTOR = f"app.kubernetes.io/instance={CLUSTER_NAME},app.kubernetes.io/component=server"


class Timeline:
    """Every second: replicas wanted and ready, each live pod's connections (scraped
    from the pod), and the HPA's view (its metric and desired replicas)."""

    def __init__(self, release: Release) -> None:
        self.release = release
        self.started = time.monotonic()
        self.samples: list[dict[str, Any]] = []

    def sample(self) -> dict[str, Any]:
        kube, namespace = self.release.kube, self.release.namespace
        deployment = kube.get("deployment", CLUSTER_NAME, namespace)
        hpa = kube.get("hpa", CLUSTER_NAME, namespace).get("status") or {}
        connections: dict[str, float | None] = {}
        for pod in self.release.server_pods():
            if pod["metadata"].get("deletionTimestamp") or not pod["status"].get("podIP"):
                continue
            try:
                count = scrape(pod["status"]["podIP"]).get("roomcast_connections")
            except OSError:
                count = None
            connections[pod["metadata"]["name"]] = count
        metric = next(iter(hpa.get("currentMetrics") or []), {}).get("pods", {})
        found = {
            "t": round(time.monotonic() - self.started, 1),
            "replicas": deployment["spec"]["replicas"],
            "ready": deployment["status"].get("readyReplicas", 0),
            "connections": connections,
            "hpa_desired": hpa.get("desiredReplicas"),
            "hpa_average": metric.get("current", {}).get("averageValue"),
        }
        self.samples.append(found)
        return found

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.sample)
            except Exception as error:  # a failed sample is recorded, not fatal
                self.samples.append({"t": round(time.monotonic() - self.started, 1),
                                     "error": repr(error)[:200]})  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def replica_steps(self) -> list[int]:
        """The Deployment's replicas as they changed, in order."""
        steps: list[int] = []
        for sample in self.samples:
            if "replicas" in sample and (not steps or steps[-1] != sample["replicas"]):
                steps.append(sample["replicas"])
        return steps


def hpa_decisions(release: Release) -> list[Obj]:
    """The HPA's rescale events, oldest first."""
    events = release.kube.items("events", release.namespace)
    found = [
        {
            "at": e.get("lastTimestamp") or e.get("eventTime"),
            "reason": e["reason"],
            "message": e.get("message", ""),
        }
        for e in events
        if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
    ]
    return sorted(found, key=lambda e: e["at"] or "")


async def test_hpa_scales_on_connections_through_the_custom_metrics_api(
    release: Release, tmp_path: Path
) -> None:
    began = time.monotonic()
    kube, namespace = release.kube, release.namespace
    redis_url = start_redis(kube, namespace)
    workdir = tmp_path / "metrics"
    workdir.mkdir()
    pipeline = MetricsPipeline(kube, namespace, workdir).start()
    stop = asyncio.Event()
    timeline = Timeline(release)
    recorder: asyncio.Task[None] | None = None
    traffic: Traffic | None = None
    # What the report holds, filled as the test goes (written on failure too).
    figures: dict[str, Any] = {
        "target_connections_per_pod": TARGET,
        "clients_at_peak": LOAD,
        "clients_after": RESIDUE,
        "scale_down_stabilization_seconds": SCALE_DOWN_WINDOW,
    }
    seconds: dict[str, float] = {}
    decisions: list[Obj] = []
    passed = False
    try:
        pipeline.track(namespace, SERVER_SELECTOR)
        cluster: dict[str, Any] = {
            "minReplicas": 1,
            "maxReplicas": 3,
            "drain": {"preStopSeconds": 2, "drainWindowSeconds": 3},
        }
        values = chart_values(redis_url, **cluster)
        values["autoscaling"] = {
            "metricSource": "prometheus-adapter",
            "targetConnectionsPerPod": TARGET,
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": SCALE_DOWN_WINDOW,
        }
        release.install(values)
        release.wait_serving(IMAGE, timeout=180)
        spec = parse(kube.get("roomcastcluster", CLUSTER_NAME, namespace)["spec"])
        hpa = kube.get("hpa", CLUSTER_NAME, namespace)["spec"]
        assert hpa["metrics"][0]["pods"]["metric"]["name"] == "roomcast_connections"
        drain_period = termination_grace_seconds(spec)
        figures["drain_period_seconds"] = drain_period
        assert hpa["behavior"]["scaleDown"]["policies"] == [
            {"type": "Pods", "value": 1, "periodSeconds": drain_period}
        ]
        first = release.server_pods()[0]["metadata"]["name"]
        figures["first_pod"] = first

        # The custom metrics API serves the pod's connections, as the HPA reads them.
        served = await asyncio.to_thread(
            eventually,
            lambda: pipeline.custom_metric(namespace, "roomcast_connections") == {first: 0.0},
            90,
            what="roomcast_connections served per pod by the custom metrics API",
        )
        assert served
        recorder = asyncio.create_task(timeline.run(stop))

        # Load: three pods' worth of SDK clients through the Service, all on the one pod.
        ws_url, api_url = release.urls()
        traffic = Traffic(
            ws_url, api_url, secret=release.secret("token-hmac-secret"),
            api_key=release.secret("api-key"), clients=LOAD, channels=5, per_client=1,
        )  # fmt: skip
        await traffic.start()
        seconds["load_connected"] = time.monotonic() - timeline.started
        figures["custom_metrics_api_at_peak"] = await asyncio.to_thread(
            eventually,
            lambda: (
                (found := pipeline.custom_metric(namespace, "roomcast_connections"))
                and found.get(first) == LOAD
                and found
            ),
            60,
            what=f"the custom metrics API serving {LOAD} connections on {first}",
        )

        def scaled_to(replicas: int) -> bool:
            deployment = kube.get("deployment", CLUSTER_NAME, namespace)
            live = [p for p in release.server_pods() if not p["metadata"].get("deletionTimestamp")]
            return (
                deployment["spec"]["replicas"] == replicas
                and deployment["status"].get("readyReplicas") == replicas
                and len(live) == replicas
            )

        await asyncio.to_thread(eventually, lambda: scaled_to(3), 180, what="scaled up to 3")
        seconds["scaled_up_to_3"] = time.monotonic() - timeline.started

        # The load ends but for a residue on the first pod: the two empty pods go.
        residue = traffic.client_logs[:RESIDUE]
        await asyncio.gather(
            *(c.disconnect() for c in traffic.clients[RESIDUE:]), return_exceptions=True
        )
        seconds["load_ended"] = time.monotonic() - timeline.started
        await asyncio.to_thread(eventually, lambda: scaled_to(1), 300, what="scaled down to 1")
        seconds["scaled_down_to_1"] = time.monotonic() - timeline.started
        stop.set()
        await recorder

        # The HPA's own decisions: up to 3, then down one pod per decision.
        decisions = hpa_decisions(release)
        sizes = [
            int(m.group(1))
            for d in decisions
            if d["reason"] == "SuccessfulRescale" and (m := NEW_SIZE.search(d["message"]))
        ]
        figures["hpa_sizes"] = sizes
        assert sizes and sizes[-1] == 1 and 3 in sizes, decisions
        after_peak = [1, *sizes][[1, *sizes].index(3) :]
        assert all(a - b <= 1 for a, b in itertools.pairwise(after_peak)), (
            f"more than one pod removed at once: {sizes}"
        )
        left = [
            p["metadata"]["name"]
            for p in release.server_pods()
            if not p["metadata"].get("deletionTimestamp")
        ]
        assert left == [first], f"the busy pod {first} was removed, {left} kept"
        assert all(log.reconnects == 0 for log in residue), "the residue's clients were moved"
        passed = True
    finally:
        stop.set()
        if recorder is not None:
            await asyncio.gather(recorder, return_exceptions=True)
        if traffic is not None:
            await traffic.close()
        if not decisions:
            with contextlib.suppress(Exception):
                decisions = hpa_decisions(release)
        pipeline.stop()
        seconds["suite"] = time.monotonic() - began
        write_report(
            "autoscale",
            {
                "passed": passed,
                **figures,
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
                "replica_steps": timeline.replica_steps(),
                "hpa_decisions": decisions,
                "timeline": timeline.samples,
            },
        )
