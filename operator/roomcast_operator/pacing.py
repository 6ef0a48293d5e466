"""When a RoomcastCluster's status is worth a write.

Every status write is an API write and a watch event. Anything the decisions changed
(a release record, a condition, the replica counts) is written at once. The connection
count alone is not: under connection churn it moves on every scrape, and writing each
move would cost a write per pass. It is written at most once per interval, and rides
along for free with any other change; the live figure is each pod's
``roomcast_connections`` metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


class StatusPacer:
    def __init__(self, connections_interval_seconds: float, clock: Callable[[], float]) -> None:
        self.connections_interval_seconds = connections_interval_seconds
        self._clock = clock
        self._written: dict[tuple[str, str], float] = {}

    def to_write(self, key: tuple[str, str], old: Obj, new: Obj, connections: int) -> bool:
        """Put the scraped count into ``new`` when it is due; True if a write is needed."""
        if new != old:
            new["connections"] = connections
            return True
        if old.get("connections") == connections:
            return False
        last = self._written.get(key)
        if last is not None and self._clock() - last < self.connections_interval_seconds:
            return False
        new["connections"] = connections
        return True

    def written(self, key: tuple[str, str]) -> None:
        self._written[key] = self._clock()
