"""Fan-out: pending subscribers buffer, live ones receive one encoded message each."""

from __future__ import annotations

import json

from roomcast.engine import ClientInfo, Publication
from roomcast.hub import Hub, Subscriber
from roomcast.metrics import Metrics


def subscriber(client_id: str, inbox: list[bytes], push_join_leave: bool = False) -> Subscriber:
    return Subscriber(client_id, inbox.append, push_join_leave)


def test_pending_subscriber_buffers_until_activated() -> None:
    hub = Hub(Metrics())
    inbox: list[bytes] = []
    assert hub.add_pending("c", subscriber("a", inbox)) is True
    hub.broadcast_publication("c", Publication(b'{"n":1}', offset=1))
    assert inbox == []
    buffered = hub.activate("c", "a")
    assert [p.offset for p in buffered] == [1]
    hub.broadcast_publication("c", Publication(b'{"n":2}', offset=2))
    assert json.loads(inbox[0]) == {
        "push": {"channel": "c", "pub": {"data": {"n": 2}, "offset": 2}}
    }


def test_one_encoding_shared_by_all_subscribers() -> None:
    metrics = Metrics()
    hub = Hub(metrics)
    inboxes: list[list[bytes]] = [[] for _ in range(3)]
    for i, inbox in enumerate(inboxes):
        hub.add_pending("c", subscriber(str(i), inbox))
        hub.activate("c", str(i))
    hub.broadcast_publication("c", Publication(b'"x"'))
    assert inboxes[0][0] is inboxes[1][0] is inboxes[2][0]
    assert metrics.deliveries == 3


def test_join_leave_only_to_those_who_asked_and_not_own_leave() -> None:
    hub = Hub(Metrics())
    wants: list[bytes] = []
    silent: list[bytes] = []
    hub.add_pending("c", subscriber("a", wants, push_join_leave=True))
    hub.add_pending("c", subscriber("b", silent))
    hub.activate("c", "a")
    hub.activate("c", "b")
    hub.broadcast_join_leave("c", "join", ClientInfo("u", "b"))
    hub.broadcast_join_leave("c", "leave", ClientInfo("u", "a"))
    assert len(wants) == 1 and b'"join"' in wants[0]
    assert silent == []


def test_remove_reports_last_subscriber() -> None:
    hub = Hub(Metrics())
    hub.add_pending("c", subscriber("a", []))
    hub.activate("c", "a")
    hub.add_pending("c", subscriber("b", []))
    assert hub.remove("c", "a") is False
    assert hub.remove("c", "b") is True
    assert hub.num_subscriptions == 0 and not hub.has_subscribers("c")


def test_subscriber_ahead_of_the_node_skips_what_it_already_has() -> None:
    """A recovery reply (read from the stream) can hold offsets this node has not
    received yet; when they arrive they must not reach that subscriber a second time."""
    hub = Hub(Metrics())
    behind: list[bytes] = []
    ahead: list[bytes] = []
    for client_id, inbox in (("behind", behind), ("ahead", ahead)):
        hub.add_pending("c", subscriber(client_id, inbox))
        hub.activate("c", client_id)
    hub.broadcast_publication("c", Publication(b"1", offset=1))
    hub.deliver_after("c", "ahead", 3)  # its subscribe reply carried offsets 2 and 3
    for offset in (2, 3, 4, 5):
        hub.broadcast_publication("c", Publication(str(offset).encode(), offset=offset))
    offsets = [json.loads(m)["push"]["pub"]["offset"] for m in ahead]
    assert offsets == [1, 4, 5]
    assert [json.loads(m)["push"]["pub"]["offset"] for m in behind] == [1, 2, 3, 4, 5]


def test_subscriber_in_step_with_the_node_costs_nothing_extra() -> None:
    hub = Hub(Metrics())
    inbox: list[bytes] = []
    hub.add_pending("c", subscriber("a", inbox))
    hub.activate("c", "a")
    hub.broadcast_publication("c", Publication(b"1", offset=7))
    hub.deliver_after("c", "a", 7)
    assert hub._ahead == {}
    hub.broadcast_publication("c", Publication(b"2", offset=8))
    assert len(inbox) == 2


def delta_subscriber(client_id: str, inbox: list[bytes], publish: bool = True) -> Subscriber:
    return Subscriber(client_id, inbox.append, False, delta=True, delta_publish=publish)


def test_delta_subscribers_get_full_text_first_then_shared_deltas() -> None:
    from centrifuge.fossil import apply_delta

    hub = Hub(Metrics())
    plain: list[bytes] = []
    first: list[bytes] = []
    second: list[bytes] = []
    hub.add_pending("c", subscriber("plain", plain))
    hub.add_pending("c", delta_subscriber("first", first))
    hub.activate("c", "plain")
    hub.activate("c", "first")
    payloads = [orjson_doc(n) for n in range(4)]
    hub.broadcast_publication("c", Publication(payloads[0], offset=1))
    hub.add_pending("c", delta_subscriber("second", second))
    hub.activate("c", "second")
    for offset, data in enumerate(payloads[1:], start=2):
        hub.broadcast_publication("c", Publication(data, offset=offset))

    assert [json.loads(m)["push"]["pub"]["data"] for m in plain] == [
        json.loads(p) for p in payloads
    ]
    for inbox, expected in ((first, payloads), (second, payloads[1:])):
        held = b""
        flags = []
        for message in inbox:
            pub = json.loads(message)["push"]["pub"]
            flags.append(pub.get("delta", False))
            raw = pub["data"].encode()
            held = bytes(apply_delta(held, raw)) if pub.get("delta") else raw
            assert held == expected[len(flags) - 1]
        assert flags == [False] + [True] * (len(expected) - 1)
    # one delta, encoded once, shared by both delta subscribers
    assert first[-1] is second[-1]


def test_delta_negotiated_without_delta_publish_gets_full_strings() -> None:
    hub = Hub(Metrics())
    inbox: list[bytes] = []
    hub.add_pending("c", delta_subscriber("a", inbox, publish=False))
    hub.activate("c", "a")
    for n in range(3):
        hub.broadcast_publication("c", Publication(orjson_doc(n), offset=n + 1))
    pubs = [json.loads(m)["push"]["pub"] for m in inbox]
    assert all("delta" not in p and isinstance(p["data"], str) for p in pubs)


def test_last_delta_subscriber_leaving_drops_the_channel_state() -> None:
    hub = Hub(Metrics())
    hub.add_pending("c", delta_subscriber("a", []))
    hub.activate("c", "a")
    hub.broadcast_publication("c", Publication(b'{"n":1}', offset=1))
    assert hub._delta_prev
    hub.remove("c", "a")
    assert hub._delta_prev == {} and hub._special == {}


def orjson_doc(n: int) -> bytes:
    return json.dumps(
        {"round": n, "scores": [i * 7 for i in range(60)]}, separators=(",", ":")
    ).encode()


def test_guarded_subscribers_take_json_and_are_refused_the_rest() -> None:
    """JSON connections in a binary namespace: JSON data as it is goes the plain way (one
    shared message), JSON over lines compacted, anything else refuses them (the
    connection closes) while a Protobuf subscriber receives every publication."""
    metrics = Metrics()
    hub = Hub(metrics)
    refused: list[str] = []
    inboxes: dict[str, list[bytes]] = {"a": [], "b": [], "pb": []}
    for name in ("a", "b"):
        refuse = (lambda n: lambda: refused.append(n))(name)
        hub.add_pending("c", Subscriber(name, inboxes[name].append, False, refuse=refuse))
        hub.activate("c", name)
    hub.broadcast_publication("c", Publication(b'{"n":1}', offset=1))
    assert inboxes["a"][0] is inboxes["b"][0]
    hub.add_pending("c", Subscriber("pb", inboxes["pb"].append, False, binary=True))
    hub.activate("c", "pb")
    hub.broadcast_publication("c", Publication(b'{\n"n": 2}', offset=2))
    assert json.loads(inboxes["a"][1])["push"]["pub"] == {"data": {"n": 2}, "offset": 2}
    assert inboxes["a"][1] is inboxes["b"][1] and b"\n" not in inboxes["a"][1]
    hub.broadcast_publication("c", Publication(b"\xffboom", offset=3))
    assert refused == ["a", "b"] and len(inboxes["a"]) == 2
    assert b"\xffboom" in inboxes["pb"][-1] and len(inboxes["pb"]) == 2
    assert metrics.deliveries == 2 + 3 + 1
