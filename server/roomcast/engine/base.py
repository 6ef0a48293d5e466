"""The engine contract shared by the memory and Redis engines.

An engine is the cluster's shared state: it fans publications out to every node
(including the one that published), keeps per-channel history streams with
offsets and epochs, and keeps presence. Nodes hold only their own connections.

Contract every implementation keeps (checked by one test suite run against each):

* ``publish`` returns only after the publication is durable in history (when the
  channel has history); the returned position is what the publisher is told.
* Offsets in one epoch are gap-free: 1, 2, 3, ... A lost stream gets a new epoch.
* Each node's ``EngineEventHandler`` sees the publications of the channels it
  subscribed to, in offset order, each once; a node that cannot guarantee that
  (a hole it could not fill) calls ``on_insufficient_state`` for the channel.
* Methods raise ``EngineUnavailable`` when the backing store cannot be reached;
  callers turn it into a temporary error, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson


class EngineUnavailable(Exception):
    """The engine's backing store cannot be reached right now."""


@dataclass(slots=True)
class ClientInfo:
    """Who published or is present: user and client ids plus opaque raw JSON infos."""

    user: str
    client: str
    conn_info: bytes | None = None
    chan_info: bytes | None = None

    def wire(self) -> dict[str, Any]:
        """The protocol's ClientInfo object; raw JSON embedded as-is."""
        out: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.conn_info is not None:
            out["conn_info"] = orjson.Fragment(self.conn_info)
        if self.chan_info is not None:
            out["chan_info"] = orjson.Fragment(self.chan_info)
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.wire())

    @classmethod
    def decode(cls, raw: bytes | str) -> ClientInfo:
        obj = orjson.loads(raw)
        conn_info = obj.get("conn_info")
        chan_info = obj.get("chan_info")
        return cls(
            user=obj.get("user", ""),
            client=obj.get("client", ""),
            conn_info=None if conn_info is None else orjson.dumps(conn_info),
            chan_info=None if chan_info is None else orjson.dumps(chan_info),
        )


@dataclass(slots=True)
class Publication:
    """One message in a channel. ``data`` is compact raw JSON (no newlines), or in a
    namespace with ``publication_data_format: binary`` any bytes (see ``dataformat``)."""

    data: bytes
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] | None = None
    #: monotonic time when the server accepted it; for latency metrics only.
    created: float = field(default=0.0, compare=False)
    #: binary namespaces: the data as JSON connections take it, None if it is not JSON;
    #: b"" until ``dataformat.json_form`` decides (no JSON text is empty)
    json_form: bytes | None = field(default=b"", compare=False, repr=False)

    def wire(self) -> dict[str, Any]:
        """The protocol's Publication object, as used in pushes and history."""
        out: dict[str, Any] = {"data": orjson.Fragment(self.data)}
        if self.info is not None:
            out["info"] = self.info.wire()
        if self.offset:
            out["offset"] = self.offset
        if self.tags:
            out["tags"] = self.tags
        return out


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's stream: the offset within one epoch (incarnation)."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How a channel's stream is kept; from its namespace options."""

    size: int
    ttl_seconds: float
    meta_ttl_seconds: float


@dataclass(slots=True)
class HistoryResult:
    publications: list[Publication]
    position: StreamPosition


@dataclass(slots=True)
class NodeInfo:
    """What a node announces about itself (``/api/info``)."""

    uid: str
    name: str
    version: str
    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int
    uptime: int
    channels: dict[str, int] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uid": self.uid,
            "name": self.name,
            "version": self.version,
            "num_clients": self.num_clients,
            "num_users": self.num_users,
            "num_channels": self.num_channels,
            "num_subs": self.num_subs,
        }
        if self.uptime:
            out["uptime"] = self.uptime
        return out


class EngineEventHandler(Protocol):
    """The node side: what an engine calls when something arrives for this node."""

    #: the node's id in the cluster: ``send_to_node`` reaches it by this
    uid: str

    def on_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        """A publication for a channel this node subscribed to (epoch "" without history)."""

    def on_join(self, channel: str, info: ClientInfo) -> None: ...

    def on_leave(self, channel: str, info: ClientInfo) -> None: ...

    def on_control(self, payload: bytes) -> None:
        """A cluster-wide command (server API subscribe/disconnect/...) for every node."""

    def on_insufficient_state(self, channel: str) -> None:
        """Publications for the channel were lost and could not be recovered."""

    def on_node_message(self, payload: bytes) -> None:
        """A message sent to this node alone (``send_to_node``)."""


class Engine(Protocol):
    """Broker, history, presence and node registry in one small interface."""

    name: str

    @property
    def available(self) -> bool:
        """False while the backing store is unreachable (``/ready`` reports it)."""

    async def start(self, handler: EngineEventHandler) -> None: ...

    async def close(self) -> None: ...

    # Broker -------------------------------------------------------------
    async def subscribe(self, channel: str) -> None:
        """This node has local subscribers for the channel; deliver its events here."""

    async def unsubscribe(self, channel: str) -> None:
        """The last local subscriber left."""

    async def publish(
        self,
        channel: str,
        pub: Publication,
        *,
        history: HistoryOptions | None,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        """Publish to every node; with history, append first and return the position."""

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_control(self, payload: bytes) -> None: ...

    async def send_to_node(self, uid: str, payload: bytes) -> bool:
        """Deliver to one node by its ``uid``; False when no such node listens."""

    # History ------------------------------------------------------------
    async def history(
        self,
        channel: str,
        *,
        history: HistoryOptions,
        since: StreamPosition | None,
        limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        """Publications after ``since`` (or all retained); ``limit`` 0 = position only,
        -1 = no limit. The caller checks ``since.epoch`` against the result's epoch."""

    async def remove_history(self, channel: str) -> None: ...

    # Presence -----------------------------------------------------------
    async def add_presence(self, channel: str, info: ClientInfo, ttl_seconds: float) -> None: ...

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None: ...

    async def presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """(number of clients, number of distinct users)."""

    # Nodes --------------------------------------------------------------
    async def announce(self, info: NodeInfo, ttl_seconds: float) -> None: ...

    async def nodes(self) -> list[NodeInfo]: ...
