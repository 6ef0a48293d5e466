"""The Protobuf encoding of the client protocol, as the SDKs speak it (``centrifuge-protobuf``).

A binary WebSocket message holds one or more messages, each preceded by its length as
a varint: ``Command`` from the client, ``Reply`` from the server (an empty ``Reply`` is a
ping, an empty ``Command`` its pong). This module translates between those bytes and the
same dictionaries the JSON encoding produces and consumes, so the command handlers and
the fan-out do not know which encoding a connection uses.

Payloads (``data``) are bytes on this wire and stay ``bytes`` in the dictionaries; where
a payload is used it is checked as JSON (Roomcast's publications are JSON) and kept as
sent. Payloads the server sends are written as their JSON text. Field numbers are those
of the protocol's schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

# Field kinds.
_UINT, _INT, _BOOL, _STR, _DATA, _MSG, _REPEATED, _MAP_MSG, _MAP_STR, _STRINGS = range(10)

_Field = tuple[int, int, str | None]

#: message -> field name -> (number, kind, message of the value)
SCHEMA: dict[str, dict[str, _Field]] = {
    "Error": {"code": (1, _UINT, None), "message": (2, _STR, None), "temporary": (3, _BOOL, None)},
    "Command": {
        "id": (1, _UINT, None),
        "connect": (4, _MSG, "ConnectRequest"),
        "subscribe": (5, _MSG, "SubscribeRequest"),
        "unsubscribe": (6, _MSG, "ChannelRequest"),
        "publish": (7, _MSG, "PublishRequest"),
        "presence": (8, _MSG, "ChannelRequest"),
        "presence_stats": (9, _MSG, "ChannelRequest"),
        "history": (10, _MSG, "HistoryRequest"),
        "ping": (11, _MSG, "Empty"),
        "send": (12, _MSG, "SendRequest"),
        "rpc": (13, _MSG, "RPCRequest"),
        "refresh": (14, _MSG, "RefreshRequest"),
        "sub_refresh": (15, _MSG, "SubRefreshRequest"),
    },
    "Reply": {
        "id": (1, _UINT, None),
        "error": (2, _MSG, "Error"),
        "push": (4, _MSG, "Push"),
        "connect": (5, _MSG, "ConnectResult"),
        "subscribe": (6, _MSG, "SubscribeResult"),
        "unsubscribe": (7, _MSG, "Empty"),
        "publish": (8, _MSG, "Empty"),
        "presence": (9, _MSG, "PresenceResult"),
        "presence_stats": (10, _MSG, "PresenceStatsResult"),
        "history": (11, _MSG, "HistoryResult"),
        "ping": (12, _MSG, "Empty"),
        "rpc": (13, _MSG, "RPCResult"),
        "refresh": (14, _MSG, "RefreshResult"),
        "sub_refresh": (15, _MSG, "SubRefreshResult"),
    },
    "Push": {
        "id": (1, _INT, None),
        "channel": (2, _STR, None),
        "pub": (4, _MSG, "Publication"),
        "join": (5, _MSG, "JoinLeave"),
        "leave": (6, _MSG, "JoinLeave"),
        "unsubscribe": (7, _MSG, "Unsubscribe"),
        "message": (8, _MSG, "Message"),
        "subscribe": (9, _MSG, "SubscribePush"),
        "connect": (10, _MSG, "ConnectResult"),
        "disconnect": (11, _MSG, "Disconnect"),
        "refresh": (12, _MSG, "RefreshPush"),
    },
    "Empty": {},
    "ClientInfo": {
        "user": (1, _STR, None),
        "client": (2, _STR, None),
        "conn_info": (3, _DATA, None),
        "chan_info": (4, _DATA, None),
    },
    "Publication": {
        "data": (4, _DATA, None),
        "info": (5, _MSG, "ClientInfo"),
        "offset": (6, _UINT, None),
        "tags": (7, _MAP_STR, None),
        "delta": (8, _BOOL, None),
        "time": (9, _INT, None),
        "channel": (10, _STR, None),
    },
    "JoinLeave": {"info": (1, _MSG, "ClientInfo")},
    "Unsubscribe": {"code": (2, _UINT, None), "reason": (3, _STR, None)},
    "SubscribePush": {
        "recoverable": (1, _BOOL, None),
        "epoch": (4, _STR, None),
        "offset": (5, _UINT, None),
        "positioned": (6, _BOOL, None),
        "data": (7, _DATA, None),
    },
    "Message": {"data": (1, _DATA, None)},
    "Disconnect": {
        "code": (1, _UINT, None),
        "reason": (2, _STR, None),
        "reconnect": (3, _BOOL, None),
    },
    "RefreshPush": {"expires": (1, _BOOL, None), "ttl": (2, _UINT, None)},
    "ConnectRequest": {
        "token": (1, _STR, None),
        "data": (2, _DATA, None),
        "subs": (3, _MAP_MSG, "SubscribeRequest"),
        "name": (4, _STR, None),
        "version": (5, _STR, None),
        "headers": (6, _MAP_STR, None),
        "flag": (7, _INT, None),
    },
    "ConnectResult": {
        "client": (1, _STR, None),
        "version": (2, _STR, None),
        "expires": (3, _BOOL, None),
        "ttl": (4, _UINT, None),
        "data": (5, _DATA, None),
        "subs": (6, _MAP_MSG, "SubscribeResult"),
        "ping": (7, _UINT, None),
        "pong": (8, _BOOL, None),
        "session": (9, _STR, None),
        "node": (10, _STR, None),
        "time": (11, _INT, None),
    },
    "RefreshRequest": {"token": (1, _STR, None)},
    "RefreshResult": {
        "client": (1, _STR, None),
        "version": (2, _STR, None),
        "expires": (3, _BOOL, None),
        "ttl": (4, _UINT, None),
    },
    "SubscribeRequest": {
        "channel": (1, _STR, None),
        "token": (2, _STR, None),
        "recover": (3, _BOOL, None),
        "epoch": (6, _STR, None),
        "offset": (7, _UINT, None),
        "data": (8, _DATA, None),
        "positioned": (9, _BOOL, None),
        "recoverable": (10, _BOOL, None),
        "join_leave": (11, _BOOL, None),
        "delta": (12, _STR, None),
        "tf": (13, _MSG, "FilterNode"),
        "flag": (14, _INT, None),
        # map (1-3) and shared-poll (4) subscriptions: read so they can be refused
        "type": (15, _INT, None),
        "phase": (16, _INT, None),
    },
    "SubscribeResult": {
        "expires": (1, _BOOL, None),
        "ttl": (2, _UINT, None),
        "recoverable": (3, _BOOL, None),
        "epoch": (6, _STR, None),
        "publications": (7, _REPEATED, "Publication"),
        "recovered": (8, _BOOL, None),
        "offset": (9, _UINT, None),
        "positioned": (10, _BOOL, None),
        "data": (11, _DATA, None),
        "was_recovering": (12, _BOOL, None),
        "delta": (13, _BOOL, None),
        "id": (14, _INT, None),
    },
    "SubRefreshRequest": {"channel": (1, _STR, None), "token": (2, _STR, None)},
    "SubRefreshResult": {"expires": (1, _BOOL, None), "ttl": (2, _UINT, None)},
    "ChannelRequest": {"channel": (1, _STR, None)},
    "PublishRequest": {"channel": (1, _STR, None), "data": (2, _DATA, None)},
    "PresenceResult": {"presence": (1, _MAP_MSG, "ClientInfo")},
    "PresenceStatsResult": {"num_clients": (1, _UINT, None), "num_users": (2, _UINT, None)},
    "StreamPosition": {"offset": (1, _UINT, None), "epoch": (2, _STR, None)},
    "HistoryRequest": {
        "channel": (1, _STR, None),
        "limit": (7, _INT, None),
        "since": (8, _MSG, "StreamPosition"),
        "reverse": (9, _BOOL, None),
    },
    "HistoryResult": {
        "publications": (1, _REPEATED, "Publication"),
        "epoch": (2, _STR, None),
        "offset": (3, _UINT, None),
    },
    "RPCRequest": {"data": (1, _DATA, None), "method": (2, _STR, None)},
    "RPCResult": {"data": (1, _DATA, None)},
    "SendRequest": {"data": (1, _DATA, None)},
    "EmulationRequest": {
        "node": (1, _STR, None),
        "session": (2, _STR, None),
        "data": (3, _DATA, None),
    },
    "FilterNode": {
        "op": (1, _STR, None),
        "key": (2, _STR, None),
        "cmp": (3, _STR, None),
        "val": (4, _STR, None),
        "vals": (5, _STRINGS, None),
        "nodes": (6, _REPEATED, "FilterNode"),
    },
}

#: message -> field number -> (name, kind, message of the value), for decoding
_BY_NUMBER: dict[str, dict[int, tuple[str, int, str | None]]] = {
    message: {number: (name, kind, sub) for name, (number, kind, sub) in fields.items()}
    for message, fields in SCHEMA.items()
}

_VARINT, _LEN = 0, 2
_MAX_DEPTH = 32


class DecodeError(ValueError):
    """Bytes that are not a well-formed message of the protocol."""


# --- encoding ------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(payload)) + payload


def _data_bytes(value: object) -> bytes:
    """A payload as bytes: raw bytes as they are, anything else as its JSON text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return orjson.dumps(value)  # an orjson.Fragment gives its raw JSON back


def encode_message(message: str, values: dict[str, Any]) -> bytes:
    """One message from its dictionary; default values are left out, as proto3 does."""
    fields = SCHEMA[message]
    out = bytearray()
    for name, value in values.items():
        if value is None:
            continue
        try:
            number, kind, sub = fields[name]
        except KeyError:
            raise ValueError(f"{message} has no field {name!r}") from None
        if kind == _MSG:
            out += _length_delimited(number, encode_message(sub or "", value))
        elif kind == _DATA:
            data = _data_bytes(value)
            if data:
                out += _length_delimited(number, data)
        elif kind == _STR:
            if value:
                out += _length_delimited(number, value.encode())
        elif kind in (_UINT, _INT):
            if value:
                out += _key(number, _VARINT) + _varint(int(value))
        elif kind == _BOOL:
            if value:
                out += _key(number, _VARINT) + b"\x01"
        elif kind == _REPEATED:
            for item in value:
                out += _length_delimited(number, encode_message(sub or "", item))
        elif kind == _STRINGS:
            for item in value:
                out += _length_delimited(number, item.encode())
        elif kind == _MAP_STR:
            for key, item in value.items():
                entry = _length_delimited(1, key.encode()) + _length_delimited(2, item.encode())
                out += _length_delimited(number, entry)
        else:  # _MAP_MSG
            for key, item in value.items():
                entry = _length_delimited(1, key.encode()) + _length_delimited(
                    2, encode_message(sub or "", item)
                )
                out += _length_delimited(number, entry)
    return bytes(out)


def encode_reply(reply: dict[str, Any]) -> bytes:
    """A ``Reply`` (a push, a result, an error or ``{}`` for a ping), length-prefixed."""
    body = encode_message("Reply", reply)
    return _varint(len(body)) + body


def encode_replies(replies: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(encode_reply(reply) for reply in replies)


# --- decoding ------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _skip(buf: bytes, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _read_varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 5:
        return pos + 4
    if wire_type == _LEN:
        length, pos = _read_varint(buf, pos)
        return pos + length
    raise DecodeError(f"unsupported wire type {wire_type}")


def decode_message(message: str, buf: bytes, depth: int = 0) -> dict[str, Any]:
    """One message into its dictionary; unknown fields are skipped, as proto3 does."""
    if depth > _MAX_DEPTH:
        raise DecodeError("messages nested too deep")
    fields = _BY_NUMBER[message]
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        field = fields.get(number)
        if field is None:
            pos = _skip(buf, pos, wire_type)
            continue
        name, kind, sub = field
        if kind in (_UINT, _INT, _BOOL):
            if wire_type != _VARINT:
                raise DecodeError(f"{message}.{name}: varint expected")
            value, pos = _read_varint(buf, pos)
            out[name] = bool(value) if kind == _BOOL else _signed(value) if kind == _INT else value
            continue
        if wire_type != _LEN:
            raise DecodeError(f"{message}.{name}: length-delimited field expected")
        length, pos = _read_varint(buf, pos)
        end = pos + length
        if end > len(buf):
            raise DecodeError(f"{message}.{name}: truncated")
        chunk = buf[pos:end]
        pos = end
        if kind == _STR:
            out[name] = _text(chunk, message, name)
        elif kind == _DATA:
            out[name] = chunk
        elif kind == _MSG:
            out[name] = decode_message(sub or "", chunk, depth + 1)
        elif kind == _REPEATED:
            out.setdefault(name, []).append(decode_message(sub or "", chunk, depth + 1))
        elif kind == _STRINGS:
            out.setdefault(name, []).append(_text(chunk, message, name))
        else:
            key_text, entry = _map_entry(chunk, kind, sub, depth)
            out.setdefault(name, {})[key_text] = entry
    return out


def _text(chunk: bytes, message: str, name: str) -> str:
    try:
        return chunk.decode()
    except UnicodeDecodeError:
        raise DecodeError(f"{message}.{name}: invalid UTF-8") from None


def _map_entry(chunk: bytes, kind: int, sub: str | None, depth: int) -> tuple[str, Any]:
    key = ""
    value: Any = {} if kind == _MAP_MSG else ""
    pos = 0
    while pos < len(chunk):
        tag, pos = _read_varint(chunk, pos)
        if tag & 7 != _LEN:
            raise DecodeError("map entry: length-delimited field expected")
        length, pos = _read_varint(chunk, pos)
        part = chunk[pos : pos + length]
        pos += length
        if tag >> 3 == 1:
            key = _text(part, "map", "key")
        elif tag >> 3 == 2:
            if kind == _MAP_MSG:
                value = decode_message(sub or "", part, depth + 1)
            else:
                value = _text(part, "map", "value")
    return key, value


def decode_commands(frame: bytes) -> list[dict[str, Any]]:
    """Every length-prefixed ``Command`` in one WebSocket message."""
    commands = []
    pos = 0
    while pos < len(frame):
        length, pos = _read_varint(frame, pos)
        end = pos + length
        if end > len(frame):
            raise DecodeError("command truncated")
        commands.append(decode_message("Command", frame[pos:end]))
        pos = end
    return commands
