"""Which publication data a JSON connection can carry, and how the server API shows the rest."""

from __future__ import annotations

import logging

import orjson
import pytest

from roomcast.dataformat import Refusals, api_wire, json_form, json_wire
from roomcast.engine import Publication


@pytest.mark.parametrize(
    ("data", "form"),
    [
        (b'{"a":1}', b'{"a":1}'),
        (b'"text"', b'"text"'),
        (b"  42 ", b"  42 "),
        (b'{\n  "a": [1,\r\n 2]\n}', b'{"a":[1,2]}'),  # over lines: compacted
        (b"boom", None),
        (b"", None),
        (b"\xff\xfe", None),
        (b'{"a":1} trailing', None),
    ],
)
def test_json_form(data: bytes, form: bytes | None) -> None:
    assert json_form(Publication(data)) == form


def test_json_form_is_decided_once_per_publication() -> None:
    pub = Publication(b"[1, 2]")
    assert json_form(pub) is pub.data  # as is, not a copy
    pub.data = b"boom"  # never happens; shows the answer is remembered
    assert json_form(pub) == b"[1, 2]"


def test_json_wire() -> None:
    assert json_wire(Publication(b"boom", offset=3)) is None
    wire = json_wire(Publication(b'{\n"a":1}', offset=3))
    assert orjson.dumps(wire) == b'{"data":{"a":1},"offset":3}'


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b'{"a":1}', {"data": {"a": 1}, "offset": 2}),
        (b"\x00\xff", {"b64data": "AP8=", "offset": 2}),
        (b"", {"b64data": "", "offset": 2}),
    ],
)
def test_api_wire(data: bytes, wire: dict[str, object]) -> None:
    assert orjson.loads(orjson.dumps(api_wire(Publication(data, offset=2)))) == wire


def test_refusals_are_logged_once_per_channel_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = Refusals(interval=3600)
    with caplog.at_level(logging.WARNING, logger="roomcast.dataformat"):
        for _ in range(5):
            refusals.note("bin:a")
        refusals.note("bin:b")
    assert [(r.levelname, r.__dict__["channel"], r.__dict__["closed"]) for r in caplog.records] == [
        ("WARNING", "bin:a", 1),
        ("WARNING", "bin:b", 1),
    ]
    caplog.clear()
    later = Refusals(interval=0)
    with caplog.at_level(logging.WARNING, logger="roomcast.dataformat"):
        later.note("bin:a")
        later.note("bin:a")
    assert [r.__dict__["closed"] for r in caplog.records] == [1, 1]
