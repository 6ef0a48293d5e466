"""Who may do what on a channel: pure decisions from the channel's options and the client.

``user`` is the connection's user ("" when anonymous), ``subscribed`` whether it is
subscribed to the channel, ``insecure`` the ``client.insecure`` setting that lets
everyone do everything (development only).
"""

from __future__ import annotations

from .channels import ChannelInfo
from .config import ChannelOptions


def _anonymous_ok(user: str, allowed_for_anonymous: bool) -> bool:
    return bool(user) or allowed_for_anonymous


def may_subscribe(info: ChannelInfo, *, user: str, insecure: bool) -> bool:
    """A subscribe without a subscription token."""
    o = info.options
    if info.private:
        return False
    if info.allowed_users is not None:
        if user and user in info.allowed_users:
            return True
    elif o.allow_subscribe_for_client and _anonymous_ok(user, o.allow_subscribe_for_anonymous):
        return True
    return insecure


def may_publish(o: ChannelOptions, *, user: str, subscribed: bool, insecure: bool) -> bool:
    return insecure or (
        (o.allow_publish_for_client or (o.allow_publish_for_subscriber and subscribed))
        and _anonymous_ok(user, o.allow_publish_for_anonymous)
    )


def may_read_history(o: ChannelOptions, *, user: str, subscribed: bool, insecure: bool) -> bool:
    return insecure or (
        (o.allow_history_for_client or (o.allow_history_for_subscriber and subscribed))
        and _anonymous_ok(user, o.allow_history_for_anonymous)
    )


def may_see_presence(o: ChannelOptions, *, user: str, subscribed: bool, insecure: bool) -> bool:
    return insecure or (
        (o.allow_presence_for_client or (o.allow_presence_for_subscriber and subscribed))
        and _anonymous_ok(user, o.allow_presence_for_anonymous)
    )
