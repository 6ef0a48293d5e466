"""The connection count alone is written at most once an interval."""

from __future__ import annotations

from roomcast_operator.pacing import StatusPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_connection_count_alone_is_written_at_most_once_an_interval() -> None:
    clock = Clock()
    pacer = StatusPacer(60, clock)
    key = ("prod", "chat")
    old = {"connections": 10, "currentRevision": 1}
    assert not pacer.to_write(key, old, dict(old), 10)
    # Never written by this process: the first change goes out.
    new = dict(old)
    assert pacer.to_write(key, old, new, 11) and new["connections"] == 11
    pacer.written(key)
    clock.now += 30
    new = dict(old)
    assert not pacer.to_write(key, old, new, 12)
    assert new["connections"] == 10
    # Anything else changing carries the fresh count at once.
    changed = {**old, "currentRevision": 2}
    assert pacer.to_write(key, old, changed, 12) and changed["connections"] == 12
    clock.now += 30
    new = dict(old)
    assert pacer.to_write(key, old, new, 12) and new["connections"] == 12
