"""Channel names: namespaces, private and user-limited channels, validation."""

from __future__ import annotations

import pytest

from roomcast.channels import ChannelRules
from roomcast.codes import ErrorCode, ProtocolError
from roomcast.config import ChannelSettings, Namespace


def rules() -> ChannelRules:
    return ChannelRules(
        ChannelSettings(
            namespaces=[
                Namespace(name="chat", presence=True),
                Namespace(name="dm", allow_user_limited_channels=True),
                Namespace(name="ids", channel_regex=r"[0-9]+"),
            ]
        )
    )


def test_namespaces() -> None:
    r = rules()
    assert r.resolve("news").namespace == ""
    info = r.resolve("chat:room")
    assert info.namespace == "chat" and info.options.presence
    assert r.resolve("chat:a:b").namespace == "chat"


def test_private_prefix() -> None:
    info = rules().resolve("$chat:secret")
    assert info.private and info.namespace == "chat"


def test_user_limited() -> None:
    info = rules().resolve("dm:#42,43")
    assert info.allowed_users == frozenset({"42", "43"})
    assert rules().resolve("chat:#42").allowed_users is None


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", ErrorCode.BAD_REQUEST),
        ("x" * 256, ErrorCode.BAD_REQUEST),
        ("ünï", ErrorCode.BAD_REQUEST),
        ("a*b", ErrorCode.BAD_REQUEST),
        ("ids:abc", ErrorCode.BAD_REQUEST),
        ("nope:x", ErrorCode.UNKNOWN_CHANNEL),
    ],
)
def test_rejected(name: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as error:
        rules().resolve(name)
    assert error.value.code == code


def test_regex_namespace_accepts_match() -> None:
    assert rules().resolve("ids:123").namespace == "ids"


def test_personal_channel() -> None:
    assert rules().personal_channel("42", "") == "#42"
    assert rules().personal_channel("42", "dm") == "dm:#42"
