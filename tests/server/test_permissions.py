"""Who may subscribe, publish, read history and see presence: the namespace options decide."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.channels import ChannelRules
from roomcast.config import ChannelOptions, load_settings
from roomcast.permissions import may_publish, may_read_history, may_see_presence, may_subscribe


def options(**flags: Any) -> ChannelOptions:
    return ChannelOptions(**flags)


@pytest.mark.parametrize(
    ("decide", "kind"),
    [(may_publish, "publish"), (may_read_history, "history"), (may_see_presence, "presence")],
)
def test_client_subscriber_anonymous_and_insecure(decide: Any, kind: str) -> None:
    nothing = options()
    assert not decide(nothing, user="u", subscribed=True, insecure=False)
    assert decide(nothing, user="", subscribed=False, insecure=True)
    for_client = options(**{f"allow_{kind}_for_client": True})
    assert decide(for_client, user="u", subscribed=False, insecure=False)
    assert not decide(for_client, user="", subscribed=False, insecure=False)  # anonymous
    anonymous_too = options(
        **{f"allow_{kind}_for_client": True, f"allow_{kind}_for_anonymous": True}
    )
    assert decide(anonymous_too, user="", subscribed=False, insecure=False)
    for_subscriber = options(**{f"allow_{kind}_for_subscriber": True})
    assert decide(for_subscriber, user="u", subscribed=True, insecure=False)
    assert not decide(for_subscriber, user="u", subscribed=False, insecure=False)


def test_subscribe_rules() -> None:
    settings = load_settings(
        environ={},
        overrides={
            "channel": {
                "without_namespace": {"allow_subscribe_for_client": True},
                "namespaces": [{"name": "dm", "allow_user_limited_channels": True}],
            }
        },
    )
    rules = ChannelRules(settings.channel)
    assert may_subscribe(rules.resolve("room"), user="u", insecure=False)
    assert not may_subscribe(rules.resolve("room"), user="", insecure=False)
    assert may_subscribe(rules.resolve("dm:chat#a,b"), user="a", insecure=False)
    assert not may_subscribe(rules.resolve("dm:chat#a,b"), user="c", insecure=False)
    assert not may_subscribe(rules.resolve("$private"), user="u", insecure=True)
