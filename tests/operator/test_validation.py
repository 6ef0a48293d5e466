"""Semantic checks before a release is rolled out."""

from __future__ import annotations

from roomcast_operator import render, validation

from .helpers import make_spec


def problems(**fields: object) -> list[str]:
    spec = make_spec(**fields)
    return validation.problems(spec, render.release_of(spec))


def test_good_settings_pass() -> None:
    assert problems() == []
    assert problems(redis={"urls": ["redis://r0:6379/0", "rediss://r1:6380/2"]}) == []
    assert problems(redis={"sentinel": {"addresses": ["s0:26379"], "masterName": "m"}}) == []


def test_bad_redis_urls_are_caught() -> None:
    assert problems(redis={"urls": ["redis://r0:notaport/0"]}) == [
        "redis URL 'redis://r0:notaport/0': Port could not be cast to integer value as 'notaport'"
    ]
    assert problems(redis={"urls": ["redis://:6379/x"]}) == [
        "redis URL 'redis://:6379/x' has no host",
        "redis URL 'redis://:6379/x': database 'x' is not a number",
    ]
    assert problems(redis={"urls": ["redis://a:1/0", "redis://a:1/0"]}) == [
        "redis.urls lists a shard twice"
    ]


def test_sentinel_with_shards_is_rejected() -> None:
    assert problems(
        redis={
            "urls": ["redis://a:1/0", "redis://b:1/0"],
            "sentinel": {"addresses": ["s:26379"], "masterName": "m"},
        }
    ) == ["redis.sentinel cannot be combined with cluster mode or several shards"]


def test_server_settings_model_rejects_bad_channel_options() -> None:
    found = problems(channel={"namespaces": [{"name": "rooms", "history_size": -1}]})
    assert found == [
        "channel.namespaces.0.history_size: Input should be greater than or equal to 0"
    ]
    assert problems(serverConfig={"client": {"no_such_option": True}}) == [
        "client.no_such_option: Extra inputs are not permitted"
    ]
