"""RFC 6455 frames without I/O: masked client frames parsed, unmasked server frames built.

The parser is fed raw bytes and returns whole messages and control frames. Every
violation raises ``FrameError`` with the close code RFC 6455 asks for: 1002 for
protocol errors, 1007 for invalid UTF-8, 1009 for a message over the size limit
(checked against the declared length before anything is buffered) or made of more
fragments than ``MAX_FRAGMENTS`` (empty continuation frames cost memory too).
Frames know nothing of what the payload encodes; that is the codec's business.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

#: Fragments of one message at most: a message of many empty continuation frames
#: would otherwise grow the fragment list without ever reaching the size limit.
MAX_FRAGMENTS = 1024

_VALID_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})
#: Close codes a peer may send (RFC 6455 7.4.1 and 7.4.2): 1004-1006 and 1015 are reserved.
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


class FrameError(Exception):
    """The peer broke the protocol; close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}")


@dataclass(frozen=True, slots=True)
class Frame:
    """A whole message (text or binary) or a control frame."""

    opcode: int
    payload: bytes


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, done as one big-integer operation."""
    n = len(payload)
    if not n:
        return payload
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; the reason is cut to fit a control frame (125 bytes)."""
    return struct.pack("!H", code) + reason.encode()[:123]


def server_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final frame as servers send it."""
    first = 0x80 | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65_536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame."""
    return server_frame(OP_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    return server_frame(OP_BINARY, payload)


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame; 1005 (no code) when it carries none."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame of one byte")
    code = struct.unpack("!H", payload[:2])[0]
    if code not in _SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"close code {code} not allowed")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameParser:
    """Incremental parser of masked client frames with a message size limit."""

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_max_size", "_message_opcode")

    def __init__(self, max_message_size: int) -> None:
        self._max_size = max_message_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._message_opcode = -1

    def feed(self, data: bytes) -> list[Frame]:
        """Whole messages and control frames completed by ``data``, in order."""
        buffer = self._buffer
        buffer += data
        out: list[Frame] = []
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            b0 = buffer[pos]
            b1 = buffer[pos + 1]
            fin = b0 & 0x80
            if b0 & 0x70:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            opcode = b0 & 0x0F
            if opcode not in _VALID_OPCODES:
                raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not b1 & 0x80:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = struct.unpack_from("!H", buffer, pos + 2)[0]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = struct.unpack_from("!Q", buffer, pos + 2)[0]
                head = 10
            control = opcode >= OP_CLOSE
            if control and (length > 125 or not fin):
                raise FrameError(CLOSE_PROTOCOL_ERROR, "bad control frame")
            if not control and length + self._fragments_size > self._max_size:
                raise FrameError(CLOSE_TOO_BIG, "message too big")
            if end - pos < head + 4 + length:
                break
            mask = bytes(buffer[pos + head : pos + head + 4])
            start = pos + head + 4
            payload = unmask(bytes(buffer[start : start + length]), mask)
            pos = start + length
            if control:
                out.append(Frame(opcode, payload))
                continue
            if opcode == OP_CONTINUATION:
                if self._message_opcode < 0:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            elif self._message_opcode >= 0:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            else:
                self._message_opcode = opcode
            self._fragments.append(payload)
            self._fragments_size += length
            if not fin and len(self._fragments) >= MAX_FRAGMENTS:
                raise FrameError(CLOSE_TOO_BIG, "message of too many fragments")
            if fin:
                message = b"".join(self._fragments)
                out.append(Frame(self._message_opcode, message))
                self._fragments = []
                self._fragments_size = 0
                self._message_opcode = -1
        del buffer[:pos]
        return out
