"""A rolling update of a loaded fleet on real pods loses nothing acknowledged.

500 centrifuge-python clients, each subscribed to two history channels, connect through
the Service to three pods; a publisher sends through the HTTP API at a steady rate. The
RoomcastCluster's image changes: the operator rolls the Deployment, each old pod is taken
out of the Service (preStop), drains its clients with paced 3001 closes over
``drainWindowSeconds``, and the clients reconnect to other pods and recover. Afterwards
every acknowledged publication is checked, message by message, against every subscriber.
"""

from __future__ import annotations

import asyncio
import os
import time

from e2e.pods.harness import (
    IMAGE,
    NEXT_IMAGE,
    MetricsWatch,
    Release,
    chart_values,
    scrape,
    start_redis,
    write_report,
)
from e2e.pods.traffic import Traffic

CLIENTS = int(os.environ.get("ROOMCAST_E2E_CLIENTS", "500"))
DRAIN_WINDOW_SECONDS = 5


async def test_rolling_update_with_500_clients_loses_nothing(release: Release) -> None:
    redis_url = start_redis(release.kube, release.namespace)
    release.install(chart_values(redis_url))
    release.wait_serving(IMAGE, timeout=180)
    old_pods = {p["metadata"]["name"] for p in release.server_pods()}
    ws_url, api_url = release.urls()
    traffic = Traffic(
        ws_url,
        api_url,
        secret=release.secret("token-hmac-secret"),
        api_key=release.secret("api-key"),
        clients=CLIENTS,
    )
    watch = MetricsWatch(release)
    stop_watch = asyncio.Event()
    watcher = asyncio.create_task(watch.run(stop_watch))
    try:
        await traffic.start()
        traffic.start_publishing(per_second=20)
        await asyncio.sleep(3)

        before = {
            p["metadata"]["name"]: scrape(p["status"]["podIP"])["roomcast_connections"]
            for p in release.server_pods()
        }
        rollout_started = time.monotonic()
        release.patch_spec({"image": NEXT_IMAGE})
        await asyncio.to_thread(release.wait_serving, NEXT_IMAGE, 240)
        rollout_s = time.monotonic() - rollout_started

        # Old pods are gone once drained; then let the clients settle and stop publishing.
        def old_pods_gone() -> bool:
            return not old_pods & {p["metadata"]["name"] for p in release.server_pods()}

        await asyncio.to_thread(_wait, old_pods_gone, 120)
        await asyncio.sleep(3)
        await traffic.stop_publishing()
        await traffic.settle(timeout=60)
        settled_s = time.monotonic() - rollout_started
    finally:
        stop_watch.set()
        await watcher
        await traffic.close()

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
    # Every old pod drained its clients with paced shutdown closes, within the window.
    assert set(drains) == old_pods, f"pods without a 3001 drain: {old_pods - set(drains)}"
    for name, drain in drains.items():
        assert drain["spread_s"] <= DRAIN_WINDOW_SECONDS + 1.0, (name, drain)


def _wait(probe: object, timeout: float) -> None:
    from e2e.bed import eventually

    eventually(probe, timeout, interval_seconds=0.5, what="old pods gone")  # type: ignore[arg-type]
