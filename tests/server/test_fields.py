"""Typed field reads: whatever a client sends, the answer is a value or a 107."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.codes import ErrorCode, ProtocolError
from roomcast.fields import INT_LIMIT, optional_int


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
