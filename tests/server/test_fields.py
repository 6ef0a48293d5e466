"""Typed field reads: whatever a client sends, the answer is a value or a 107."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from roomcast.codes import ErrorCode, ProtocolError
from roomcast.engine import StreamPosition
from roomcast.fields import (
    INT_LIMIT,
    json_bytes,
    optional_bool,
    optional_dict,
    optional_int,
    optional_list,
    optional_position,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 0), (5, 5), ("5", 5), ("0042", 42), (INT_LIMIT - 1, INT_LIMIT - 1), (-1, -1)],
)
def test_integers_and_numeric_strings_are_read(raw: Any, expected: int) -> None:
    assert optional_int({"offset": raw}, "offset") == expected


@pytest.mark.parametrize(
    "raw",
    ["²", "١٢", "", "5 ", "-5", "9" * 5000, True, 1.5, [], {}, INT_LIMIT, -INT_LIMIT],
    ids=repr,
)
def test_anything_else_is_a_bad_request(raw: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        optional_int({"offset": raw}, "offset")
    assert caught.value.code == ErrorCode.BAD_REQUEST


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


READERS: list[tuple[Callable[[dict[str, Any], str], Any], list[Any], list[Any]]] = [
    (optional_bool, [None, True, False], [0, 1, "true", [], {}]),
    (optional_dict, [None, {}, {"a": 1}], [0, "x", [], True]),
    (optional_list, [None, [], [1]], [0, "x", {}, True]),
    (
        optional_position,
        [None, {}, {"offset": 3, "epoch": "e"}, {"offset": "3"}],
        [[], "x", {"offset": -1}, {"offset": "²"}, {"epoch": 5}, {"offset": 2**70}],
    ),
    (lambda req, key: json_bytes(req[key], key), [1, "x", _nested(200)], [_nested(300)]),
]


@pytest.mark.parametrize(
    ("reader", "good", "bad"), READERS, ids=lambda r: getattr(r, "__name__", "")
)
def test_every_reader_reads_or_answers_107(
    reader: Callable[[dict[str, Any], str], Any], good: list[Any], bad: list[Any]
) -> None:
    for value in good:
        reader({"field": value}, "field")
    for value in bad:
        with pytest.raises(ProtocolError) as caught:
            reader({"field": value}, "field")
        assert caught.value.code == ErrorCode.BAD_REQUEST, value


def test_position_fields() -> None:
    assert optional_position({"since": {"offset": 3, "epoch": "e"}}, "since") == StreamPosition(
        3, "e"
    )
    assert optional_position({}, "since") is None
