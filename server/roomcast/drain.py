"""Graceful drain: readiness off, then shutdown codes paced across a window.

Clients are disconnected with 3001 ``shutdown`` (they reconnect, to other pods)
in a shuffled order, an even share per step, so the reconnects reach the rest of
the fleet spread over ``drain_window`` instead of as one storm.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from .codes import DisconnectCode

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger(__name__)

STEP_SECONDS = 0.1


async def close_paced(
    clients: Sequence[Client], window_seconds: float, code: DisconnectCode
) -> None:
    """Close ``clients`` in order with ``code``, an even share every step of the window."""
    loop = asyncio.get_running_loop()
    steps = max(1, math.floor(window_seconds / STEP_SECONDS))
    per_step = max(1, math.ceil(len(clients) / steps))
    start = loop.time()
    for step, first in enumerate(range(0, len(clients), per_step)):
        await asyncio.sleep(max(0.0, start + step * STEP_SECONDS - loop.time()))
        for client in clients[first : first + per_step]:
            client.disconnect(code)


async def drain(
    connections: Callable[[], Collection[Client]],
    window_seconds: float,
    timeout_seconds: float,
) -> bool:
    """Disconnect every connection across the window; True if all closed in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    clients = list(connections())
    random.shuffle(clients)
    log.info("draining", extra={"connections": len(clients), "window_seconds": window_seconds})
    await close_paced(clients, window_seconds, DisconnectCode.SHUTDOWN)
    # Late arrivals (connected before readiness flipped) and stragglers.
    while connections() and loop.time() < deadline:
        for client in list(connections()):
            client.disconnect(DisconnectCode.SHUTDOWN)
        await asyncio.sleep(STEP_SECONDS)
    remaining = len(connections())
    if remaining:
        log.warning("drain timed out", extra={"connections": remaining})
    return remaining == 0
