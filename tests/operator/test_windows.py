"""Windows over successive scrapes: deltas, counter resets, the memory's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from roomcast_operator.health import PodMetrics, PodState, WindowState
from roomcast_operator.windows import Sample, ScrapeMemory, delta, totals, windows

from .helpers import make_spec

LIMITS = make_spec().rollout.health  # windows of 20s, 3 in a row
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CLUSTER = ("prod", "chat")


def scraped(name: str, revision: int, **counters: float) -> PodState:
    return PodState(
        name, revision, ready=True, restarts=0, age_seconds=100, metrics=PodMetrics(**counters)
    )


def test_delta_between_two_scrapes_and_across_a_restart() -> None:
    before = PodMetrics(connects_accepted=100, engine_errors=5, latency_buckets=((0.1, 10.0),))
    after = PodMetrics(connects_accepted=150, engine_errors=7, latency_buckets=((0.1, 30.0),))
    moved = delta(before, after)
    assert (moved.connects_accepted, moved.engine_errors) == (50, 2)
    assert moved.latency_buckets == ((0.1, 20.0),)
    # The container restarted: its counters began again from zero.
    restarted = PodMetrics(connects_accepted=3, engine_errors=1, latency_buckets=((0.1, 2.0),))
    moved = delta(after, restarted)
    assert (moved.connects_accepted, moved.engine_errors) == (3, 1)
    assert moved.latency_buckets == ((0.1, 2.0),)


def test_totals_sum_the_pods_of_a_revision_over_the_window() -> None:
    series = {
        "a": (
            Sample(0, 2, PodMetrics(engine_errors=0)),
            Sample(10, 2, PodMetrics(engine_errors=4)),
            Sample(20, 2, PodMetrics(engine_errors=10)),
        ),
        "b": (
            Sample(15, 2, PodMetrics(engine_errors=1)),
            Sample(20, 2, PodMetrics(engine_errors=3)),
        ),
        "old": (Sample(0, 1, PodMetrics()), Sample(20, 1, PodMetrics(engine_errors=50))),
    }
    new = totals(series, lambda r: r == 2, 10, 20)
    # a from its scrape at 10 (the window's start) to 20; b from its first scrape inside.
    assert (new.pods, new.pod_seconds, new.deltas.engine_errors) == (2, 15, 8)
    old = totals(series, lambda r: r != 2, 10, 20)
    assert (old.pods, old.pod_seconds, old.deltas.engine_errors) == (1, 20, 50)
    # Nothing scraped inside the window: nothing to judge.
    assert totals(series, lambda r: r == 2, 20, 30).pods == 0


def test_memory_keeps_what_the_windows_need_and_forgets_gone_pods() -> None:
    memory = ScrapeMemory()
    keep = LIMITS.window_seconds * LIMITS.consecutive_bad_windows
    for second in range(0, 200, 3):
        now = T0 + timedelta(seconds=second)
        samples = memory.record(CLUSTER, now, [scraped("a", 2, engine_errors=second)], LIMITS)
    oldest = samples["a"][0].at
    assert now.timestamp() - keep - 3 <= oldest <= now.timestamp() - keep
    assert len(samples["a"]) <= keep // 3 + 2
    # A burst of passes within a second keeps one sample.
    again = memory.record(CLUSTER, now + timedelta(milliseconds=200), [scraped("a", 2)], LIMITS)
    assert again["a"][-1].at == now.timestamp()
    # The pod is gone: so are its samples. Another cluster's are its own.
    assert memory.record(CLUSTER, now, [], LIMITS) == {}
    memory.record(("other", "chat"), now, [scraped("a", 2)], LIMITS)
    memory.forget(("other", "chat"))
    assert memory.record(("other", "chat"), now, [], LIMITS) == {}


def test_unscraped_pods_add_no_samples() -> None:
    memory = ScrapeMemory()
    silent = PodState("a", 2, ready=True, restarts=0, age_seconds=5, unscrapable=True)
    assert memory.record(CLUSTER, T0, [silent], LIMITS) == {}


def test_windows_end_now_and_judge_the_release_beside_the_old_one() -> None:
    memory = ScrapeMemory()
    samples = {}
    # Revision 2 fails every connect from second 30 on; revision 1 serves well throughout.
    for second in range(0, 91, 3):
        now = T0 + timedelta(seconds=second)
        failing = max(0, second - 30) * 10
        pods = [
            scraped("new", 2, connects_accepted=second * 10, connects_rejected=failing),
            scraped("old", 1, connects_accepted=second * 10),
        ]
        samples = memory.record(CLUSTER, now, pods, LIMITS)
    states = [w.state for w in windows(samples, 2, now, LIMITS)]
    assert states == [WindowState.BAD, WindowState.BAD, WindowState.BAD]
    # Thirty seconds earlier only the newest window was bad.
    earlier = T0 + timedelta(seconds=60)
    early = {
        name: tuple(s for s in series if s.at <= earlier.timestamp())
        for name, series in samples.items()
    }
    states = [w.state for w in windows(early, 2, earlier, LIMITS)]
    assert states[-1] is WindowState.BAD and states[0] is not WindowState.BAD
