"""The seam between protocol logic and the network.

``Client`` speaks to a ``Transport``: ``ws.server.ConnectionProtocol`` for WebSocket,
``stream.transport.StreamTransport`` for HTTP streaming and SSE.
"""

from __future__ import annotations

from typing import Protocol


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
