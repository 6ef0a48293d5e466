"""Voluntary disruptions of a loaded pod: ``kubectl delete pod`` and evictions.

With clients subscribed and a publisher running:

* the busiest pod is deleted: it leaves the Service, closes its clients with paced 3001
  closes within ``drainWindowSeconds``, and they land on the other pods and recover;
* two pods are evicted back to back through the Eviction API (what ``kubectl drain``
  does): the PodDisruptionBudget admits the first and refuses the second (429) until the
  replacement is Ready, then admits it.

Afterwards nothing acknowledged may be missing on any subscriber.
"""

from __future__ import annotations

import asyncio
import json
import time

from e2e.bed import eventually
from e2e.kube import KubectlError
from e2e.pods.images import IMAGE
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report
from e2e.pods.watch import MetricsWatch, busiest

CLIENTS = 200
DRAIN_WINDOW_SECONDS = 5


def _evict(release: Release, pod: str) -> tuple[bool, str]:
    """(admitted, message) of an Eviction for ``pod``, as kubectl drain sends it."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": release.namespace},
    }
    path = f"/api/v1/namespaces/{release.namespace}/pods/{pod}/eviction"
    try:
        release.kube.run("create", "--raw", path, "-f", "-", stdin=json.dumps(body))
    except KubectlError as error:
        return False, error.stderr.strip()
    return True, ""


def _wait_gone(release: Release, names: set[str]) -> None:
    def gone() -> bool:
        return not names & {p["metadata"]["name"] for p in release.server_pods()}

    eventually(gone, 120, what=f"{sorted(names)} gone")


async def test_delete_and_evict_loaded_pods(release: Release) -> None:
    watch = MetricsWatch(release)
    stop_watch = asyncio.Event()
    figures: dict[str, object] = {}
    async with loaded(release, clients=CLIENTS) as traffic:
        watcher = asyncio.create_task(watch.run(stop_watch))
        try:
            await asyncio.sleep(2)

            # 1. kubectl delete pod on the busiest pod.
            victim, load = busiest(release)
            deleted = victim["metadata"]["name"]
            started = time.monotonic()
            await asyncio.to_thread(
                release.kube.run, "delete", "pod", deleted, "-n", release.namespace, "--wait=false"
            )
            await asyncio.to_thread(release.wait_serving, IMAGE, 120)
            await asyncio.to_thread(_wait_gone, release, {deleted})
            await asyncio.to_thread(eventually, traffic.all_connected, 60, what="clients back")
            figures["delete"] = {
                "pod": deleted,
                "connections": load,
                "to_all_connected_seconds": round(time.monotonic() - started, 1),
            }
            await asyncio.to_thread(release.wait_serving, IMAGE, 60)

            # 2. Two evictions back to back: the PDB (maxUnavailable 1) admits one at a time.
            first, _ = busiest(release)
            others = [
                p["metadata"]["name"]
                for p in release.server_pods()
                if p["metadata"]["name"] != first["metadata"]["name"]
            ]
            # The disruption controller counts the replacement from step 1 as healthy a
            # moment after it is Ready; until then the budget rightly refuses.
            await asyncio.to_thread(
                eventually,
                lambda: _evict(release, first["metadata"]["name"])[0],
                60,
                what="the first eviction admitted",
            )
            refused, message = await asyncio.to_thread(_evict, release, others[0])
            assert not refused and "disruption budget" in message, message
            evict_started = time.monotonic()

            def second_admitted() -> bool:
                return _evict(release, others[0])[0]

            await asyncio.to_thread(eventually, second_admitted, 120, what="second eviction")
            evicted = [first["metadata"]["name"], others[0]]
            figures["eviction"] = {
                "evicted": evicted,
                "second_refused_with": message[:160],
                "second_admitted_after_seconds": round(time.monotonic() - evict_started, 1),
            }
            await asyncio.to_thread(release.wait_serving, IMAGE, 120)
            # Gone means drained: their clients were closed and moved, not still waiting
            # out the preStop pause when the traffic is checked.
            await asyncio.to_thread(_wait_gone, release, set(evicted))
            await asyncio.to_thread(eventually, traffic.all_connected, 60, what="clients back")
            await asyncio.sleep(2)
            await traffic.stop_publishing()
            await traffic.settle(timeout=60)
        finally:
            stop_watch.set()
            await watcher

    report = traffic.verify()
    drains = watch.drains()
    write_report("disruption", {**report.to_dict(), **figures, "drains": drains})
    assert report.lost == 0
    drained = {deleted, *evicted}
    assert drained <= set(drains), f"pods without a paced 3001 drain: {drained - set(drains)}"
    for name in drained:
        assert drains[name]["spread_s"] <= DRAIN_WINDOW_SECONDS + 1.0, (name, drains[name])
