"""Bad releases on real pods are rolled back by the operator, with clients connected.

Two kinds of bad build, each released by changing the RoomcastCluster's image while
clients hold subscriptions and a publisher runs:

* one whose process exits at start: its pod never becomes Ready, so no old pod is
  touched (maxUnavailable is 0) and the operator rolls back when the pod stays unready;
* one that starts, passes every probe and refuses every connect: old pods drain into it,
  the clients' reconnects fail, and only the operator's realtime judge (connect error
  ratio on the new pods, from the deltas of their /metrics over two windows in a row)
  can tell it is bad.

Measured: from the image change to the previous release serving every client again
(the Deployment back on the old image and every client connected). Then the traffic is
checked message by message: nothing acknowledged may be lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from e2e.pods.images import CRASH_IMAGE, IMAGE, REFUSE_IMAGE
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report

CLIENTS = 100
HEALTH = {
    "readyTimeoutSeconds": 20,
    "observationSeconds": 20,
    "minSamples": 10,
    "maxConnectErrorRatio": 0.2,
    # Short windows, so the refusing build is caught within the drain of one old pod.
    "windowSeconds": 5,
    "consecutiveBadWindows": 2,
}


@pytest.mark.parametrize(
    ("bad_image", "expected_reason"),
    [(CRASH_IMAGE, "never-ready"), (REFUSE_IMAGE, "refuses-connects")],
    ids=["never-ready", "refuses-connects"],
)
async def test_bad_release_is_rolled_back(
    release: Release, bad_image: str, expected_reason: str
) -> None:
    rollout = {"maxSurge": 1, "healthThresholds": HEALTH}
    async with loaded(release, clients=CLIENTS, rollout=rollout) as traffic:
        try:
            # The first release must have passed its observation to be a rollback target.
            await asyncio.to_thread(
                _eventually, lambda: release.status().get("lastGoodRevision"), 120, "a good release"
            )
            started = time.monotonic()
            release.patch_spec({"image": bad_image})

            def rolled_back() -> bool:
                return release.serving(IMAGE) and _failed_release(release.status()) is not None

            await asyncio.to_thread(_eventually, rolled_back, 150, "rollback to the old image")
            rolled_back_s = time.monotonic() - started
            await asyncio.to_thread(
                _eventually, traffic.all_connected, 120, "every client connected"
            )
            serving_all_s = time.monotonic() - started
            await asyncio.sleep(2)
            await traffic.stop_publishing()
            await traffic.settle(timeout=60)
        except Exception:
            print(release.operator_log())
            raise

    failed = _failed_release(release.status())
    assert failed is not None
    report = traffic.verify()
    write_report(
        f"rollback-{expected_reason}",
        {
            **report.to_dict(),
            "failed_reason": failed.get("reason"),
            "image_change_to_rolled_back_seconds": round(rolled_back_s, 1),
            "image_change_to_every_client_served_seconds": round(serving_all_s, 1),
        },
    )
    assert report.lost == 0
    if bad_image == CRASH_IMAGE:
        # The unready surge pod never took a client: nobody had to move.
        assert report.clients_reconnected == 0, report
    else:
        assert report.clients_reconnected > 0, "no client met the bad release"


def _failed_release(status: dict[str, Any]) -> dict[str, Any] | None:
    for record in status.get("releases") or []:
        if record.get("outcome") == "Failed":
            return record  # type: ignore[no-any-return]
    return None


def _eventually(probe: Any, timeout: float, what: str) -> None:
    from e2e.bed import eventually

    eventually(probe, timeout, interval_seconds=0.5, what=what)
