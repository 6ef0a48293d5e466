"""A recording EngineEventHandler and a deadline-based wait for engine tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from roomcast.engine import ClientInfo, Publication


@dataclass
class Recorder:
    """Everything an engine handed to this node, in arrival order."""

    publications: list[tuple[str, Publication, str]] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)
    insufficient: list[str] = field(default_factory=list)

    def on_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        self.publications.append((channel, pub, epoch))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info.client))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info.client))

    def on_control(self, payload: bytes) -> None:
        self.controls.append(payload)

    def on_insufficient_state(self, channel: str) -> None:
        self.insufficient.append(channel)

    def offsets(self, channel: str) -> list[int]:
        return [pub.offset for ch, pub, _ in self.publications if ch == channel]

    def data(self, channel: str) -> list[bytes]:
        return [pub.data for ch, pub, _ in self.publications if ch == channel]


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(0.01)
