"""One shared timer for every connection's pings, pong checks, stale checks and
presence refresh.

Connections are spread over the slots of a wheel that turns once per ping
interval. Each tick pings one slot and notes when its pongs are due, in time,
not in ticks: ticks that a stalled loop runs late, back to back, do not shorten
anyone's pong timeout. Clients of a slot whose pong deadline has passed and that
have not answered are disconnected. Sockets that have not sent
``connect`` wait in an insertion-ordered dict (their deadlines are in the same
order) and are closed as stale once past it. No per-connection timer.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .codes import DisconnectCode

if TYPE_CHECKING:
    from .client import Client


class Heartbeat:
    def __init__(
        self,
        ping_interval: float,
        pong_timeout: float,
        on_tick: Callable[[Client], None] | None = None,
    ) -> None:
        self.tick_seconds = min(1.0, pong_timeout / 2)
        self._slots: list[set[Client]] = [
            set() for _ in range(max(2, math.ceil(ping_interval / self.tick_seconds)))
        ]
        self._pong_timeout = pong_timeout
        self._pong_due: deque[tuple[float, int]] = deque()  # (deadline, slot), in order
        self._tick = 0
        self._on_tick = on_tick
        self._connecting: dict[Client, float] = {}

    def add(self, client: Client) -> None:
        slot = random.randrange(len(self._slots))
        client.heartbeat_slot = slot
        self._slots[slot].add(client)

    def remove(self, client: Client) -> None:
        if client.heartbeat_slot >= 0:
            self._slots[client.heartbeat_slot].discard(client)
            client.heartbeat_slot = -1

    def watch_stale(self, client: Client, deadline: float) -> None:
        """Close ``client`` as stale at ``deadline`` (monotonic) unless it connects first.

        Deadlines must be added in increasing order (a constant delay from now)."""
        self._connecting[client] = deadline

    def unwatch_stale(self, client: Client) -> None:
        self._connecting.pop(client, None)

    def tick(self, now: float | None = None) -> None:
        """Advance the wheel one step (called by ``run`` every ``tick_seconds``)."""
        now = time.monotonic() if now is None else now
        while self._connecting:
            client, deadline = next(iter(self._connecting.items()))
            if deadline > now:
                break
            del self._connecting[client]
            client.disconnect(DisconnectCode.STALE)
        due = self._pong_due
        while due and due[0][0] <= now:
            _, slot = due.popleft()
            for client in list(self._slots[slot]):
                if client.ping_pending:
                    client.disconnect(DisconnectCode.NO_PONG)
        self._tick += 1
        slot = self._tick % len(self._slots)
        for client in list(self._slots[slot]):
            client.send_ping()
            if self._on_tick is not None:
                self._on_tick(client)
        due.append((now + self._pong_timeout, slot))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # After a stall the wheel goes on from now instead of catching up in a burst.
            next_at = max(next_at + self.tick_seconds, loop.time())
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.tick()
