"""A subscription's options: namespace, override and the client's ask, resolved in one place."""

from __future__ import annotations

from roomcast.config import ChannelOptions
from roomcast.subscription_options import Asked, resolve
from roomcast.tokens import SubscriptionOverride


def test_override_replaces_the_namespace_option() -> None:
    o = ChannelOptions(presence=True, join_leave=False)
    got = resolve(
        o,
        SubscriptionOverride(presence=False, join_leave=True),
        Asked(),
        has_history=False,
        history_permission=False,
        presence_permission=False,
    )
    assert not got.presence and got.join_leave and not got.push_join_leave


def test_recovery_needs_history_and_an_allowed_ask_unless_forced() -> None:
    asked = Asked(recoverable=True)
    plain = ChannelOptions()

    def recoverable(o: ChannelOptions, has_history: bool, permission: bool) -> bool:
        return resolve(
            o,
            None,
            asked,
            has_history=has_history,
            history_permission=permission,
            presence_permission=False,
        ).recoverable

    assert not recoverable(plain, True, False)
    assert recoverable(plain, True, True)
    assert recoverable(ChannelOptions(allow_recovery=True), True, False)
    assert recoverable(ChannelOptions(force_recovery=True), True, False)
    assert not recoverable(ChannelOptions(force_recovery=True), False, True)


def test_recoverable_implies_positioned_and_push_join_leave_needs_permission() -> None:
    got = resolve(
        ChannelOptions(force_recovery=True, join_leave=True),
        None,
        Asked(join_leave=True),
        has_history=True,
        history_permission=False,
        presence_permission=False,
    )
    assert got.recoverable and got.positioned and got.join_leave and not got.push_join_leave
    pushed = resolve(
        ChannelOptions(join_leave=True),
        None,
        Asked(join_leave=True),
        has_history=False,
        history_permission=False,
        presence_permission=True,
    )
    assert pushed.push_join_leave and not pushed.positioned
