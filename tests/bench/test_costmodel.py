"""The fleet projection of the comparison benchmark: which medians it takes, and its sums."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "peers" / "costmodel.py"


@pytest.fixture(scope="module")
def costmodel() -> ModuleType:
    spec = importlib.util.spec_from_file_location("costmodel", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median(value: float) -> dict[str, float]:
    return {"median": value, "min": value, "max": value}


def results(peer: str, *, redis: float | None) -> dict[str, Any]:
    cases: dict[str, Any] = {
        "idle-10000": {"rss_kib_per_conn": median(4.0), "rss_mib_fresh": median(60.0)},
        "handshake": {"cpu_us_per_connect": median(150.0)},
        "fanout-2000-single": {"cpu_us_per_delivery": median(5.0)},
        "fanout-10000-single": {"cpu_us_per_delivery": median(8.0)},
    }
    if redis is not None:
        cases["redis-10000"] = {"cpu_us_per_delivery": median(redis)}
    return {
        "peers": [{"name": peer, "title": peer.title()}],
        "cases": {name: {"peers": {peer: {"summary": summary}}} for name, summary in cases.items()},
    }


def test_through_redis_when_that_case_ran(costmodel: ModuleType) -> None:
    row = costmodel.project(results("roomcast", redis=10.0))["peers"]["roomcast"]
    deliveries = 500_000 + 1_000_000 / 25  # publications plus pings, one delivery each
    cpu_s = (deliveries * 10.0 + 200_000 / 60 * 150.0) / 1e6
    assert row["cores"] == pytest.approx(cpu_s / 0.6)
    assert row["pods"] == math.ceil(cpu_s / 0.6)
    assert row["memory_gib"] == pytest.approx((1_000_000 * 4.0 / 1024 + row["pods"] * 60) / 1024)
    assert row["redis_shards"] == 1  # 250 publications/s to each of 10 pods
    assert row["inputs"]["delivery_source"] == "through Redis"


def test_smallest_single_frame_room_without_redis(costmodel: ModuleType) -> None:
    row = costmodel.project(results("ws", redis=None))["peers"]["ws"]
    assert row["inputs"]["cpu_us_per_delivery"] == 5.0  # the room of 2,000, not 10,000
    assert row["inputs"]["delivery_source"] == "one process"
    cpu_s = (500_000 * 5.0 + 200_000 / 60 * 150.0) / 1e6  # ws sends no pings
    assert row["cores"] == pytest.approx(cpu_s / 0.6)


def test_a_peer_missing_a_figure_is_left_out(costmodel: ModuleType) -> None:
    data = results("centrifugo", redis=12.0)
    del data["cases"]["handshake"]
    model = costmodel.project(data)
    assert model["peers"] == {}
    assert model["published"]["pods"] == 20
