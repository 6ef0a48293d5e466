"""Settings: file + shortcuts + nested variables, and every bad key reported with its path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from roomcast.channels import ChannelRules
from roomcast.config import ConfigError, load_settings, parse_duration
from tests.processes import ROOMCAST


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300s", 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), (12, 12.0), ("7", 7.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "1x", "", "s"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.http_server.port == 8000
    assert s.engine.type == "memory"
    assert s.websocket.message_size_limit == 65536
    assert s.client.command_rate_limit.rate_per_second == 100
    assert s.shutdown.drain_window == 30


def test_compression_setting_is_refused_with_a_clear_error() -> None:
    """permessage-deflate is never negotiated, so asking for it is a configuration error."""
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, overrides={"websocket": {"compression": True}})
    (path, message), *_ = error.value.problems
    assert path == "websocket"
    assert "remove websocket.compression" in message


def test_file_then_shortcuts_then_nested_variables(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "http_server: {port: 9000}\n"
        "client: {ping_interval: 20s}\n"
        "channel:\n  namespaces:\n    - {name: chat, presence: true, history_size: 5, "
        "history_ttl: 1m}\n"
    )
    s = load_settings(
        environ={
            "ROOMCAST_CONFIG": str(config),
            "ROOMCAST_PORT": "9100",
            "ROOMCAST_CLIENT__PING_INTERVAL": "15s",
            "ROOMCAST_REDIS_URL": "redis://a:6379,redis://b:6379",
        }
    )
    assert s.http_server.port == 9100
    assert s.client.ping_interval == 15
    assert s.engine.redis.address == ["redis://a:6379", "redis://b:6379"]
    chat = s.namespace("chat")
    assert chat is not None and chat.presence and chat.history_ttl == 60


def test_json_config(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"http_api": {"key": "k"}}))
    assert load_settings(config, environ={}).http_api.key == "k"


def test_every_bad_key_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            environ={},
            overrides={
                "client": {"ping_intervall": "1s", "channel_limit": -1},
                "channel": {"namespaces": [{"name": "ok"}, {"name": "x", "presense": True}]},
                "engine": {"type": "etcd"},
            },
        )
    paths = {path for path, _ in error.value.problems}
    assert paths == {
        "client.ping_intervall",
        "client.channel_limit",
        "channel.namespaces.1.name",
        "channel.namespaces.1.presense",
        "engine.type",
    }


def test_duplicate_namespace_and_pong_timeout() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        load_settings(
            environ={}, overrides={"channel": {"namespaces": [{"name": "ab"}, {"name": "ab"}]}}
        )
    with pytest.raises(ConfigError, match="pong_timeout"):
        load_settings(environ={}, overrides={"client": {"ping_interval": 5, "pong_timeout": 6}})


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("channel: {namespaces: [{name: chat}]}\n")
    ok = subprocess.run(
        [ROOMCAST, "--config", str(good), "check-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and "namespaces=chat" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("client: {allowed_origin: [x]}\nwebsocket: {message_size_limit: 0}\n")
    result = subprocess.run(
        [ROOMCAST, "--config", str(bad), "check-config"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "client.allowed_origin" in result.stderr
    assert "websocket.message_size_limit" in result.stderr


#: channel settings -> the data format of a channel without namespace and of "ns:x"
_FORMAT_ROWS = [
    ({}, "json", "json"),
    ({"publication_data_format": "binary"}, "binary", "binary"),
    ({"namespaces": [{"name": "ns", "publication_data_format": "binary"}]}, "json", "binary"),
    (
        {
            "publication_data_format": "binary",
            "without_namespace": {"publication_data_format": "json"},
            "namespaces": [{"name": "ns", "publication_data_format": "json_object"}],
        },
        "json",
        "json_object",
    ),
    # Centrifugo's unset value: the channel-wide format.
    (
        {
            "publication_data_format": "binary",
            "namespaces": [{"name": "ns", "publication_data_format": ""}],
        },
        "binary",
        "binary",
    ),
]


@pytest.mark.parametrize(("channel", "plain", "namespaced"), _FORMAT_ROWS)
def test_publication_data_format(channel: dict[str, object], plain: str, namespaced: str) -> None:
    """Channel-wide default (json), overridden by without_namespace and per namespace."""
    channel = {"namespaces": [{"name": "ns"}], **channel}
    rules = ChannelRules(load_settings(environ={}, overrides={"channel": channel}).channel)
    assert (rules.resolve("x").data_format, rules.resolve("ns:x").data_format) == (
        plain,
        namespaced,
    )


@pytest.mark.parametrize(
    ("channel", "path"),
    [
        ({"publication_data_format": "bytes"}, "channel.publication_data_format"),
        ({"without_namespace": {"publication_data_format": "protobuf"}},
         "channel.without_namespace.publication_data_format"),
        ({"namespaces": [{"name": "ns", "publication_data_format": "JSON"}]},
         "channel.namespaces.0.publication_data_format"),
    ],
)  # fmt: skip
def test_unknown_publication_data_format_is_a_config_error(
    channel: dict[str, object], path: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, overrides={"channel": channel})
    assert error.value.problems == [(path, "Input should be 'json', 'json_object' or 'binary'")]
