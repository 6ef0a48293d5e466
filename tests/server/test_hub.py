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
