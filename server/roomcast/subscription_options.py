"""What one subscription gets: channel options, a token's overrides and the request, resolved.

A pure function, so the rules (Centrifugo's) can be read and tested in one place:
an override from a subscription token or the server API replaces the namespace's
option; recovery and positioning need history, and, unless forced, the client's
ask plus the namespace's allowance or history permission.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ChannelOptions
from .tokens import SubscriptionOverride


@dataclass(frozen=True, slots=True)
class Asked:
    """What the client asked for in its subscribe command."""

    recoverable: bool = False
    positioned: bool = False
    join_leave: bool = False


@dataclass(frozen=True, slots=True)
class Resolved:
    presence: bool
    join_leave: bool
    push_join_leave: bool
    recoverable: bool
    positioned: bool


def resolve(
    o: ChannelOptions,
    override: SubscriptionOverride | None,
    asked: Asked,
    *,
    has_history: bool,
    history_permission: bool,
    presence_permission: bool,
) -> Resolved:
    ov = override or SubscriptionOverride()

    def pick(option: bool, overridden: bool | None) -> bool:
        return option if overridden is None else overridden

    join_leave = pick(o.join_leave, ov.join_leave)
    recoverable = has_history and (
        pick(o.force_recovery, ov.force_recovery)
        or (asked.recoverable and (o.allow_recovery or history_permission))
    )
    positioned = has_history and (
        recoverable
        or pick(o.force_positioning, ov.force_positioning)
        or (asked.positioned and (o.allow_positioning or history_permission))
    )
    push_join_leave = join_leave and (
        pick(o.force_push_join_leave, ov.force_push_join_leave)
        or (asked.join_leave and presence_permission)
    )
    return Resolved(
        presence=pick(o.presence, ov.presence),
        join_leave=join_leave,
        push_join_leave=push_join_leave,
        recoverable=recoverable,
        positioned=positioned,
    )
