"""A recording EngineEventHandler for engine tests (and the shared wait they use)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from roomcast.engine import ClientInfo, Publication
from tests.support.waiting import eventually

__all__ = ["Recorder", "eventually"]


@dataclass
class Recorder:
    """Everything an engine handed to this node, in arrival order."""

    publications: list[tuple[str, Publication, str]] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)
    insufficient: list[str] = field(default_factory=list)
    node_messages: list[bytes] = field(default_factory=list)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

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

    def on_node_message(self, payload: bytes) -> None:
        self.node_messages.append(payload)

    def offsets(self, channel: str) -> list[int]:
        return [pub.offset for ch, pub, _ in self.publications if ch == channel]

    def data(self, channel: str) -> list[bytes]:
        return [pub.data for ch, pub, _ in self.publications if ch == channel]
