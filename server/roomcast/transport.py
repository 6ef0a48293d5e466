"""The seam between protocol logic and the network.

``Client`` speaks to a ``Transport``: ``ws.server.ConnectionProtocol`` for WebSocket,
``stream.transport.StreamTransport`` for HTTP streaming and SSE.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .codes import DisconnectCode
from .metrics import Metrics

#: Closes logged at debug level: the server's own orderly ones.
QUIET_CLOSES = frozenset({DisconnectCode.SHUTDOWN, DisconnectCode.CONNECTION_CLOSED})


def record_close(
    log: logging.Logger, metrics: Metrics, code: int, reason: str, client: str
) -> None:
    """Every close the server starts, on any transport, passes here once: counted by
    code in ``roomcast_disconnects_total`` and logged (orderly ones at debug level)."""
    metrics.count_disconnect(code)
    level = logging.DEBUG if code in QUIET_CLOSES else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "disconnect", extra={"code": code, "reason": reason, "client": client})


class Transport(Protocol):
    def send(self, message: bytes) -> None:
        """Queue one encoded protocol message; written with others of the same loop turn."""

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with this code. Safe to call twice.

        The transport counts the close in ``roomcast_disconnects_total`` and logs it.
        """

    @property
    def closed(self) -> bool: ...

    @property
    def binary(self) -> bool:
        """The connection speaks the Protobuf encoding (binary frames), not JSON."""
        ...

    @property
    def session(self) -> str:
        """The emulation session id commands arrive under ("" for a WebSocket)."""
        ...
