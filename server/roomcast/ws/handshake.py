"""The WebSocket opening handshake: one answer to an upgrade request, however it arrived.

The listening socket's own head parser and aiohttp (a request on a kept-alive
connection, or a path that only matches once decoded) both ask ``answer``; what
differs between them is only who parsed the head.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roomcast.admission import upgrade_refusal

if TYPE_CHECKING:
    from roomcast.node import Node
    from roomcast.origins import OriginPolicy

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "centrifuge-json"
#: offered alone (SDKs with ``protocol: "protobuf"``), it makes the connection binary
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer instead of the upgrade."""

    status: int
    text: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The headers of the 101 answer, and the encoding the connection speaks."""

    headers: tuple[tuple[str, str], ...]
    binary: bool = False


def parse_headers(block: bytes) -> dict[str, str] | None:
    """Header lines as a dict of lower-case names; repeated names joined with ``, ``."""
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        try:
            key = name.decode("ascii").lower()
            text = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            return None
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers parsed by someone else, in ``parse_headers``' shape."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def answer(
    headers: dict[str, str], node: Node, open_connections: Sized, origins: OriginPolicy
) -> Refusal | Acceptance:
    """Refuse (with the status a client or load balancer understands) or accept.

    The same-origin default compares Origin with the Host header, never with the
    authority of an absolute-form request target.
    """
    if "websocket" not in headers.get("upgrade", "").lower() or "upgrade" not in [
        token.strip() for token in headers.get("connection", "").lower().split(",")
    ]:
        return Refusal(400, "websocket upgrade expected")
    if headers.get("sec-websocket-version") != "13":
        return Refusal(426, "websocket version 13 expected", (("Sec-WebSocket-Version", "13"),))
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (binascii.Error, ValueError):
        return Refusal(400, "bad Sec-WebSocket-Key")
    subprotocols = headers.get("sec-websocket-protocol", "")
    refusal = upgrade_refusal(
        node, open_connections, origins, headers.get("origin"), headers.get("host"), subprotocols
    )
    if refusal is not None:
        return Refusal(*refusal)
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    reply = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
    offered = [p.strip() for p in subprotocols.split(",")]
    if SUBPROTOCOL in offered:
        reply.append(("Sec-WebSocket-Protocol", SUBPROTOCOL))
    elif PROTOBUF_SUBPROTOCOL in offered:
        reply.append(("Sec-WebSocket-Protocol", PROTOBUF_SUBPROTOCOL))
        return Acceptance(tuple(reply), binary=True)
    return Acceptance(tuple(reply))
