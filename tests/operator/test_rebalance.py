"""Rebalancing: the decision over scraped counts, and the steps' timing."""

from __future__ import annotations

from roomcast_operator import rebalance
from roomcast_operator.rebalance import ISOLATE_SECONDS, SETTLE_SECONDS, Rebalancer, Settings

ON = Settings(enabled=True, window_seconds=10, interval_seconds=30)
KEY = ("prod", "chat")


def test_balanced_means_every_pod_within_the_tolerance() -> None:
    assert rebalance.balanced({"a": 220, "b": 180, "c": 200}, 10)
    assert not rebalance.balanced({"a": 221, "b": 180, "c": 199}, 10)
    assert rebalance.balanced({"a": 5}, 10)  # one pod
    assert rebalance.balanced({"a": 0, "b": 0}, 10)  # nobody connected


def test_plan_moves_the_excess_over_the_average_capped_per_pod() -> None:
    # After a scale-out from 2 to 3 pods with 600 clients: 200 each is the goal.
    assert rebalance.plan({"a": 300, "b": 300, "c": 0}, ON) == {"a": 75, "b": 75}  # 25 % cap
    assert rebalance.plan({"a": 300, "b": 300, "c": 0}, Settings(max_share_percent=50)) == {
        "a": 100,
        "b": 100,
    }
    # One cold pod: the pods above the average give their excess only.
    assert rebalance.plan({"a": 215, "b": 215, "c": 170}, ON) == {"a": 15, "b": 15}
    assert rebalance.plan({"a": 210, "b": 200, "c": 190}, ON) == {}  # within 10 %
    assert rebalance.plan({"a": 2, "b": 1}, ON) == {}  # too few to move anyone


def test_a_step_isolates_then_sheds_then_serves_again_and_waits() -> None:
    now = [100.0]
    rebalancer = Rebalancer(lambda: now[0])
    counts = {"a": 300.0, "b": 300.0, "c": 0.0}
    assert rebalancer.advance(KEY, ON, counts, steady=True) == {}
    # The hot pods leave the Service first; nothing is closed until kube-proxy follows.
    assert rebalancer.out_of_service(KEY) == {"a", "b"}
    now[0] += ISOLATE_SECONDS - 1
    assert rebalancer.advance(KEY, ON, counts, steady=True) == {}
    now[0] += 1
    assert rebalancer.advance(KEY, ON, counts, steady=True) == {"a": 75, "b": 75}
    assert rebalancer.advance(KEY, ON, counts, steady=True) == {}  # sent once
    now[0] += ON.window_seconds + SETTLE_SECONDS
    moved = {"a": 225.0, "b": 225.0, "c": 150.0}
    assert rebalancer.advance(KEY, ON, moved, steady=True) == {}
    assert rebalancer.out_of_service(KEY) == frozenset()  # every pod serves again
    # Rate-limited: the next step waits intervalSeconds after the last one ended.
    now[0] += ON.interval_seconds - 1
    assert rebalancer.advance(KEY, ON, moved, steady=True) == {}
    assert rebalancer.out_of_service(KEY) == frozenset()
    now[0] += 1
    rebalancer.advance(KEY, ON, moved, steady=True)
    assert rebalancer.out_of_service(KEY) == {"a", "b"}


def test_no_step_while_unsteady_or_off_and_a_step_under_way_is_abandoned() -> None:
    now = [0.0]
    rebalancer = Rebalancer(lambda: now[0])
    counts = {"a": 300.0, "b": 300.0, "c": 0.0}
    assert rebalancer.advance(KEY, Settings(), counts, steady=True) == {}  # off by default
    assert rebalancer.advance(KEY, ON, counts, steady=False) == {}  # a rollout, say
    assert rebalancer.out_of_service(KEY) == frozenset()
    rebalancer.advance(KEY, ON, counts, steady=True)
    assert rebalancer.out_of_service(KEY) == {"a", "b"}
    now[0] += ISOLATE_SECONDS
    assert rebalancer.advance(KEY, ON, counts, steady=False) == {}  # a rollout began
    assert rebalancer.out_of_service(KEY) == frozenset()
    # A pod of the step went away meanwhile: abandoned too.
    now[0] += ON.interval_seconds
    rebalancer.advance(KEY, ON, counts, steady=True)
    now[0] += ISOLATE_SECONDS
    assert rebalancer.advance(KEY, ON, {"b": 300.0, "c": 0.0}, steady=True) == {}
    assert rebalancer.out_of_service(KEY) == frozenset()
