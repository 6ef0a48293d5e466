"""Children are applied again only when their body changed, drifted, or long ago."""

from __future__ import annotations

from roomcast_operator.applied import AppliedObjects, digest, key_of

CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_same_body_is_not_applied_again_until_the_refresh() -> None:
    clock = Clock()
    cache = AppliedObjects(600, clock)
    key, body = key_of(CONFIG), digest(CONFIG)
    assert key == ("v1", "ConfigMap", "n", "c")
    assert cache.due(key, body)
    cache.record(key, body)
    clock.now = 599
    assert not cache.due(key, body)
    assert cache.due(key, digest({**CONFIG, "data": {"a": "b"}}))
    clock.now = 600
    assert cache.due(key, body)


def test_a_spec_changed_by_someone_else_is_applied_again() -> None:
    cache = AppliedObjects(600, Clock())
    key, body = ("apps/v1", "Deployment", "n", "d"), "x"
    cache.record(key, body, {"metadata": {"generation": 4}})
    assert not cache.due(key, body, live_generation=4)
    assert cache.due(key, body, live_generation=5)
