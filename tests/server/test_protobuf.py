"""The Protobuf encoding, checked against the official Python SDK's own codec (its
generated protocol classes and its length-delimited framing)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from centrifuge.codecs import _ProtobufCodec

from roomcast import protobuf

SDK = _ProtobufCodec()


def sdk_decodes(reply: dict[str, Any]) -> dict[str, Any]:
    (decoded,) = SDK.decode_replies(protobuf.encode_reply(reply))
    return decoded


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_ping_is_an_empty_reply() -> None:
    assert protobuf.encode_reply({}) == b"\x00"
    assert SDK.decode_replies(b"\x00") == [{}]


def test_connect_result() -> None:
    reply: dict[str, Any] = {
        "id": 1,
        "connect": {
            "client": "c1",
            "version": "0.1.0",
            "expires": True,
            "ttl": 600,
            "ping": 25,
            "pong": True,
            "data": orjson.Fragment(b'{"hello":1}'),
            "subs": {"news": {"recoverable": True, "epoch": "e", "offset": 3}},
        },
    }
    # The SDK shows bytes as base64 and 64-bit integers as strings (protobuf's JSON mapping).
    connect = {
        **reply["connect"],
        "data": b64(b'{"hello":1}'),
        "subs": {"news": {"recoverable": True, "epoch": "e", "offset": "3"}},
    }
    assert sdk_decodes(reply) == {"id": 1, "connect": connect}


def test_publication_push_with_info_and_tags() -> None:
    pub = {
        "data": orjson.Fragment(b'{"text":"hi"}'),
        "offset": 7,
        "tags": {"k": "v"},
        "info": {"user": "u", "client": "c", "conn_info": orjson.Fragment(b'{"a":1}')},
    }
    decoded = sdk_decodes({"push": {"channel": "chat", "pub": pub}})
    assert decoded == {
        "push": {
            "channel": "chat",
            "pub": {
                "data": b64(b'{"text":"hi"}'),
                "offset": "7",
                "tags": {"k": "v"},
                "info": {"user": "u", "client": "c", "conn_info": b64(b'{"a":1}')},
            },
        }
    }


def test_error_presence_and_history() -> None:
    assert sdk_decodes({"id": 4, "error": {"code": 103, "message": "permission denied"}}) == {
        "id": 4,
        "error": {"code": 103, "message": "permission denied"},
    }
    presence = {"c1": {"user": "u1", "client": "c1"}, "c2": {"user": "u2", "client": "c2"}}
    assert sdk_decodes({"id": 5, "presence": {"presence": presence}})["presence"] == {
        "presence": presence
    }
    history = {
        "publications": [{"data": orjson.Fragment(b"1"), "offset": 1}, {"data": b"2", "offset": 2}],
        "epoch": "ep",
        "offset": 2,
    }
    assert sdk_decodes({"id": 6, "history": history})["history"] == {
        "publications": [{"data": b64(b"1"), "offset": "1"}, {"data": b64(b"2"), "offset": "2"}],
        "epoch": "ep",
        "offset": "2",
    }


def test_empty_results_and_disconnect_push() -> None:
    assert sdk_decodes({"id": 2, "publish": {}}) == {"id": 2, "publish": {}}
    assert sdk_decodes({"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}) == {
        "push": {"disconnect": {"code": 3501, "reason": "bad request"}}
    }


def test_unknown_reply_field_is_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        protobuf.encode_reply({"id": 1, "connect": {"not_a_field": 1}})


def test_commands_as_the_sdk_sends_them() -> None:
    commands = [
        {"id": 1, "connect": {"token": "t", "name": "python", "data": b64(b'{"x":1}')}},
        {
            "id": 2,
            "subscribe": {
                "channel": "chat",
                "recover": True,
                "epoch": "e",
                "offset": "12",
                "delta": "fossil",
                "flag": "2",
            },
        },
        {"id": 3, "publish": {"channel": "chat", "data": b64(b'{"text":"hi"}')}},
        {"id": 4, "history": {"channel": "chat", "limit": -1, "since": {"offset": "3"}}},
        {"id": 5, "presence_stats": {"channel": "chat"}},
        {"id": 6, "publish": {"channel": "chat", "data": b64(b"\xff\x00 not json")}},
        {},
    ]
    decoded = protobuf.decode_commands(SDK.encode_commands(commands))
    assert decoded == [
        {"id": 1, "connect": {"token": "t", "name": "python", "data": b'{"x":1}'}},
        {
            "id": 2,
            "subscribe": {
                "channel": "chat",
                "recover": True,
                "epoch": "e",
                "offset": 12,
                "delta": "fossil",
                "flag": 2,
            },
        },
        {"id": 3, "publish": {"channel": "chat", "data": b'{"text":"hi"}'}},
        {"id": 4, "history": {"channel": "chat", "limit": -1, "since": {"offset": 3}}},
        {"id": 5, "presence_stats": {"channel": "chat"}},
        {"id": 6, "publish": {"channel": "chat", "data": b"\xff\x00 not json"}},
        {},
    ]


@pytest.mark.parametrize(
    "frame",
    [b"\x05\x08", b"\x80", b"\x02\x22\x10", b"\x03\x0f\x01\x02", b"\x0b" + b"\xff" * 11],
    ids=["truncated-command", "truncated-length", "truncated-field", "bad-wire-type", "varint"],
)
def test_malformed_frames_raise_decode_error(frame: bytes) -> None:
    with pytest.raises(protobuf.DecodeError):
        protobuf.decode_commands(frame)


def test_nesting_is_bounded() -> None:
    node = b""
    for _ in range(100):
        node = protobuf._length_delimited(6, node)  # FilterNode.nodes
    command = protobuf._length_delimited(5, protobuf._length_delimited(13, node))
    with pytest.raises(protobuf.DecodeError, match="too deep"):
        protobuf.decode_commands(protobuf._varint(len(command)) + command)
