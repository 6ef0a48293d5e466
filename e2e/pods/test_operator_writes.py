"""The operator of a loaded cluster is quiet: a few API writes a minute at steady state.

Three server pods on the real node carry 180 subscribed SDK clients and 10 publications
a second, and 30 more clients connect and disconnect every few seconds, so each pod's
count keeps crossing 64 (a power of two, where the deletion-cost bucket changes) and the
cluster's total changes on every scrape. Every write the operator's ServiceAccount makes
over two minutes is read from the bed API server's audit log.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from centrifuge import Client

from e2e.audit import summary, writes_by
from e2e.bed import eventually
from e2e.pods.release import Release, loaded
from e2e.pods.report import write_report
from e2e.pods.traffic import connection_token

MEASURE_SECONDS = 90.0
CHURN_CLIENTS = 30
MOST_WRITES_PER_MINUTE = 6.0
"""Lease renewals (every 15 s by default: 4 a minute) plus a status write for the
connection count (at most one a minute); the test's 2 s renewals are counted apart."""


async def _churn(ws_url: str, secret: str, stop: asyncio.Event) -> int:
    """Connect and disconnect CHURN_CLIENTS clients over and over; how many cycles ran."""
    cycles = 0
    while not stop.is_set():
        clients = [
            Client(ws_url, token=connection_token(secret, f"churn{cycles}-{i}"))
            for i in range(CHURN_CLIENTS)
        ]
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.sleep(2.5)
        await asyncio.gather(*(c.disconnect() for c in clients))
        await asyncio.sleep(2.5)
        cycles += 1
    return cycles


async def test_operator_writes_a_few_times_a_minute_under_load(release: Release) -> None:
    bed = release.cluster.bed
    assert bed is not None
    async with loaded(release, clients=180, channels=10, per_second=10) as traffic:

        def settled() -> bool:
            st = release.status()
            last = (st.get("releases") or [{}])[-1]
            return last.get("outcome") == "Succeeded"

        await asyncio.to_thread(eventually, settled, 120, what="release settled")
        await asyncio.sleep(5)  # the pass after success writes its conditions
        ws_url, _ = release.urls()
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(ws_url, release.secret("token-hmac-secret"), stop))
        since = datetime.now(UTC)
        started = time.monotonic()
        await asyncio.sleep(MEASURE_SECONDS)
        stop.set()
        cycles = await churn
        elapsed = time.monotonic() - started
        assert traffic.all_connected()

    account = f"{release.name}-operator"
    writes = writes_by(bed, release.namespace, account, since)
    writes = [w for w in writes if w.at.timestamp() <= since.timestamp() + elapsed]
    leases = [w for w in writes if w.resource == "leases"]
    others = [w for w in writes if w.resource != "leases"]
    per_minute = len(others) * 60 / elapsed
    # The test runs renewals every 2 s; the chart's default renews every 15 s.
    default_lease_per_minute = 60 / 15
    write_report(
        "operator_writes",
        {
            "seconds": round(elapsed, 1),
            "churn_cycles": cycles,
            "writes_besides_lease": len(others),
            "writes_besides_lease_per_minute": round(per_minute, 2),
            "lease_renewals": len(leases),
            "what": summary(others),
        },
    )
    print(
        f"\n{elapsed:.0f} s under churn ({cycles} cycles of {CHURN_CLIENTS} clients): "
        f"{len(others)} writes besides the Lease ({per_minute:.2f}/min: {summary(others)}); "
        f"{len(leases)} lease renewals at the test's 2 s"
    )
    assert per_minute + default_lease_per_minute <= MOST_WRITES_PER_MINUTE, summary(others)
