"""Fossil deltas, decoded by the official Python SDK's own implementation."""

from __future__ import annotations

import random

import orjson
import pytest
from centrifuge.fossil import apply_delta

from roomcast import fossil


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(0, 6)):
        at = rng.randint(0, len(text))
        cut = rng.randint(0, 4)
        text = text[:at] + rng.choice(["x", "é", "😀", "12345", "€€", ""]) + text[at + cut :]
    return text


def test_sdk_rebuilds_every_target_and_literals_stay_utf8() -> None:
    """Random JSON documents with multi-byte characters, edited at random places: the
    SDK rebuilds each target, and each delta is valid UTF-8 (it travels in a JSON string)."""
    rng = random.Random(7)
    for _ in range(400):
        source = orjson.dumps(
            {
                "scores": [rng.randint(0, 10_000) for _ in range(rng.randint(0, 80))],
                "name": "ünïcødé 😀 " * rng.randint(0, 6),
            }
        ).decode()
        target = _mutate(rng, source)
        delta = fossil.create(source.encode(), target.encode())
        delta.decode("utf-8")
        assert bytes(apply_delta(source.encode(), delta)) == target.encode()


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (b"", b""),
        (b"", b'{"a":1}'),
        (b'{"a":1}', b""),
        (b"short", b"short"),
        (b"x" * 100, b"x" * 100),
        (b"0123456789abcdef" * 4, b"prefix" + b"0123456789abcdef" * 4 + b"suffix"),
    ],
)
def test_edge_cases(source: bytes, target: bytes) -> None:
    assert bytes(apply_delta(source, fossil.create(source, target))) == target


def test_small_change_makes_a_small_delta() -> None:
    source = orjson.dumps({"players": [{"id": i, "score": i * 10} for i in range(200)]})
    target = source.replace(b'"score":500', b'"score":501')
    delta = fossil.create(source, target)
    assert len(delta) < len(target) // 50


def test_checksum_matches_the_sdk() -> None:
    from centrifuge.fossil import checksum

    for data in (b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256)) * 3):
        assert fossil.checksum(data) == checksum(data)
