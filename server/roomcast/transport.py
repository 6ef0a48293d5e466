"""The seam between protocol logic and the network.

``Client`` speaks to a ``Transport``; only ``websocket.py`` knows aiohttp.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    def send(self, message: bytes) -> None:
        """Queue one encoded protocol message; written with others of the same loop turn."""

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with this code. Safe to call twice."""

    @property
    def closed(self) -> bool: ...
