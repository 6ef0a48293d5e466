"""Typed reads of fields from decoded JSON requests (client commands and server API).

Every field a client or backend sends is read through these. A field of the wrong
type, size or shape is a bad request (107) and nothing else: never a TypeError,
ValueError or encoder error further in, and so never a 100 with a traceback.
"""

from __future__ import annotations

from typing import Any

import orjson

from .codes import ErrorCode, ProtocolError
from .engine import StreamPosition


def _bad(key: str, what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, f"{key} must be {what}")


def optional_str(req: dict[str, Any], key: str) -> str:
    """The string at ``key``; absent or null is ``""``."""
    value = req.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(key, "a string")
    return value


def required_str(req: dict[str, Any], key: str) -> str:
    """A non-empty string at ``key``, else 107 with Centrifugo's plain message."""
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(ErrorCode.BAD_REQUEST)
    return value


INT_LIMIT = 2**64
"""Offsets, limits and flags are 64-bit on the wire; anything larger is a bad request."""
_MAX_DIGITS = len(str(INT_LIMIT))


def optional_int(req: dict[str, Any], key: str, default: int = 0) -> int:
    """The integer at ``key`` (numeric strings too, as the Python SDK may send them).

    Only ASCII digits count: ``str.isdigit`` also accepts "²" and other digits that
    ``int`` refuses, and a string thousands of digits long costs ``int`` real time.
    """
    value = req.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if (
            isinstance(value, str)
            and 0 < len(value) <= _MAX_DIGITS
            and value.isascii()
            and value.isdigit()
        ):
            value = int(value)
        else:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{key} must be an integer")
    if not -INT_LIMIT < value < INT_LIMIT:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{key} is out of range")
    return value


def optional_bool(req: dict[str, Any], key: str) -> bool:
    """The boolean at ``key``; absent or null is false."""
    value = req.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(key, "a boolean")
    return value


def optional_dict(req: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at ``key``; absent or null is an empty one."""
    value = req.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(key, "an object")
    return value


def optional_list(req: dict[str, Any], key: str) -> list[Any]:
    """The array at ``key``; absent or null is an empty one."""
    value = req.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(key, "an array")
    return value


def optional_position(req: dict[str, Any], key: str) -> StreamPosition | None:
    """A stream position ``{"offset": n, "epoch": "..."}`` at ``key``; absent or null is None."""
    if req.get(key) is None:
        return None
    position = optional_dict(req, key)
    offset = optional_int(position, "offset")
    if offset < 0:
        raise _bad(f"{key}.offset", "zero or more")
    return StreamPosition(offset, optional_str(position, "epoch"))


def json_bytes(value: Any, key: str) -> bytes:
    """``value`` as compact JSON; nesting the encoder refuses is a bad request."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise _bad(key, "JSON nested at most 255 deep") from None
