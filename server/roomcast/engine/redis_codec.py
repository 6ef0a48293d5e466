"""How publications travel through Redis: one compact frame, encoded once by the publisher.

A publication body is ``<len(info)>:<len(tags)>:<info json><tags json><data json>``;
the stream stores the body (the entry id is the offset) and pub/sub carries
``p<offset>:<epoch>:<body>`` (offset 0 and an empty epoch without history), so a node
reads offsets and payloads by slicing, without parsing the JSON data. Join and leave
travel as ``j<client info json>`` and ``l<client info json>`` on the same channel.

A publication on pub/sub may be prefixed with the publisher's wall-clock time,
``t<unix microseconds>:p<offset>:...``, so ``roomcast_publish_to_write_seconds``
on every node runs from the publish, not from this node's receipt of it. A ``p``
frame without the prefix (what a release before this one writes) is timed from
its arrival, as before.

Releases before the timed frame read only ``p``, ``j`` and ``l`` and skip any other
kind without a word, so a timed frame would be lost on them: there is no field in
the ``p`` frame they pass over (the offset, each length and the epoch are parsed,
and the data runs to the end). A node therefore writes timed frames only while
every node in the registry has said it reads them (see ``RedisEngine.announce``).
"""

from __future__ import annotations

import orjson

from .base import ClientInfo, Publication

_INFO_CACHE_SIZE = 4096
_info_cache: dict[bytes, ClientInfo] = {}


def encode_body(pub: Publication) -> bytes:
    info = pub.info.encode() if pub.info is not None else b""
    tags = orjson.dumps(pub.tags) if pub.tags else b""
    return b"%d:%d:%s%s%s" % (len(info), len(tags), info, tags, pub.data)


def decode_info(raw: bytes) -> ClientInfo:
    """ClientInfo from JSON; a publisher's info repeats, so decoded ones are reused."""
    info = _info_cache.get(raw)
    if info is None:
        if len(_info_cache) >= _INFO_CACHE_SIZE:
            _info_cache.clear()
        info = _info_cache[raw] = ClientInfo.decode(raw)
    return info


def decode_body(frame: bytes, start: int, offset: int, created: float = 0.0) -> Publication:
    """The publication whose body starts at ``frame[start]``."""
    i = frame.index(b":", start)
    j = frame.index(b":", i + 1)
    info_len = int(frame[start:i])
    tags_len = int(frame[i + 1 : j])
    pos = j + 1
    info = decode_info(frame[pos : pos + info_len]) if info_len else None
    pos += info_len
    tags = orjson.loads(frame[pos : pos + tags_len]) if tags_len else None
    return Publication(
        data=frame[pos + tags_len :], offset=offset, info=info, tags=tags, created=created
    )


def timed_prefix(sent: float) -> bytes:
    """The prefix of a timed frame: the publisher's ``time.time()`` in microseconds."""
    return b"t%d:" % int(sent * 1_000_000)


def decode_message(frame: bytes, received: float, start: int = 0) -> tuple[int, bytes, Publication]:
    """A pub/sub publication frame (``p...``, from ``start`` in ``frame``) that arrived at
    ``received`` (monotonic)."""
    i = frame.index(b":", start + 1)
    offset = int(frame[start + 1 : i])
    j = frame.index(b":", i + 1)
    return offset, frame[i + 1 : j], decode_body(frame, j + 1, offset, received)


def decode_timed_message(
    frame: bytes, received: float, wall_offset: float
) -> tuple[int, bytes, Publication]:
    """A timed frame (``t<µs>:p...``) that arrived at ``received`` (monotonic):
    ``created`` is the publisher's time on this node's monotonic clock.

    ``wall_offset`` is this node's ``time.time() - time.monotonic()``, which the caller
    keeps fresh (two clock reads per message would cost a third of the decoding). A
    publisher clock ahead of this node's counts as no time on the way.
    """
    i = frame.index(b":", 1)
    sent = int(frame[1:i]) / 1_000_000 - wall_offset
    return decode_message(frame, sent if sent < received else received, i + 1)


def parse_entry_offset(entry_id: bytes) -> int:
    """Stream entry ids are ``<offset>-0``."""
    return int(entry_id.partition(b"-")[0])
