"""Typed reads of fields from decoded JSON requests (client commands and server API).

A field of the wrong type is a bad request (107), never a TypeError further in.
"""

from __future__ import annotations

from typing import Any

from .codes import ErrorCode, ProtocolError


def optional_str(req: dict[str, Any], key: str) -> str:
    """The string at ``key``; absent or null is ``""``."""
    value = req.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{key} must be a string")
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
