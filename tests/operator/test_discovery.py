"""Optional APIs are looked up again periodically, and a failed look-up keeps the answer.

The probe here is a stand-in for API discovery that fails on demand: a transient error
from the API server is the case under test and cannot be provoked on the bed at will.
"""

from __future__ import annotations

import pytest

from roomcast_operator.discovery import CapabilitiesUnknown, Discovery
from roomcast_operator.kube import ApiError
from roomcast_operator.render import Capabilities


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(self) -> None:
        self.served: set[str] = set()
        self.failing = False
        self.calls = 0

    async def serves(self, api_version: str, plural: str) -> bool:
        self.calls += 1
        if self.failing:
            raise ApiError(503, "the server is currently unable to handle the request")
        return plural in self.served


async def test_an_api_installed_later_is_seen_after_the_interval() -> None:
    api, clock = Api(), Clock()
    discovery = Discovery(api.serves, 60, clock)
    assert await discovery.capabilities() == Capabilities()
    api.served.add("scaledobjects")
    clock.now = 59
    assert await discovery.capabilities() == Capabilities()
    clock.now = 60
    assert await discovery.capabilities() == Capabilities(scaled_objects=True)


async def test_a_failed_refresh_keeps_what_was_known() -> None:
    api, clock = Api(), Clock()
    api.served = {"scaledobjects", "servicemonitors"}
    discovery = Discovery(api.serves, 60, clock)
    assert await discovery.capabilities() == Capabilities(True, True)
    api.failing = True
    clock.now = 120
    assert await discovery.capabilities() == Capabilities(True, True)
    api.failing, api.served = False, set()
    clock.now = 180
    assert await discovery.capabilities() == Capabilities()


async def test_nothing_known_until_a_probe_succeeds() -> None:
    api, clock = Api(), Clock()
    api.failing = True
    discovery = Discovery(api.serves, 60, clock)
    with pytest.raises(CapabilitiesUnknown):
        await discovery.capabilities()
    api.failing = False
    calls = api.calls
    assert await discovery.capabilities() == Capabilities()  # retried at once
    assert api.calls > calls
