"""A rolling update of a loaded fleet on real pods loses nothing acknowledged.

500 centrifuge-python clients, each subscribed to two history channels, connect through
the Service to three pods; a publisher sends through the HTTP API at a steady rate. The
RoomcastCluster's image changes: the operator rolls the Deployment and, once a new pod is
Ready, takes the old release's pods out of the Service; each old pod then drains its
clients with paced 3001 closes over ``drainWindowSeconds``, and they reconnect to the new
release, once each, and recover. Afterwards
every acknowledged publication is checked, message by message, against every subscriber.
"""

from __future__ import annotations

import asyncio
import os
import time

from e2e.bed import eventually
from e2e.pods.images import NEXT_IMAGE
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report
from e2e.pods.watch import MetricsWatch, scrape

CLIENTS = int(os.environ.get("ROOMCAST_E2E_CLIENTS", "500"))
DRAIN_WINDOW_SECONDS = 5


async def test_rolling_update_with_500_clients_loses_nothing(release: Release) -> None:
    watch = MetricsWatch(release)
    stop_watch = asyncio.Event()
    async with loaded(release, clients=CLIENTS, channels=20, per_second=20) as traffic:
        old_pods = {p["metadata"]["name"] for p in release.server_pods()}
        watcher = asyncio.create_task(watch.run(stop_watch))
        try:
            await asyncio.sleep(3)
            before = {
                p["metadata"]["name"]: scrape(p["status"]["podIP"])["roomcast_connections"]
                for p in release.server_pods()
            }
            rollout_started = time.monotonic()
            release.patch_spec({"image": NEXT_IMAGE})
            await asyncio.to_thread(release.wait_serving, NEXT_IMAGE, 240)
            rollout_s = time.monotonic() - rollout_started

            # Old pods are gone once drained; then let the clients settle.
            def old_pods_gone() -> bool:
                return not old_pods & {p["metadata"]["name"] for p in release.server_pods()}

            await asyncio.to_thread(eventually, old_pods_gone, 120, what="old pods gone")
            await asyncio.sleep(3)
            await traffic.stop_publishing()
            await traffic.settle(timeout=60)
            settled_s = time.monotonic() - rollout_started
        finally:
            stop_watch.set()
            await watcher

    report = traffic.verify()
    drains = {name: d for name, d in watch.drains().items() if name in old_pods}
    figures = {
        **report.to_dict(),
        "rollout_seconds": round(rollout_s, 1),
        "rollout_to_settled_seconds": round(settled_s, 1),
        "drain_window_seconds": DRAIN_WINDOW_SECONDS,
        "connections_before": before,
        "drains": drains,
    }
    write_report("rollout", figures)
    assert report.lost == 0
    assert report.acknowledged > 200, "the publisher barely ran"
    assert report.clients_reconnected > 0, "no client was moved by the rollout"
    # Old pods leave the Service once a new pod is Ready: a drained client lands on the new
    # release and is never drained again.
    assert report.reconnects_per_client_max == 1, report
    # Every old pod drained its clients with paced shutdown closes, within the window.
    assert set(drains) == old_pods, f"pods without a 3001 drain: {old_pods - set(drains)}"
    for name, drain in drains.items():
        assert drain["spread_s"] <= DRAIN_WINDOW_SECONDS + 1.0, (name, drain)
