"""A short soak in every test run: after churn of every kind, the server is back where it was.

``make soak`` runs the same for as long as asked and charts it (see ``soak.py``); here a
half-minute per engine checks that connections, subscriptions, channels and presence
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
    assert result["counts"]["cycles"] > 100
    assert result["counts"]["bad_inputs"] and result["counts"]["aborts"]
    assert result["counts"]["recoveries"]
    assert not result["problems"], (result["problems"], result["baseline"], result["final"])
