"""Shedding: a node asks some of its clients to reconnect elsewhere, for balance.

After a scale-out the new pods take only new connections while the old ones stay hot.
The operator, which reads every pod's connection count, asks a hot pod (the server API's
``shed``, sent to the pod's own address) to move a number of its clients. They are
picked at random and closed with 3020 ``rebalance``, a code the SDKs reconnect on, an even
share every step of a window, so the pods that take them over see a trickle rather than a
storm; through the load balancer they land on other pods and recover their subscriptions
from history. One shed runs at a time, and a draining node sheds nothing: its clients are
all leaving anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from .codes import DisconnectCode, ErrorCode, ProtocolError
from .drain import close_paced

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

MAX_WINDOW_SECONDS = 300.0


class Shedder:
    """The node's one shed at a time."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._task: asyncio.Task[None] | None = None

    @property
    def shedding(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, count: int, window_seconds: float) -> int:
        """Begin closing ``count`` random clients (fewer if there are fewer) over the
        window; how many it will close. Refused while another shed runs or the node drains."""
        if self.node.draining:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "draining")
        if self.shedding:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, "already shedding")
        clients = list(self.node.clients.values())
        picked = random.sample(clients, min(count, len(clients)))
        log.info("shedding", extra={"connections": len(picked), "window_seconds": window_seconds})
        self._task = asyncio.create_task(
            close_paced(picked, window_seconds, DisconnectCode.REBALANCE), name="shed"
        )
        return len(picked)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
