"""When a client's stream position can be caught up from history (Centrifugo's rule).

The SDKs rely on the exact rule: a ``getState`` that knows an offset but no epoch
makes them recover with an empty (Python) or absent (JS, Go) epoch and expect
``recovered: true``; any other answer makes them reload state in a loop.
"""

from __future__ import annotations

from .engine import Publication, StreamPosition


def epoch_matches(client_epoch: str, current_epoch: str) -> bool:
    """An empty epoch matches any epoch; a non-empty one only itself."""
    return not client_epoch or client_epoch == current_epoch


def is_recovered(since: StreamPosition, top: StreamPosition, pubs: list[Publication]) -> bool:
    """Whether ``pubs`` (history after ``since``, maybe cut by a limit) close the gap.

    With nothing returned the client must already be at the top; otherwise the
    publications must start right after its offset and reach the top, so none
    was trimmed away at the start or left out by the limit at the end.
    """
    if not epoch_matches(since.epoch, top.epoch):
        return False
    if not pubs:
        return since.offset == top.offset
    return pubs[0].offset == since.offset + 1 and pubs[-1].offset == top.offset


def merge_live(
    recovered: list[Publication], since_offset: int, live: list[Publication] | None
) -> tuple[list[Publication], int, list[Publication]]:
    """Join live publications that raced a recovery's history read to its reply, in order.

    Returns the reply's publications, the offset the subscriber will then be at, and
    the live publications after it (delivered by the commit step, which reports a
    hole among them).
    """
    publications = list(recovered)
    last = publications[-1].offset if publications else since_offset
    for pub in live or ():
        if pub.offset == last + 1:
            publications.append(pub)
            last = pub.offset
        elif pub.offset > last:
            break  # a hole: left to the commit step
    return publications, last, [p for p in live or () if p.offset > last]
