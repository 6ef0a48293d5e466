"""How publications travel through Redis: one compact frame, encoded once by the publisher.

A publication body is ``<len(info)>:<len(tags)>:<info json><tags json><data json>``;
the stream stores the body (the entry id is the offset) and pub/sub carries
``p<offset>:<epoch>:<body>`` (offset 0 and an empty epoch without history), so a node
reads offsets and payloads by slicing, without parsing the JSON data. Join and leave
travel as ``j<client info json>`` and ``l<client info json>`` on the same channel.

Every message of every subscribed channel is decoded here, so the header fields are
split off in one ``bytes.split`` (a search and a slice per field cost twice as much).
An epoch never holds a colon (see ``new_epoch``); the JSON, which may, comes after the
last split.

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


def decode_body(body: bytes, offset: int, created: float = 0.0) -> Publication:
    """The publication a stream entry holds (a body alone, without the pub/sub header)."""
    info_len, tags_len, rest = body.split(b":", 2)
    return _publication(rest, info_len, tags_len, offset, created)


def _publication(
    rest: bytes, info_len: bytes, tags_len: bytes, offset: int, created: float
) -> Publication:
    """A body's publication from its two lengths and ``rest``: info, tags and data."""
    i = int(info_len)
    t = int(tags_len)
    info = decode_info(rest[:i]) if i else None
    tags = orjson.loads(rest[i : i + t]) if t else None
    # positional: keyword arguments more than double the cost of the dataclass's __init__
    return Publication(rest[i + t :], offset, info, tags, created)


def timed_prefix(sent: float) -> bytes:
    """The prefix of a timed frame: the publisher's ``time.time()`` in microseconds."""
    return b"t%d:" % int(sent * 1_000_000)


def decode_message(frame: bytes, received: float) -> tuple[int, bytes, Publication]:
    """A pub/sub publication frame (``p...``) that arrived at ``received`` (monotonic)."""
    head, epoch, info_len, tags_len, rest = frame.split(b":", 4)
    offset = int(head[1:])
    return offset, epoch, _publication(rest, info_len, tags_len, offset, received)


def decode_timed_message(
    frame: bytes, received: float, wall_offset: float
) -> tuple[int, bytes, Publication]:
    """A timed frame (``t<µs>:p...``) that arrived at ``received`` (monotonic):
    ``created`` is the publisher's time on this node's monotonic clock.

    ``wall_offset`` is this node's ``time.time() - time.monotonic()``, which the caller
    keeps fresh (two clock reads per message would cost a third of the decoding). A
    publisher clock ahead of this node's counts as no time on the way.
    """
    stamp, head, epoch, info_len, tags_len, rest = frame.split(b":", 5)
    if head[:1] != b"p":
        raise ValueError(f"a timed frame of kind {head[:1]!r}")
    sent = int(stamp[1:]) / 1_000_000 - wall_offset
    offset = int(head[1:])
    created = sent if sent < received else received
    return offset, epoch, _publication(rest, info_len, tags_len, offset, created)


def parse_entry_offset(entry_id: bytes) -> int:
    """Stream entry ids are ``<offset>-0``."""
    return int(entry_id.partition(b"-")[0])
