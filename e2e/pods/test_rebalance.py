"""After a scale-out, the operator moves clients from the hot pods to the new one.

600 centrifuge-python clients on two pods through the Service, a publisher running,
``spec.rebalance`` on. The RoomcastCluster scales out to three pods: the new pod takes
only new connections, so the operator rebalances: the hot pods leave the Service for a
moment and each sheds a paced share of its clients with 3020 closes; they reconnect to
the new pod and recover. Within five minutes every pod must be within 10 % of the
average, and afterwards every acknowledged publication is checked against every
subscriber.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from e2e.bed import eventually
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report
from e2e.pods.watch import scrape
from roomcast_operator.rebalance import balanced

CLIENTS = 600
TOLERANCE_PERCENT = 10
BALANCE_WITHIN_SECONDS = 300

pytestmark = pytest.mark.timeout(600)


def _counts(release: Release) -> dict[str, float]:
    counts = {}
    for pod in release.server_pods():
        ip = pod.get("status", {}).get("podIP")
        if ip and not pod["metadata"].get("deletionTimestamp"):
            try:
                counts[pod["metadata"]["name"]] = scrape(ip)["roomcast_connections"]
            except OSError:
                continue
    return counts


async def test_scale_out_rebalances_600_clients_to_within_ten_percent(release: Release) -> None:
    timeline: list[tuple[float, dict[str, float]]] = []
    # Switched on with the scale-out, so every move counted is the scale-out's.
    rebalance = {"enabled": False, "tolerancePercent": TOLERANCE_PERCENT}
    rebalance |= {"windowSeconds": 5, "intervalSeconds": 5}
    # The first release is judged good after 5 s of observation: rebalancing waits for a
    # steady fleet, and the default 30 s would be waiting, not rebalancing.
    rollout = {"maxSurge": 1, "healthThresholds": {"observationSeconds": 5}}
    async with loaded(
        release,
        clients=CLIENTS,
        channels=20,
        per_second=10,
        minReplicas=2,
        rebalance=rebalance,
        rollout=rollout,
    ) as traffic:
        before = await asyncio.to_thread(_counts, release)
        started = time.monotonic()
        release.patch_spec({"minReplicas": 3, "rebalance": {"enabled": True}})

        def three_serving() -> bool:
            return len(_counts(release)) == 3 and release.routed()

        await asyncio.to_thread(eventually, three_serving, 120, what="the third pod serving")
        scaled_s = time.monotonic() - started

        def is_balanced() -> bool:
            counts = _counts(release)
            timeline.append((round(time.monotonic() - started, 1), counts))
            return (
                len(counts) == 3
                and sum(counts.values()) == CLIENTS
                and balanced(counts, TOLERANCE_PERCENT)
            )

        await asyncio.to_thread(
            eventually,
            is_balanced,
            BALANCE_WITHIN_SECONDS,
            interval_seconds=1.0,
            what=f"every pod within {TOLERANCE_PERCENT} % of the average",
        )
        balanced_s = time.monotonic() - started
        await asyncio.to_thread(eventually, traffic.all_connected, 60, what="clients back")
        await traffic.stop_publishing()
        await traffic.settle(timeout=60)
        events = release.kube.run(
            "get", "events", "-n", release.namespace,
            "--field-selector", "reason=Rebalancing", "-o", "jsonpath={.items[*].message}",
        ).stdout  # fmt: skip

    report = traffic.verify()
    write_report(
        "rebalance",
        {
            **report.to_dict(),
            "connections_before": before,
            "scale_out_to_third_pod_serving_seconds": round(scaled_s, 1),
            "scale_out_to_balanced_seconds": round(balanced_s, 1),
            "connections_balanced": timeline[-1][1],
            "clients_moved": report.disconnect_codes.get("3020", 0),
            "steps": events,
            "timeline": timeline[:: max(1, len(timeline) // 40)],
        },
    )
    assert report.lost == 0
    assert report.acknowledged > 100, "the publisher barely ran"
    assert report.disconnect_codes.get("3020", 0) > 0, "nobody was moved"
    assert set(report.disconnect_codes) <= {"3020"}, report.disconnect_codes
