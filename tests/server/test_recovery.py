"""Recovery's pure parts: when a gap is closed, and how live publications join the reply."""

from __future__ import annotations

from roomcast.engine import Publication
from roomcast.recovery import merge_live


def pubs(*offsets: int) -> list[Publication]:
    return [Publication(b"1", offset=n) for n in offsets]


def offsets(items: list[Publication]) -> list[int]:
    return [p.offset for p in items]


def test_live_publications_right_after_history_join_the_reply() -> None:
    merged, last, later = merge_live(pubs(3, 4), 2, pubs(4, 5, 6))
    assert offsets(merged) == [3, 4, 5, 6] and last == 6 and later == []


def test_a_hole_in_the_live_ones_is_left_for_later() -> None:
    merged, last, later = merge_live(pubs(3), 2, pubs(4, 6, 7))
    assert offsets(merged) == [3, 4] and last == 4 and offsets(later) == [6, 7]


def test_nothing_recovered_starts_at_the_clients_offset() -> None:
    merged, last, later = merge_live([], 7, pubs(7, 8))
    assert offsets(merged) == [8] and last == 8 and later == []
    assert merge_live([], 7, None) == ([], 7, [])
