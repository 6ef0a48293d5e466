"""Involuntary failures: kill -9 of a server container's process, then of Redis.

With clients subscribed and a publisher running on three server pods and one Redis pod
(AOF, fsync always):

* the busiest server container's process gets SIGKILL, as from the OOM killer: no drain,
  its clients lose their connections at once, reconnect through the Service and recover
  from history; the kubelet restarts the container;
* then a new release rolls out, and during its observation the Redis container's process
  gets SIGKILL: the servers fail fast, publishes fail (never acknowledged), every pod's
  /ready answers 503 for a moment, Redis restarts from its AOF, and the servers and
  clients catch up. The operator must not roll the release back for this blip: it
  succeeds as a good release;
* then Redis is frozen (SIGSTOP) and a release rolls out into the outage: every pod, old
  and new, stays unready past ``readyTimeoutSeconds``. The old release is as unhealthy as
  the new one, so the release is inconclusive, not failed: the operator pauses its
  Deployment and says why, and resumes it once Redis answers again (SIGCONT).

Afterwards every acknowledged publication must be with every subscriber.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from e2e import node as real_node
from e2e.bed import eventually
from e2e.operator.harness import events
from e2e.pods.images import IMAGE, NEXT_IMAGE
from e2e.pods.release import CLUSTER_NAME, Release, loaded
from e2e.pods.report import write_report
from e2e.pods.watch import busiest
from e2e.pods.workloads import container_pid, kill_container, pods, restarts

CLIENTS = 200
ROLLOUT = {
    "maxSurge": 1,
    "progressDeadlineSeconds": 120,
    # A short observation keeps the suite short; the windows keep their defaults (three
    # of 20 s), which is what must ride out the Redis blip.
    "healthThresholds": {"observationSeconds": 15, "readyTimeoutSeconds": 10},
}


async def test_kill_9_of_a_server_and_of_redis(
    release: Release, node_layout: real_node.NodeLayout
) -> None:
    figures: dict[str, object] = {}
    async with loaded(release, clients=CLIENTS, rollout=ROLLOUT) as traffic:
        await asyncio.sleep(2)

        # 1. SIGKILL the busiest server container.
        victim, load = busiest(release)
        name = victim["metadata"]["name"]
        started = time.monotonic()
        kill_container(node_layout, victim)
        await asyncio.to_thread(
            eventually,
            lambda: restarts(release.kube.get("pod", name, release.namespace)) >= 1,
            60,
            what="server container restarted",
        )
        await asyncio.to_thread(eventually, traffic.all_connected, 60, what="clients back")
        figures["server_kill"] = {
            "pod": name,
            "connections": load,
            "to_all_connected_seconds": round(time.monotonic() - started, 1),
        }
        await asyncio.to_thread(release.wait_serving, IMAGE, 120)

        # 2. A new release after the good one; Redis is killed during its observation.
        await asyncio.to_thread(
            eventually,
            lambda: release.status().get("lastGoodRevision") == 1,
            120,
            what="revision 1 recorded good",
        )
        release_started = time.monotonic()
        release.patch_spec({"image": NEXT_IMAGE})
        await asyncio.to_thread(release.wait_serving, NEXT_IMAGE, 180)
        observing = _record(release.status(), 2)
        assert observing is not None and observing["outcome"] == "Progressing", observing
        acked_before_redis = traffic.publisher.acknowledged
        failures_before_redis = traffic.publisher.failures

        # SIGKILL Redis; it restarts from its append-only file.
        redis_pod = pods(release.kube, release.namespace, "app=redis")[0]
        started = time.monotonic()
        kill_container(node_layout, redis_pod)
        redis_name = redis_pod["metadata"]["name"]
        await asyncio.to_thread(
            eventually,
            lambda: restarts(release.kube.get("pod", redis_name, release.namespace)) >= 1,
            60,
            what="redis container restarted",
        )
        await asyncio.to_thread(release.wait_serving, NEXT_IMAGE, 120)
        published_again = traffic.publisher.acknowledged

        await asyncio.to_thread(
            eventually,
            lambda: traffic.publisher.acknowledged > published_again + 20,
            60,
            what="publishing acknowledged again",
        )
        figures["redis_kill"] = {
            "to_publishing_again_seconds": round(time.monotonic() - started, 1),
            "publish_failures_during_outage": traffic.publisher.failures - failures_before_redis,
        }

        def judged() -> dict[str, Any] | None:
            record = _record(release.status(), 2)
            return record if record and record["outcome"] != "Progressing" else None

        verdict = await asyncio.to_thread(eventually, judged, 180, what="revision 2 judged")
        figures["redis_blip_in_observation"] = {
            "outcome": verdict["outcome"],
            "reason": verdict.get("reason"),
            "release_to_judged_seconds": round(time.monotonic() - release_started, 1),
            "redis_kill_to_judged_seconds": round(time.monotonic() - started, 1),
        }
        after_blip = release.status()

        # 3. Redis frozen, and a release (back to the first image) rolled out into it.
        redis_pod = pods(release.kube, release.namespace, "app=redis")[0]
        redis_pid = container_pid(node_layout, redis_pod)
        started = time.monotonic()
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            await asyncio.to_thread(
                eventually,
                lambda: not any(_ready(p) for p in release.server_pods()),
                60,
                what="every server pod unready",
            )
            release.patch_spec({"image": IMAGE})

            def paused() -> dict[str, Any] | None:
                deployment = release.kube.get("deployment", CLUSTER_NAME, release.namespace)
                progressing = _condition(release.status(), "Progressing")
                inconclusive = progressing.get("reason") == "ReleaseInconclusive"
                return progressing if inconclusive and deployment["spec"].get("paused") else None

            inconclusive = await asyncio.to_thread(
                eventually, paused, 90, what="the release inconclusive, its rollout paused"
            )
            paused_after = time.monotonic() - started
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        thawed = time.monotonic()
        await asyncio.to_thread(
            eventually,
            lambda: (
                not release.kube.get("deployment", CLUSTER_NAME, release.namespace)["spec"].get(
                    "paused"
                )
            ),
            90,
            what="the rollout resumed",
        )
        figures["redis_outage_mid_rollout"] = {
            "freeze_to_paused_seconds": round(paused_after, 1),
            "thaw_to_resumed_seconds": round(time.monotonic() - thawed, 1),
            "condition": inconclusive["message"],
        }
        await asyncio.sleep(2)
        await traffic.stop_publishing()
        await traffic.settle(timeout=120)

    report = traffic.verify()
    write_report("crash", {**report.to_dict(), **figures})
    assert verdict["outcome"] == "Succeeded", (verdict, release.operator_log())
    assert after_blip["currentRevision"] == 2 and after_blip["lastGoodRevision"] == 2, after_blip
    assert "OldReleaseUnready" in inconclusive["message"], inconclusive
    status = release.status()
    assert not [r for r in status["releases"] if r["outcome"] == "Failed"], status
    reasons = [e["reason"] for e in events(release.kube, CLUSTER_NAME, release.namespace)]
    assert reasons.count("ReleaseInconclusive") == 1 and "ReleaseResumed" in reasons, reasons
    assert report.lost == 0
    assert acked_before_redis > 0 and report.acknowledged > acked_before_redis
    assert report.clients_reconnected >= load * 0.9, "the killed pod's clients did not move"


def _record(status: dict[str, Any], revision: int) -> dict[str, Any] | None:
    """The latest release record of ``revision``."""
    found = [r for r in status.get("releases") or [] if r.get("revision") == revision]
    return found[-1] if found else None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    return found[0] if found else {}


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod["status"].get("conditions") or []
    )
