"""The shared ping wheel: pings every slot once per interval; missing pongs disconnect."""

from __future__ import annotations

from roomcast.heartbeat import Heartbeat


class FakeClient:
    """Stands in for a connection: the wheel only calls these two methods."""

    def __init__(self) -> None:
        self.heartbeat_slot = -1
        self.ping_pending = False
        self.pings = 0
        self.disconnected: int | None = None

    def send_ping(self) -> None:
        self.pings += 1
        self.ping_pending = True

    def disconnect(self, code: int, reason: str | None = None) -> None:
        self.disconnected = code


def test_each_client_pinged_once_per_turn_and_pong_checked() -> None:
    wheel = Heartbeat(ping_interval=10, pong_timeout=4)
    clients = [FakeClient() for _ in range(50)]
    for c in clients:
        wheel.add(c)  # type: ignore[arg-type]
    ticks_per_turn = round(10 / wheel.tick_seconds)
    now = 0.0
    for _ in range(ticks_per_turn):
        now += wheel.tick_seconds
        wheel.tick(now)
        for c in clients[:25]:
            c.ping_pending = False  # these answer at once
    assert all(c.pings == 1 for c in clients)
    for _ in range(ticks_per_turn):
        now += wheel.tick_seconds
        wheel.tick(now)
        for c in clients[:25]:
            c.ping_pending = False
    assert all(c.disconnected is None for c in clients[:25])
    assert all(c.disconnected == 3012 for c in clients[25:])


def test_removed_clients_are_not_pinged() -> None:
    wheel = Heartbeat(ping_interval=2, pong_timeout=1)
    c = FakeClient()
    wheel.add(c)  # type: ignore[arg-type]
    wheel.remove(c)  # type: ignore[arg-type]
    for _ in range(10):
        wheel.tick()
    assert c.pings == 0


def test_stale_sockets_closed_after_their_deadline_only() -> None:
    wheel = Heartbeat(ping_interval=10, pong_timeout=4)
    early, late, connected = FakeClient(), FakeClient(), FakeClient()
    wheel.watch_stale(early, 10.0)  # type: ignore[arg-type]
    wheel.watch_stale(connected, 10.5)  # type: ignore[arg-type]
    wheel.watch_stale(late, 20.0)  # type: ignore[arg-type]
    wheel.unwatch_stale(connected)  # type: ignore[arg-type]
    wheel.tick(now=9.0)
    assert early.disconnected is None
    wheel.tick(now=11.0)
    assert early.disconnected == 3502 and late.disconnected is None
    assert connected.disconnected is None
    wheel.tick(now=21.0)
    assert late.disconnected == 3502


def test_late_ticks_in_a_burst_do_not_shorten_the_pong_timeout() -> None:
    """After a loop stall the missed ticks may run back to back; pongs are still due in time."""
    wheel = Heartbeat(ping_interval=10, pong_timeout=4)
    client = FakeClient()
    wheel.add(client)  # type: ignore[arg-type]
    now = 100.0
    ticks_per_turn = round(10 / wheel.tick_seconds)
    for _ in range(ticks_per_turn):  # a burst: a whole turn within 10 ms
        now += 0.001
        wheel.tick(now)
    assert client.pings == 1 and client.disconnected is None
    wheel.tick(now + 3.9)
    assert client.disconnected is None
    wheel.tick(now + 4.0)
    assert client.disconnected == 3012
