"""Rebalancing: after a scale-out, move clients from the hottest pods to the emptiest.

New pods take only new connections, so after a scale-out the old pods stay hot for as
long as their clients stay connected. When ``spec.rebalance`` is on and a pod's count is
more than ``tolerancePercent`` off the fleet's average, the operator takes one *step*:

1. every pod at or above the average leaves the Service (the serving label, as in a
   rollout), so only the pods below it take new connections;
2. after :data:`ISOLATE_SECONDS` (for kube-proxy to follow the endpoints), each pod above
   the average is asked (the server API's ``shed``, on its own address) to move its excess
   over the average, at most ``maxSharePercent`` of its clients, with 3020 closes paced
   over ``windowSeconds``; they reconnect, through the Service, to the pods below it;
3. once the window and :data:`SETTLE_SECONDS` have passed, every pod serves again.

The next step waits ``intervalSeconds`` and repeats until every pod is within the
tolerance. Steps are taken only while the fleet is steady (see ``reconcile``): no release
in progress, no pod terminating, unready or unscraped; a step under way is abandoned (its
pods serve again at once) when that stops being true. :func:`plan` is the decision, a pure
function over the scraped counts; :class:`Rebalancer` keeps the steps' timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ISOLATE_SECONDS = 3.0
"""From taking the hot pods out of the Service to the first close: kube-proxy follows an
endpoint change within a second or two."""
SETTLE_SECONDS = 3.0
"""After the last close, for the moved clients to reconnect before every pod serves again."""


@dataclass(frozen=True)
class Settings:
    """``spec.rebalance``."""

    enabled: bool = False
    tolerance_percent: float = 10.0
    max_share_percent: float = 25.0
    window_seconds: float = 10.0
    interval_seconds: float = 30.0


def balanced(counts: Mapping[str, float], tolerance_percent: float) -> bool:
    """Every pod within ``tolerance_percent`` of the average (a fleet of one always is)."""
    if len(counts) < 2:
        return True
    average = sum(counts.values()) / len(counts)
    slack = average * tolerance_percent / 100
    return all(abs(count - average) <= slack for count in counts.values())


def plan(counts: Mapping[str, float], settings: Settings) -> dict[str, int]:
    """How many clients each pod should move in the next step (pods moving none left out).

    Nothing while the fleet is balanced. Otherwise every pod above the average moves its
    excess, capped at ``max_share_percent`` of its clients, so a step never moves more
    than the imbalance and never much of one pod at once.
    """
    if balanced(counts, settings.tolerance_percent):
        return {}
    average = sum(counts.values()) / len(counts)
    moves = {}
    for pod, count in counts.items():
        excess = math.floor(count - average)
        share = math.floor(count * settings.max_share_percent / 100)
        if min(excess, share) > 0:
            moves[pod] = min(excess, share)
    return moves


@dataclass
class Step:
    moves: dict[str, int]
    """Pod -> clients it is asked to move."""
    out_of_service: frozenset[str]
    """Pods taken out of the Service for the step: every pod at or above the average."""
    started: float
    shed_sent: bool = False


@dataclass
class Rebalancer:
    """The rebalancing steps of every cluster, one at a time each, over passes."""

    clock: Callable[[], float]
    _steps: dict[tuple[str, str], Step] = field(default_factory=dict)
    _last_end: dict[tuple[str, str], float] = field(default_factory=dict)

    def out_of_service(self, key: tuple[str, str]) -> frozenset[str]:
        """Pods the current step keeps out of the Service."""
        step = self._steps.get(key)
        return step.out_of_service if step is not None else frozenset()

    def advance(
        self,
        key: tuple[str, str],
        settings: Settings,
        counts: Mapping[str, float],
        steady: bool,
    ) -> dict[str, int]:
        """Move the cluster's rebalancing on by one pass: the sheds to send now."""
        now = self.clock()
        step = self._steps.get(key)
        if step is not None:
            gone = not set(step.moves) <= set(counts)
            if not steady or not settings.enabled or gone:
                self._end(key, now)
            elif not step.shed_sent and now - step.started >= ISOLATE_SECONDS:
                step.shed_sent = True
                return dict(step.moves)
            elif step.shed_sent and (
                now - step.started >= ISOLATE_SECONDS + settings.window_seconds + SETTLE_SECONDS
            ):
                self._end(key, now)
            return {}
        if not settings.enabled or not steady:
            return {}
        last = self._last_end.get(key)
        if last is not None and now - last < settings.interval_seconds:
            return {}
        moves = plan(counts, settings)
        if moves:
            average = sum(counts.values()) / len(counts)
            hot = frozenset(pod for pod, count in counts.items() if count >= average)
            self._steps[key] = Step(moves, hot, now)
        return {}

    def _end(self, key: tuple[str, str], now: float) -> None:
        self._steps.pop(key, None)
        self._last_end[key] = now

    def forget(self, key: tuple[str, str]) -> None:
        self._steps.pop(key, None)
        self._last_end.pop(key, None)
