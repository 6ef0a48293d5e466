from __future__ import annotations

from roomcast.codes import (
    DISCONNECT_REASONS,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ProtocolError,
    is_terminal_disconnect,
)


def test_error_shape() -> None:
    assert ProtocolError(ErrorCode.TOO_MANY_REQUESTS).to_dict() == {
        "code": 111,
        "message": "too many requests",
        "temporary": True,
    }
    assert ProtocolError(ErrorCode.PERMISSION_DENIED).to_dict() == {
        "code": 103,
        "message": "permission denied",
    }


def test_every_disconnect_has_a_plain_word_reason() -> None:
    for code in DisconnectCode:
        reason = DISCONNECT_REASONS[code]
        assert reason and len(reason.encode()) <= 123 and not reason[0].isdigit()


def test_terminal_ranges() -> None:
    assert not is_terminal_disconnect(DisconnectCode.SHUTDOWN)
    assert is_terminal_disconnect(DisconnectCode.INVALID_TOKEN)
    assert not is_terminal_disconnect(4000) and is_terminal_disconnect(4500)


def test_custom_code_reason() -> None:
    assert Disconnect(4001).reason == "disconnect"
    assert Disconnect(3001).reason == "shutdown"
