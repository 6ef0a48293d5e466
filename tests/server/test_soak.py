"""A short soak in every test run: after churn of every kind, the server is back where it was.

``make soak`` runs the same for as long as asked and charts it (see ``soak.py``), and
``make test`` runs it for ten minutes beside the e2e suite (``make soak-check``); here a
half-minute per engine checks that the churn was real (connections, bad input, aborts,
recoveries: see ``too_little``), that connections, subscriptions, channels and presence
entries are all gone, and fds, tasks and RSS back at the baseline.
"""

from __future__ import annotations

import pytest

from tests.server.soak import served, soak

SECONDS = 30.0
WORKERS = 10


@pytest.mark.parametrize("engine", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_churn_leaves_nothing_behind(engine: str) -> None:
    with served(engine) as target:
        result = await soak(target, SECONDS, WORKERS, interval=2.0)
    assert not result["problems"], (result["problems"], result["baseline"], result["final"])
