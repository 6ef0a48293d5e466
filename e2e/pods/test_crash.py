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
  succeeds as a good release.

Afterwards every acknowledged publication must be with every subscriber.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from e2e import node as real_node
from e2e.bed import eventually
from e2e.pods.images import IMAGE, NEXT_IMAGE
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report
from e2e.pods.watch import busiest
from e2e.pods.workloads import kill_container, pods, restarts

CLIENTS = 200
ROLLOUT = {
    "maxSurge": 1,
    "progressDeadlineSeconds": 120,
    # A short observation keeps the suite short; the windows keep their defaults (three
    # of 20 s), which is what must ride out the Redis blip.
    "healthThresholds": {"observationSeconds": 15},
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
        await asyncio.sleep(2)
        await traffic.stop_publishing()
        await traffic.settle(timeout=90)

    report = traffic.verify()
    write_report("crash", {**report.to_dict(), **figures})
    status = release.status()
    assert verdict["outcome"] == "Succeeded", (verdict, release.operator_log())
    assert status["currentRevision"] == 2 and status["lastGoodRevision"] == 2, status
    assert not [r for r in status["releases"] if r["outcome"] == "Failed"], status
    assert report.lost == 0
    assert acked_before_redis > 0 and report.acknowledged > acked_before_redis
    assert report.clients_reconnected >= load * 0.9, "the killed pod's clients did not move"


def _record(status: dict[str, Any], revision: int) -> dict[str, Any] | None:
    """The latest release record of ``revision``."""
    found = [r for r in status.get("releases") or [] if r.get("revision") == revision]
    return found[-1] if found else None
