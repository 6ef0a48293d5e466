"""Local subscribers of this node and the fan-out hot path.

A publication is encoded once per channel and handed to each subscriber's
transport with one synchronous call: no task and no await per recipient. The
transport coalesces what one connection receives in a loop turn into one write.

A subscriber that is still being set up (its subscribe reply not yet written)
is "pending": publications for it are buffered, so the reply always precedes
the pushes and a recovering subscriber misses nothing between the history read
and its registration.

The history read can also run *ahead* of this node: with Redis, a publication can
be in the stream (and so in a recovery reply) before it arrives here over pub/sub.
A subscriber activated at such a position is "ahead" until the node's stream
reaches it, and is skipped for the offsets it already has. Only channels with
such a subscriber pay for the check, and only until it catches up.

A subscriber that negotiated fossil deltas receives each publication's data as a JSON
string (in the JSON encoding; as bytes in Protobuf): the full text, or a delta against
the data it received before. Subscribers on Protobuf connections get the publication in
that encoding. Each variant is encoded once per publication for all who need it, and
only channels with such a subscriber pay for the check.

In a binary namespace (``publication_data_format: binary``) a JSON connection is
"guarded": a publication whose data is not JSON closes it (3506, see ``dataformat``)
instead of being sent, and JSON spread over lines goes compacted. Whether the data is
JSON is decided once per publication, and only on channels with such a subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from . import fossil, protobuf
from .dataformat import json_form, wire_with
from .engine import ClientInfo, Publication

if TYPE_CHECKING:
    from .metrics import Metrics

Send = Callable[[bytes], None]


@dataclass(slots=True, eq=False)
class Subscriber:
    """One connection's membership in one channel, as the fan-out sees it."""

    client_id: str
    send: Send
    push_join_leave: bool
    #: set while pending: publications that arrived before the subscribe reply
    buffer: list[Publication] | None = field(default_factory=list)
    #: the connection speaks the Protobuf encoding
    binary: bool = False
    #: fossil delta negotiated: data goes as a JSON string (full text or delta)
    delta: bool = False
    #: the namespace publishes deltas (``delta_publish``), not only full strings
    delta_publish: bool = False
    #: the client holds the channel's previous data, so a delta applies
    delta_base: bool = False
    #: set for a JSON connection in a binary namespace: called, instead of a send, for a
    #: publication whose data is not JSON (the connection closes)
    refuse: Callable[[], None] | None = None

    @property
    def special(self) -> bool:
        """Served by the slow path: binary, taking deltas, or guarded."""
        return self.binary or self.delta or self.refuse is not None


def encode_push(channel: str, kind: str, body: object, binary: bool = False) -> bytes:
    push = {"push": {"channel": channel, kind: body}}
    return protobuf.encode_reply(push) if binary else orjson.dumps(push)


def string_wire(
    pub: Publication, data: bytes | None = None, full: bytes | None = None
) -> dict[str, Any]:
    """The Publication object for a delta subscriber: ``data`` as a JSON string, holding
    the full text (``full``, by default the publication's data), or (with ``data`` given)
    a fossil delta flagged ``delta``."""
    out = pub.wire()
    if data is None:
        out["data"] = (pub.data if full is None else full).decode()
    else:
        out["data"] = data.decode()
        out["delta"] = True
    return out


def _bump(counts: dict[str, int], key: str, step: int) -> None:
    """Add ``step`` to a count, forgetting it at zero."""
    total = counts.get(key, 0) + step
    if total:
        counts[key] = total
    else:
        counts.pop(key, None)


class Hub:
    """channel -> subscribers of this node; fan-out and join/leave delivery."""

    def __init__(self, metrics: Metrics) -> None:
        self._channels: dict[str, dict[str, Subscriber]] = {}
        self._pending: dict[str, dict[str, Subscriber]] = {}
        #: channel -> client id -> last offset that client already has (see the module doc)
        self._ahead: dict[str, dict[str, int]] = {}
        #: channel -> offset of the last publication fanned out here
        self._offsets: dict[str, int] = {}
        #: channel -> live subscribers here that are binary, take deltas or are guarded
        #: (the slow path)
        self._special: dict[str, int] = {}
        #: channel -> its guarded subscribers, and those of them that are nothing else: when
        #: all special ones are, a publication whose data is JSON as it is goes the plain way
        self._guarded: dict[str, int] = {}
        self._guarded_only: dict[str, int] = {}
        #: channel -> the data its delta subscribers last received
        self._delta_prev: dict[str, bytes] = {}
        self._metrics = metrics
        self._num_subs = 0

    # Membership ---------------------------------------------------------
    def add_pending(self, channel: str, sub: Subscriber) -> bool:
        """Start buffering for a subscriber; True if the node had no one on the channel."""
        first = channel not in self._channels and channel not in self._pending
        self._pending.setdefault(channel, {})[sub.client_id] = sub
        return first

    def activate(self, channel: str, client_id: str) -> list[Publication]:
        """Make a pending subscriber live; returns what was buffered meanwhile."""
        pending = self._pending.get(channel)
        sub = pending.pop(client_id, None) if pending is not None else None
        if pending is not None and not pending:
            del self._pending[channel]
        if sub is None:
            return []
        buffered, sub.buffer = sub.buffer or [], None
        self._channels.setdefault(channel, {})[client_id] = sub
        self._num_subs += 1
        if sub.special:
            # What a delta client holds is the subscribe reply's last publication, not
            # necessarily this node's: its first live publication goes in full.
            sub.delta_base = False
            self._special[channel] = self._special.get(channel, 0) + 1
            if sub.refuse is not None:
                _bump(self._guarded, channel, 1)
                if not sub.delta:
                    _bump(self._guarded_only, channel, 1)
        return buffered

    def deliver_after(self, channel: str, client_id: str, offset: int) -> None:
        """A live subscriber already has every publication up to ``offset``: skip those
        still on their way to this node instead of sending them twice."""
        if offset > self._offsets.get(channel, 0) and client_id in self._channels.get(channel, ()):
            self._ahead.setdefault(channel, {})[client_id] = offset

    def remove(self, channel: str, client_id: str) -> bool:
        """Drop a subscriber (live or pending); True if the channel has no one left here."""
        ahead = self._ahead.get(channel)
        if ahead is not None:
            ahead.pop(client_id, None)
            if not ahead:
                del self._ahead[channel]
        subs = self._channels.get(channel)
        removed = subs.pop(client_id, None) if subs is not None else None
        if subs is not None and removed is not None:
            self._num_subs -= 1
            if removed.special:
                self._special[channel] -= 1
                if removed.refuse is not None:
                    _bump(self._guarded, channel, -1)
                    if not removed.delta:
                        _bump(self._guarded_only, channel, -1)
                if not self._special[channel]:
                    del self._special[channel]
                    self._delta_prev.pop(channel, None)
            if not subs:
                del self._channels[channel]
                self._offsets.pop(channel, None)
        pending = self._pending.get(channel)
        if pending is not None:
            pending.pop(client_id, None)
            if not pending:
                del self._pending[channel]
        return channel not in self._channels and channel not in self._pending

    @property
    def idle(self) -> bool:
        """No subscriber of any kind (live, pending, ahead) on any channel."""
        return not (self._channels or self._pending or self._ahead)

    def has_subscribers(self, channel: str) -> bool:
        return channel in self._channels or channel in self._pending

    @property
    def num_subscriptions(self) -> int:
        return self._num_subs

    @property
    def num_channels(self) -> int:
        return len(self._channels)

    def channels(self) -> Iterator[tuple[str, int]]:
        for channel, subs in self._channels.items():
            yield channel, len(subs)

    def subscriber_ids(self, channel: str) -> list[str]:
        return list(self._channels.get(channel, ()))

    # Fan-out ------------------------------------------------------------
    def broadcast_publication(self, channel: str, pub: Publication) -> None:
        """Deliver one publication to every local subscriber of the channel."""
        pending = self._pending.get(channel)
        if pending:
            for sub in pending.values():
                if sub.buffer is not None:
                    sub.buffer.append(pub)
        subs = self._channels.get(channel)
        if not subs:
            return
        message = encode_push(channel, "pub", pub.wire())
        if pub.offset:
            self._offsets[channel] = pub.offset
        ahead = self._ahead.get(channel)
        if channel in self._special and not self._plain_for_all(channel, pub):
            delivered = self._send_special(channel, subs, ahead, pub, message)
        elif ahead is not None and pub.offset:
            delivered = self._send_skipping(channel, subs, ahead, pub.offset, message)
        else:
            for sub in subs.values():
                sub.send(message)
            delivered = len(subs)
        metrics = self._metrics
        metrics.deliveries += delivered
        if pub.created:
            metrics.track_publish_latency(pub.created)

    def _plain_for_all(self, channel: str, pub: Publication) -> bool:
        """A channel whose special subscribers are all guarded, and data that is JSON as
        it is: every subscriber takes the plain message."""
        return (
            self._special[channel] == self._guarded_only.get(channel) and json_form(pub) is pub.data
        )

    def _send_skipping(
        self,
        channel: str,
        subs: dict[str, Subscriber],
        ahead: dict[str, int],
        offset: int,
        message: bytes,
    ) -> int:
        """Fan out to everyone but the subscribers who already have ``offset``."""
        skip = self._take_skips(channel, ahead, offset)
        for client_id, sub in subs.items():
            if client_id not in skip:
                sub.send(message)
        return len(subs) - len(skip)

    def _take_skips(self, channel: str, ahead: dict[str, int], offset: int) -> set[str]:
        """The subscribers who already have ``offset``; those the stream has now caught
        up with go back to the plain path."""
        skip = {client_id for client_id, last in ahead.items() if offset <= last}
        for client_id in [c for c, last in ahead.items() if offset >= last]:
            del ahead[client_id]
        if not ahead:
            del self._ahead[channel]
        return skip

    def _send_special(
        self,
        channel: str,
        subs: dict[str, Subscriber],
        ahead: dict[str, int] | None,
        pub: Publication,
        message: bytes,
    ) -> int:
        """Fan out on a channel with binary, delta or guarded subscribers. A delta
        subscriber gets the shared delta when it holds the previous data, else the full
        payload (and holds it from then on); each variant is encoded once, when first
        needed. A guarded subscriber is closed for data that is not JSON."""
        skip = self._take_skips(channel, ahead, pub.offset) if ahead and pub.offset else set()
        prev = self._delta_prev.get(channel)
        # (binary, variant) -> message; variant 0 plain, 1 full string, 2 delta,
        # 3 plain and 4 full string with the data compacted for guarded subscribers
        encoded: dict[tuple[bool, int], bytes] = {(False, 0): message}
        patch: bytes | None = None
        refused: list[Subscriber] = []
        guarded = channel in self._guarded  # (else nothing more is checked per subscriber)
        form: bytes | None = b""  # what guarded subscribers take; decided at the first

        def variant(binary: bool, kind: int) -> bytes:
            out = encoded.get((binary, kind))
            if out is None:
                if kind == 2:
                    assert patch
                    wire = string_wire(pub, patch) if not binary else pub.wire()
                    if binary:
                        wire.update(data=patch, delta=True)
                elif kind >= 3:
                    assert form
                    wire = string_wire(pub, full=form) if kind == 4 else wire_with(pub, form)
                else:
                    wire = string_wire(pub) if kind == 1 and not binary else pub.wire()
                out = encoded[(binary, kind)] = encode_push(channel, "pub", wire, binary)
            return out

        for client_id, sub in subs.items():
            if client_id in skip:
                sub.delta_base = False  # it holds the recovered data, not ``prev``
                continue
            if guarded and sub.refuse is not None:
                if form == b"":
                    form = json_form(pub)
                if form is None:
                    refused.append(sub)
                    continue
                if form is not pub.data:
                    # Compacted: a delta subscriber holds other bytes than the next
                    # delta's base, so it takes the next publication in full.
                    sub.send(variant(False, 4 if sub.delta else 3))
                    sub.delta_base = False
                    continue
            if not sub.delta:
                sub.send(variant(sub.binary, 0))
                continue
            if prev is not None and sub.delta_base and sub.delta_publish:
                if patch is None:
                    made = fossil.create(prev, pub.data)
                    # A delta no smaller than the data is not worth applying.
                    patch = made if len(made) < len(pub.data) else b""
                if patch:
                    sub.send(variant(sub.binary, 2))
                    continue
            sub.send(variant(sub.binary, 0 if sub.binary else 1))
            sub.delta_base = True
        self._delta_prev[channel] = pub.data
        for sub in refused:
            assert sub.refuse is not None
            sub.refuse()
        return len(subs) - len(skip) - len(refused)

    def broadcast_join_leave(self, channel: str, kind: str, info: ClientInfo) -> None:
        subs = self._channels.get(channel)
        if not subs:
            return
        body = {"info": info.wire()}
        encoded: dict[bool, bytes] = {}
        for sub in subs.values():
            if sub.push_join_leave and not (kind == "leave" and sub.client_id == info.client):
                message = encoded.get(sub.binary)
                if message is None:
                    message = encoded[sub.binary] = encode_push(channel, kind, body, sub.binary)
                sub.send(message)
