"""Fossil delta encoding: the ``delta: "fossil"`` publication compression the SDKs apply.

A delta turns the previous payload of a channel into the next one with copy and insert
instructions, so a subscriber to a channel whose messages change a little at a time
(scores, positions, documents) receives only what changed. The format is Fossil's:

    <target length>\\n
    <count>@<offset>,      copy count bytes of the source from offset
    <count>:<bytes>        insert the next count bytes literally
    <checksum>;            end, with a checksum of the target

Integers are written in base 64 with the digits ``0-9A-Z_a-z~``. Over the JSON
protocol the delta travels inside a JSON string, so it must be valid UTF-8: copies
start and end on character boundaries, which keeps every literal whole characters.
"""

from __future__ import annotations

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
#: source blocks of this size are indexed; shorter matches are inserted literally
BLOCK = 16


def _int(value: int) -> bytes:
    if value == 0:
        return b"0"
    out = bytearray()
    while value:
        out.append(_DIGITS[value & 63])
        value >>= 6
    out.reverse()
    return bytes(out)


def checksum(data: bytes) -> int:
    """Sum of the data read as big-endian 32-bit words (the tail zero-padded), mod 2**32."""
    padded = data + b"\0" * (-len(data) % 4)
    total = 0
    for index in range(0, len(padded), 4):
        total += int.from_bytes(padded[index : index + 4], "big")
    return total & 0xFFFFFFFF


def _continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def create(source: bytes, target: bytes) -> bytes:
    """A delta that rebuilds ``target`` from ``source``; literal parts stay whole UTF-8."""
    out = bytearray(_int(len(target)) + b"\n")
    index: dict[bytes, list[int]] = {}
    for offset in range(0, len(source) - BLOCK + 1, BLOCK):
        index.setdefault(source[offset : offset + BLOCK], []).append(offset)
    base = 0  # target bytes before this are already encoded
    position = 0
    limit = len(target) - BLOCK
    while position <= limit:
        candidates = index.get(target[position : position + BLOCK])
        if candidates is None:
            position += 1
            continue
        start, source_start, length = _best_match(source, target, position, base, candidates)
        # Copies begin and end on character boundaries, so the literals around them
        # never split a UTF-8 sequence.
        end = start + length
        while start < end and _continuation(target[start]):
            start += 1
            source_start += 1
        while end < len(target) and end > start and _continuation(target[end]):
            end -= 1
        if end - start < BLOCK:
            position += 1
            continue
        if start > base:
            out += _int(start - base) + b":" + target[base:start]
        out += _int(end - start) + b"@" + _int(source_start) + b","
        base = position = end
    if base < len(target):
        out += _int(len(target) - base) + b":" + target[base:]
    out += _int(checksum(target)) + b";"
    return bytes(out)


def _best_match(
    source: bytes, target: bytes, position: int, base: int, candidates: list[int]
) -> tuple[int, int, int]:
    """The longest match through ``position``: (target start, source start, length)."""
    best = (position, candidates[0], 0)
    for offset in candidates:
        forward = BLOCK
        while (
            position + forward < len(target)
            and offset + forward < len(source)
            and target[position + forward] == source[offset + forward]
        ):
            forward += 1
        back = 0
        while (
            position - back > base
            and offset - back > 0
            and target[position - back - 1] == source[offset - back - 1]
        ):
            back += 1
        if forward + back > best[2]:
            best = (position - back, offset - back, forward + back)
    return best
