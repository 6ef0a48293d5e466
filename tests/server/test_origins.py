from __future__ import annotations

import pytest

from roomcast.origins import OriginPolicy


@pytest.mark.parametrize(
    ("allowed", "origin", "host", "ok"),
    [
        ([], None, "h:1", True),
        ([], "null", "h:1", False),
        ([], "http://h:1", "h:1", True),
        ([], "http://other:1", "h:1", False),
        (["*"], "https://anything", "h", True),
        (["*"], "null", "h", False),
        (["https://app.example.com"], "https://APP.example.com", "h", True),
        (["https://app.example.com"], "https://app.example.com.evil.example", "h", False),
        (["https://*.example.com"], "https://a.example.com", "h", True),
        (["https://*.example.com"], "https://example.com.evil.io", "h", False),
    ],
)
def test_origin_policy(allowed: list[str], origin: str | None, host: str, ok: bool) -> None:
    assert OriginPolicy(allowed).allows(origin, host) is ok
