"""Error and disconnect codes of the Centrifugo client protocol.

The SDKs decide from these numbers whether to retry, reconnect or stop, so the
values and the ranges they fall in are part of the wire contract:

* error codes 100-399 are the server's own, 400-1999 belong to applications;
* disconnect codes 3000-3499 and 4000-4499 make the SDKs reconnect,
  3500-3999 and 4500-4999 are terminal.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Codes of error replies (``{"id": n, "error": {...}}``)."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112


ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INTERNAL: "internal server error",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.UNKNOWN_CHANNEL: "unknown channel",
    ErrorCode.PERMISSION_DENIED: "permission denied",
    ErrorCode.METHOD_NOT_FOUND: "method not found",
    ErrorCode.ALREADY_SUBSCRIBED: "already subscribed",
    ErrorCode.LIMIT_EXCEEDED: "limit exceeded",
    ErrorCode.BAD_REQUEST: "bad request",
    ErrorCode.NOT_AVAILABLE: "not available",
    ErrorCode.TOKEN_EXPIRED: "token expired",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.TOO_MANY_REQUESTS: "too many requests",
    ErrorCode.UNRECOVERABLE_POSITION: "unrecoverable position",
}

#: Errors the SDKs retry on their own; the wire carries ``"temporary": true``.
TEMPORARY_ERRORS = frozenset({ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS})


class DisconnectCode(IntEnum):
    """Close codes sent in the WebSocket close frame."""

    CONNECTION_CLOSED = 3000
    SHUTDOWN = 3001
    SERVER_ERROR = 3004
    CONNECTION_EXPIRED = 3005
    SUBSCRIPTION_EXPIRED = 3006
    SLOW = 3008
    WRITE_ERROR = 3009
    INSUFFICIENT_STATE = 3010
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    TOO_MANY_REQUESTS = 3013
    REBALANCE = 3020
    """Moved for balance: the node sheds a share of its clients (the server API's
    ``shed``), who reconnect, through the load balancer, to a less loaded node."""
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    STALE = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CHANNEL_LIMIT = 3505
    INAPPROPRIATE_PROTOCOL = 3506
    PERMISSION_DENIED = 3507
    NOT_AVAILABLE = 3508
    TOO_MANY_ERRORS = 3509


DISCONNECT_REASONS: dict[DisconnectCode, str] = {
    DisconnectCode.CONNECTION_CLOSED: "connection closed",
    DisconnectCode.SHUTDOWN: "shutdown",
    DisconnectCode.SERVER_ERROR: "internal server error",
    DisconnectCode.CONNECTION_EXPIRED: "connection expired",
    DisconnectCode.SUBSCRIPTION_EXPIRED: "subscription expired",
    DisconnectCode.SLOW: "slow",
    DisconnectCode.WRITE_ERROR: "write error",
    DisconnectCode.INSUFFICIENT_STATE: "insufficient state",
    DisconnectCode.FORCE_RECONNECT: "force reconnect",
    DisconnectCode.NO_PONG: "no pong",
    DisconnectCode.TOO_MANY_REQUESTS: "too many requests",
    DisconnectCode.REBALANCE: "rebalance",
    DisconnectCode.INVALID_TOKEN: "invalid token",
    DisconnectCode.BAD_REQUEST: "bad request",
    DisconnectCode.STALE: "stale",
    DisconnectCode.FORCE_DISCONNECT: "force disconnect",
    DisconnectCode.CONNECTION_LIMIT: "connection limit",
    DisconnectCode.CHANNEL_LIMIT: "channel limit",
    DisconnectCode.INAPPROPRIATE_PROTOCOL: "inappropriate protocol",
    DisconnectCode.PERMISSION_DENIED: "permission denied",
    DisconnectCode.NOT_AVAILABLE: "not available",
    DisconnectCode.TOO_MANY_ERRORS: "too many errors",
}


class UnsubscribeCode(IntEnum):
    """Codes of the ``unsubscribe`` push; 2500 and above make the SDK resubscribe."""

    SERVER = 2000
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501


UNSUBSCRIBE_REASONS: dict[UnsubscribeCode, str] = {
    UnsubscribeCode.SERVER: "server unsubscribe",
    UnsubscribeCode.INSUFFICIENT_STATE: "insufficient state",
    UnsubscribeCode.EXPIRED: "subscription expired",
}


def is_terminal_disconnect(code: int) -> bool:
    """True when the SDKs stop reconnecting after this close code."""
    return 3500 <= code < 4000 or 4500 <= code < 5000


class ProtocolError(Exception):
    """A command failed; the client receives an error reply with this code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or ERROR_MESSAGES[code]
        super().__init__(f"{int(code)} {self.message}")

    @property
    def temporary(self) -> bool:
        return self.code in TEMPORARY_ERRORS

    def to_dict(self) -> dict[str, object]:
        error: dict[str, object] = {"code": int(self.code), "message": self.message}
        if self.temporary:
            error["temporary"] = True
        return error


class Disconnect(Exception):
    """The connection must be closed with this code; raised from command handlers."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        if reason is None:
            reason = DISCONNECT_REASONS.get(code, "disconnect")  # type: ignore[call-overload]
        self.reason = reason
        super().__init__(f"{code} {reason}")
