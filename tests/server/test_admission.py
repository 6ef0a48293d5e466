"""The upgrade decision shared by both WebSocket paths."""

from __future__ import annotations

from roomcast.admission import upgrade_refusal
from roomcast.config import load_settings
from roomcast.engine.memory import MemoryEngine
from roomcast.node import Node
from roomcast.origins import OriginPolicy


def test_refusals_in_order() -> None:
    node = Node(
        load_settings(environ={}, overrides={"client": {"connection_limit": 2}}), MemoryEngine()
    )
    origins = OriginPolicy(["https://app.example.com"])
    ok = ("https://app.example.com", "h", "centrifuge-json")
    assert upgrade_refusal(node, [], origins, *ok) is None
    assert upgrade_refusal(node, [1, 2], origins, *ok) == (503, "connection limit")
    assert upgrade_refusal(node, [], origins, "https://evil.example", "h", "") == (
        403,
        "origin not allowed",
    )
    assert upgrade_refusal(node, [], origins, None, "h", "centrifuge-protobuf") is None
    node.draining = True
    assert upgrade_refusal(node, [], origins, *ok) == (503, "draining")
