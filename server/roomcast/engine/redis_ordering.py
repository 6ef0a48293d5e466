"""One channel's publications, delivered in offset order with holes filled: no I/O here.

Pub/sub may lose or reorder nothing on one connection, but it loses everything while
a connection is down, and a node may subscribe after a publication was appended to
the stream. So each channel keeps the position (epoch, offset) of the last
publication delivered, and:

* the next offset is delivered at once; an older one (already filled) is dropped;
* a later one means a hole: publications queue up while the shard reads the missing
  range from the stream (``Fill``), then the queue drains in order;
* a new epoch means the stream was lost: subscribers are told (insufficient state);
* a missing range that the stream no longer has is reported and skipped;
* the position checks compare the node's position with the stream's and start a fill
  for publications that never came.

The shard does the reading; ``OrderEvents`` is how this state machine asks it to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from .base import Publication

#: Publications kept for a channel whose position is unknown or being filled; past
#: this, Redis is unreachable for reads while pub/sub flows: stop buffering, say so.
MAX_QUEUED = 10_000

Queued = tuple[int, bytes, Publication]


class OrderEvents(Protocol):
    """What the channel's state machine needs from its shard."""

    def deliver(self, channel: str, pub: Publication, epoch: str) -> None: ...

    def lost(self, channel: str) -> None:
        """Publications of ``channel`` are gone for good: subscribers must resync."""

    def fill(self, state: ChannelState, epoch: bytes, first: int, last: int) -> None:
        """Read offsets first..last from the stream, then call ``state.filled``."""

    def hole(self) -> None:
        """Count a detected hole."""


@dataclass(slots=True, eq=False)
class ChannelState:
    """What this node has delivered of one channel: the position of its last publication."""

    channel: str
    key: bytes
    events: OrderEvents
    #: None until the node saw the channel's stream (or it had none when subscribing)
    epoch: bytes | None = None
    epoch_str: str = ""
    offset: int = 0
    has_baseline: bool = False
    #: while set, publications wait in ``queue``: the baseline is unknown or a fill runs
    busy: bool = True
    #: a fill failed because Redis went away; resumed after the reconnect
    stalled: bool = False
    queue: deque[Queued] = field(default_factory=deque)
    ready: asyncio.Future[None] | None = None

    def set_epoch(self, epoch: bytes | None) -> None:
        self.epoch = epoch
        self.epoch_str = epoch.decode() if epoch else ""

    def set_baseline(self, epoch: bytes | None, top: int) -> None:
        """The stream's position when the node subscribed: deliver what came after it."""
        self.set_epoch(epoch)
        self.offset = top
        self.has_baseline = True
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(None)
        self.drain()

    def receive(self, offset: int, epoch: bytes, pub: Publication) -> None:
        """A publication from pub/sub."""
        if not self.busy:
            if offset == self.offset + 1 and epoch == self.epoch:  # the usual case, inline
                self.offset = offset
                self.events.deliver(self.channel, pub, self.epoch_str)
            else:
                self.advance(offset, epoch, pub)
            return
        if len(self.queue) >= MAX_QUEUED:
            self.queue.clear()
            self.has_baseline = False
            self.events.lost(self.channel)
        self.queue.append((offset, epoch, pub))

    def advance(self, offset: int, epoch: bytes, pub: Publication) -> None:
        """Deliver the next publication in order, or start filling the hole before it."""
        if epoch != self.epoch:
            if self.epoch is not None:  # the stream was lost and started over
                self.events.lost(self.channel)
                self.set_epoch(epoch)
                self.offset = offset - 1
            else:  # no stream when we subscribed: this epoch started after that
                self.set_epoch(epoch)
                self.offset = 0
        if offset <= self.offset:
            return  # a duplicate (already filled from the stream)
        if offset == self.offset + 1:
            self.offset = offset
            self.events.deliver(self.channel, pub, self.epoch_str)
            return
        self.events.hole()
        self.busy = True
        self.queue.appendleft((offset, epoch, pub))
        self.events.fill(self, epoch, self.offset + 1, offset - 1)

    def drain(self) -> None:
        """Deliver what queued up while the channel was busy, until the next hole."""
        self.busy = False
        queue = self.queue
        while queue and not self.busy:
            offset, epoch, pub = queue.popleft()
            self.advance(offset, epoch, pub)

    def filled(
        self,
        epoch: bytes,
        first: int,
        last: int,
        pubs: list[Publication],
        meta_epoch: bytes | None,
        top: int,
    ) -> bool:
        """What the stream had of first..last (and its epoch and top); True if complete."""
        complete = (
            meta_epoch == epoch
            and len(pubs) == last - first + 1
            and (not pubs or (pubs[0].offset == first and pubs[-1].offset == last))
        )
        if not complete:
            self._give_up(epoch, last, meta_epoch, top)
            return False
        for pub in pubs:
            self.events.deliver(self.channel, pub, self.epoch_str)
        self.offset = last
        self.drain()
        return True

    def _give_up(self, epoch: bytes, last: int, meta_epoch: bytes | None, top: int) -> None:
        """The missing range is gone: report it and carry on from the stream's present."""
        self.events.lost(self.channel)
        if meta_epoch == epoch:  # trimmed or expired: skip the range
            self.offset = max(self.offset, last)
        else:  # the stream itself was lost or started over
            self.set_epoch(meta_epoch)
            self.offset = top
            self.queue = deque(item for item in self.queue if item[1] == meta_epoch)
        self.drain()

    def check(self, epoch: bytes | None, top: int) -> None:
        """The stream's position as read after a pub/sub barrier (see the shard)."""
        if not self.has_baseline:
            self.stalled = False
            self.set_baseline(epoch, top)
            return
        if self.stalled:
            self.stalled = False
            self.drain()
        if self.busy:
            return
        if epoch is None:
            if self.epoch is not None:  # the stream is gone (a Redis restart without data)
                self.events.lost(self.channel)
                self.set_epoch(None)
                self.offset = 0
            return
        if self.epoch is None:
            self.set_epoch(epoch)
            self.offset = 0
        elif epoch != self.epoch:
            self.events.lost(self.channel)
            self.set_epoch(epoch)
            self.offset = top
            return
        if top > self.offset:
            self.events.hole()
            self.busy = True
            self.events.fill(self, epoch, self.offset + 1, top)
