"""Redis Cluster answers a command can meet while a slot moves: ASK, MOVED and TRYAGAIN.

``MOVED`` says the slot has a new owner for good: the command is sent there and the
slot map is re-read. ``ASK`` says this one command must go, after ``ASKING``, to the
node importing the slot; the map stays as it is. ``TRYAGAIN`` says the keys of a
multi-key command are split between the two nodes right now: the command is tried
again shortly, until the migration of those keys is done.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pauses before each new try after TRYAGAIN (about 0.8 s in all), then the error stands.
TRYAGAIN_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True, slots=True)
class Redirect:
    """``MOVED`` or ``ASK``, and the node to ask instead (an empty host: the same host)."""

    kind: str
    host: str
    port: int


def parse_redirect(message: str) -> Redirect | None:
    """``MOVED 3999 10.0.0.2:6381`` or ``ASK 3999 :6381``; None for any other error."""
    parts = message.split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    if not port.isascii() or not port.isdigit():
        return None
    return Redirect(parts[0], host, int(port))
