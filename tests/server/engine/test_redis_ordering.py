"""A channel's ordering and hole-filling state machine, driven without Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

from roomcast.engine import Publication
from roomcast.engine.redis_ordering import MAX_QUEUED, ChannelState

E1, E2 = b"epoch-1", b"epoch-2"


@dataclass
class Shard:
    """Records what the state machine asks of its shard."""

    delivered: list[tuple[int, str]] = field(default_factory=list)
    lost_count: int = 0
    fills: list[tuple[bytes, int, int]] = field(default_factory=list)
    holes: int = 0

    def deliver(self, channel: str, pub: Publication, epoch: str) -> None:
        self.delivered.append((pub.offset, epoch))

    def lost(self, channel: str) -> None:
        self.lost_count += 1

    def fill(self, state: ChannelState, epoch: bytes, first: int, last: int) -> None:
        self.fills.append((epoch, first, last))

    def hole(self) -> None:
        self.holes += 1


def pub(offset: int) -> Publication:
    return Publication(b"1", offset=offset)


def started(top: int = 0, epoch: bytes | None = E1) -> tuple[ChannelState, Shard]:
    shard = Shard()
    state = ChannelState("ch", b"key", shard)
    state.set_baseline(epoch, top)
    return state, shard


def offsets(shard: Shard) -> list[int]:
    return [offset for offset, _ in shard.delivered]


def test_publications_before_the_baseline_wait_and_older_ones_are_dropped() -> None:
    shard = Shard()
    state = ChannelState("ch", b"key", shard)
    for n in (3, 4, 5):
        state.receive(n, E1, pub(n))
    assert shard.delivered == []
    state.set_baseline(E1, 3)  # 3 was already in the stream when the node subscribed
    assert offsets(shard) == [4, 5] and shard.delivered[0][1] == "epoch-1"


def test_a_hole_is_filled_before_anything_newer() -> None:
    state, shard = started(top=1)
    state.receive(2, E1, pub(2))
    state.receive(5, E1, pub(5))
    state.receive(6, E1, pub(6))
    assert offsets(shard) == [2] and shard.fills == [(E1, 3, 4)] and shard.holes == 1
    assert state.filled(E1, 3, 4, [pub(3), pub(4)], E1, 6)
    assert offsets(shard) == [2, 3, 4, 5, 6]
    state.receive(4, E1, pub(4))  # a late duplicate
    assert offsets(shard) == [2, 3, 4, 5, 6]


def test_a_range_the_stream_no_longer_has_is_reported_and_skipped() -> None:
    state, shard = started(top=1)
    state.receive(5, E1, pub(5))
    assert not state.filled(E1, 2, 4, [pub(4)], E1, 5)  # 2 and 3 were trimmed
    assert shard.lost_count == 1 and offsets(shard) == [5]


def test_a_new_epoch_is_a_lost_stream() -> None:
    state, shard = started(top=7)
    state.receive(1, E2, pub(1))
    assert shard.lost_count == 1 and shard.delivered == [(1, "epoch-2")]


def test_position_check_fills_a_tail_that_never_came_and_sees_a_lost_stream() -> None:
    state, shard = started(top=2)
    state.check(E1, 4)
    assert shard.fills == [(E1, 3, 4)] and state.busy
    state.filled(E1, 3, 4, [pub(3), pub(4)], E1, 4)
    state.check(E1, 4)
    assert shard.fills == [(E1, 3, 4)] and offsets(shard) == [3, 4]
    state.check(None, 0)  # Redis restarted without data
    assert shard.lost_count == 1 and state.epoch is None and state.offset == 0


def test_a_queue_that_never_drains_is_dropped_and_reported() -> None:
    shard = Shard()
    state = ChannelState("ch", b"key", shard)
    for n in range(MAX_QUEUED + 1):
        state.receive(n + 1, E1, pub(n + 1))
    assert shard.lost_count == 1 and len(state.queue) == 1 and not state.has_baseline
