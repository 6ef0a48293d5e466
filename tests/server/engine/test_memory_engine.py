"""What only the memory engine has to do: hold all history under one node-wide size."""

from __future__ import annotations

from roomcast.engine import HistoryOptions, Publication
from roomcast.engine.memory import MemoryEngine, history_cost

HISTORY = HistoryOptions(size=100, ttl_seconds=60, meta_ttl_seconds=3600)
DATA = b'"' + b"x" * 98 + b'"'
COST = history_cost(Publication(DATA))


async def offsets(
    engine: MemoryEngine, channel: str, history: HistoryOptions = HISTORY
) -> list[int]:
    result = await engine.history(channel, history=history, since=None, limit=-1)
    return [p.offset for p in result.publications]


async def test_history_of_all_channels_stays_under_the_limit_oldest_first() -> None:
    engine = MemoryEngine(history_max_size=10 * COST)
    for _ in range(5):
        await engine.publish("a", Publication(DATA), history=HISTORY)
    for _ in range(8):
        await engine.publish("b", Publication(DATA), history=HISTORY)
    assert engine.history_size <= 10 * COST
    assert await offsets(engine, "a") == [4, 5]  # the node's oldest went first
    assert await offsets(engine, "b") == list(range(1, 9))
    for _ in range(5):
        await engine.publish("b", Publication(DATA), history=HISTORY)
    assert await offsets(engine, "a") == []
    assert await offsets(engine, "b") == list(range(4, 14))
    position = (await engine.history("a", history=HISTORY, since=None, limit=0)).position
    assert position.offset == 5  # the stream's position survives its publications


async def test_trimmed_removed_and_expired_history_is_no_longer_counted() -> None:
    engine = MemoryEngine()
    small = HistoryOptions(size=10, ttl_seconds=60, meta_ttl_seconds=3600)
    for _ in range(5000):
        await engine.publish("busy", Publication(DATA), history=small)
    assert engine.history_size == 10 * COST
    assert len(engine._history_order) <= 2 * 10 + 1024  # dropped entries do not pile up
    await engine.publish("other", Publication(DATA), history=HISTORY)
    await engine.remove_history("busy")
    assert engine.history_size == COST
    engine.sweep(now=float("inf"))
    assert engine.history_size == 0
    assert len(engine._history_order) == 0


async def test_a_smaller_history_size_trims_the_counted_history() -> None:
    engine = MemoryEngine()
    for _ in range(20):
        await engine.publish("c", Publication(DATA), history=HISTORY)
    smaller = HistoryOptions(size=5, ttl_seconds=60, meta_ttl_seconds=3600)
    assert await offsets(engine, "c", smaller) == list(range(16, 21))
    assert engine.history_size == 5 * COST
