"""Live traffic through a Service, checked message by message.

Many centrifuge-python clients (the official SDK) connect to a Service's ClusterIP and
subscribe to history channels; a publisher sends through the server HTTP API at a steady
rate and keeps every publication the server acknowledged (with its offset). Whatever
happens to the pods meanwhile, :meth:`Traffic.verify` then checks the promise:

* every acknowledged publication reached every subscriber of its channel, live or
  recovered after a reconnect;
* per subscriber and channel the delivered offsets are contiguous and in order, with no
  duplicate handed to the application, and every payload is one that was acknowledged;
* no subscriber was told ``recovered: false`` (the history window is sized not to trim).

It also measures what a user feels: reconnects per client, the longest time a client
was without a connection, and how long after the fault every client was connected
again. :class:`Report` is what the suites write as JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import jwt
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

NAMESPACE = "rooms"


def namespace_options(history_size: int = 5000) -> dict[str, Any]:
    """The channel namespace the traffic uses: history and recovery on every subscription."""
    return {
        "name": NAMESPACE,
        "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True,
        "history_size": history_size,
        "history_ttl": "1800s",
        "force_recovery": True,
        "force_positioning": True,
    }


@dataclass
class ClientLog(ClientEventHandler):
    """When one client lost and regained its connection, and why."""

    connected_at: list[float] = field(default_factory=list)
    lost_at: list[tuple[float, int]] = field(default_factory=list)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connected_at.append(time.monotonic())

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        # The first "connecting" is the initial connect; later ones are transport losses.
        if self.connected_at:
            self.lost_at.append((time.monotonic(), ctx.code))

    @property
    def reconnects(self) -> int:
        return max(0, len(self.connected_at) - 1)

    def longest_gap(self) -> float:
        """The longest time without a connection after the first connect."""
        gaps = []
        for lost, _ in self.lost_at:
            after = [t for t in self.connected_at if t >= lost]
            gaps.append((after[0] if after else time.monotonic()) - lost)
        return max(gaps, default=0.0)

    def connected(self) -> bool:
        return bool(self.connected_at) and (
            not self.lost_at or self.connected_at[-1] >= self.lost_at[-1][0]
        )


@dataclass
class SubLog(SubscriptionEventHandler):
    """What one subscription handed to the application, in order."""

    channel: str
    deliveries: list[tuple[int, Any]] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)
    subscribed_at: list[int] = field(default_factory=list)
    """How many deliveries preceded each (re)subscribe."""
    unsubscribed: list[int] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.deliveries.append((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)
        self.subscribed_at.append(len(self.deliveries))

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.code)


@dataclass
class Report:
    """Measured figures of one run, compared run to run through the JSON report."""

    clients: int = 0
    subscriptions: int = 0
    acknowledged: int = 0
    publish_failures: int = 0
    deliveries_checked: int = 0
    lost: int = 0
    reconnects_total: int = 0
    reconnects_per_client_max: int = 0
    reconnects_per_client_mean: float = 0.0
    clients_reconnected: int = 0
    longest_gap_seconds: float = 0.0
    median_gap_seconds: float = 0.0
    recovered_resubscribes: int = 0
    unrecovered_resubscribes: int = 0
    disconnect_codes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def connection_token(secret: str, user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 7200}, secret, algorithm="HS256")


class Publisher:
    """Publishes through the server HTTP API and keeps what was acknowledged."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.acked: dict[str, dict[int, Any]] = defaultdict(dict)
        self.failures = 0
        self.errors: list[str] = []

    def publish(self, channel: str, data: Any) -> bool:
        body = json.dumps({"channel": channel, "data": data}).encode()
        request = urllib.request.Request(
            f"{self.api_url}/api/publish",
            data=body,
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                reply = json.loads(response.read())
        except (OSError, urllib.error.URLError, ValueError) as error:
            self.failures += 1
            self.errors.append(repr(error)[:200])
            return False
        result = reply.get("result") or {}
        if "error" in reply or "offset" not in result:
            self.failures += 1
            self.errors.append(json.dumps(reply)[:200])
            return False
        self.acked[channel][int(result["offset"])] = data
        return True

    @property
    def acknowledged(self) -> int:
        return sum(len(v) for v in self.acked.values())


class Traffic:
    """Clients subscribed through the Service, and a steady publisher."""

    def __init__(
        self,
        ws_url: str,
        api_url: str,
        *,
        secret: str,
        api_key: str,
        clients: int = 500,
        channels: int = 20,
        per_client: int = 2,
    ) -> None:
        self.ws_url = ws_url
        self.secret = secret
        self.channels = [f"{NAMESPACE}:{n}" for n in range(channels)]
        self.per_client = per_client
        self.publisher = Publisher(api_url, api_key)
        self.client_logs = [ClientLog() for _ in range(clients)]
        self.clients = [
            Client(
                ws_url,
                token=connection_token(secret, f"user{i}"),
                events=self.client_logs[i],
                max_reconnect_delay=2.0,
            )
            for i in range(clients)
        ]
        self.sub_logs: list[SubLog] = []
        self._stop = asyncio.Event()
        self._publishing: asyncio.Task[None] | None = None
        self._seq = 0

    async def start(self, batch: int = 50, timeout: float = 120) -> None:
        """Connect every client and subscribe it; returns once all are subscribed."""
        for first in range(0, len(self.clients), batch):
            group = self.clients[first : first + batch]
            await asyncio.wait_for(asyncio.gather(*(c.connect() for c in group)), timeout)
        subscriptions = []
        for i, client in enumerate(self.clients):
            for k in range(self.per_client):
                channel = self.channels[(i + k * 7) % len(self.channels)]
                log = SubLog(channel)
                self.sub_logs.append(log)
                subscriptions.append(client.new_subscription(channel, events=log))
        for first in range(0, len(subscriptions), batch * 2):
            group = subscriptions[first : first + batch * 2]
            await asyncio.wait_for(asyncio.gather(*(s.subscribe() for s in group)), timeout)
            await asyncio.wait_for(asyncio.gather(*(s.ready(timeout) for s in group)), timeout)

    def start_publishing(self, per_second: float = 20.0) -> None:
        """Publish round-robin over the channels at a steady rate until stopped."""

        async def loop() -> None:
            interval = 1.0 / per_second
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._seq += 1
                channel = self.channels[self._seq % len(self.channels)]
                data = {"seq": self._seq, "channel": channel, "t": time.time()}
                await asyncio.to_thread(self.publisher.publish, channel, data)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        self._publishing = asyncio.create_task(loop())

    async def stop_publishing(self) -> None:
        self._stop.set()
        if self._publishing is not None:
            await self._publishing

    def all_connected(self) -> bool:
        return all(log.connected() for log in self.client_logs)

    def missing(self) -> int:
        """Acknowledged publications some subscriber has not been handed yet."""
        count = 0
        for log in self.sub_logs:
            delivered = {offset for offset, _ in log.deliveries}
            first = self._first_offset(log)
            count += sum(
                1 for o in self.publisher.acked[log.channel] if o >= first and o not in delivered
            )
        return count

    def _first_offset(self, log: SubLog) -> int:
        """The first offset this subscription covers: the one after its first position."""
        if not log.subscribed or log.subscribed[0].stream_position is None:
            return 0
        return int(log.subscribed[0].stream_position.offset) + 1

    async def settle(self, timeout: float = 60) -> None:
        """Wait until every client is connected and every subscriber has caught up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_connected() and self.missing() == 0:
                return
            await asyncio.sleep(0.5)

    def verify(self) -> Report:
        """Check every subscription against what was acknowledged; return the figures.

        Raises AssertionError naming the first subscription that broke the promise.
        """
        report = self._figures()
        for log in self.sub_logs:
            acked = self.publisher.acked[log.channel]
            first = self._first_offset(log)
            offsets = [offset for offset, _ in log.deliveries]
            assert len(offsets) == len(set(offsets)), (
                f"duplicate delivered on {log.channel}: {_duplicates(log)}"
            )
            assert offsets == sorted(offsets), f"out of order on {log.channel}"
            for offset, data in log.deliveries:
                assert acked.get(offset, data) == data, (
                    f"{log.channel}@{offset} is not what was acked"
                )
            if offsets:
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (
                    f"gap on {log.channel}: {_gaps(offsets)}"
                )
            wanted = {o for o in acked if o >= first}
            lost = wanted - set(offsets)
            assert not lost, f"{len(lost)} acknowledged publications lost on {log.channel}"
            assert all(ctx.recovered or not ctx.was_recovering for ctx in log.subscribed), (
                f"recovered: false on {log.channel}"
            )
        return report

    def _figures(self) -> Report:
        reconnects = [log.reconnects for log in self.client_logs]
        gaps = [log.longest_gap() for log in self.client_logs if log.lost_at]
        codes: dict[str, int] = defaultdict(int)
        for log in self.client_logs:
            for _, code in log.lost_at:
                codes[str(code)] += 1
        resubscribes = [ctx for log in self.sub_logs for ctx in log.subscribed[1:]]
        lost = self.missing()
        return Report(
            clients=len(self.clients),
            subscriptions=len(self.sub_logs),
            acknowledged=self.publisher.acknowledged,
            publish_failures=self.publisher.failures,
            deliveries_checked=sum(len(log.deliveries) for log in self.sub_logs),
            lost=lost,
            reconnects_total=sum(reconnects),
            reconnects_per_client_max=max(reconnects, default=0),
            reconnects_per_client_mean=round(statistics.fmean(reconnects), 3)
            if reconnects
            else 0.0,
            clients_reconnected=sum(1 for r in reconnects if r),
            longest_gap_seconds=round(max(gaps, default=0.0), 3),
            median_gap_seconds=round(statistics.median(gaps), 3) if gaps else 0.0,
            recovered_resubscribes=sum(1 for ctx in resubscribes if ctx.recovered),
            unrecovered_resubscribes=sum(
                1 for ctx in resubscribes if ctx.was_recovering and not ctx.recovered
            ),
            disconnect_codes=dict(codes),
        )

    async def close(self, batch: int = 100) -> None:
        await self.stop_publishing()
        for first in range(0, len(self.clients), batch):
            group = self.clients[first : first + batch]
            await asyncio.gather(*(c.disconnect() for c in group), return_exceptions=True)


def _duplicates(log: SubLog) -> str:
    """Where the first duplicate sits among the deliveries and the (re)subscribes."""
    seen: dict[int, int] = {}
    for index, (offset, _) in enumerate(log.deliveries):
        if offset in seen:
            window = [o for o, _ in log.deliveries[max(0, seen[offset] - 3) : index + 3]]
            subscribes = [
                (
                    at,
                    ctx.was_recovering,
                    ctx.recovered,
                    getattr(ctx.stream_position, "offset", None),
                )
                for at, ctx in zip(log.subscribed_at, log.subscribed, strict=False)
            ]
            return (
                f"offset {offset} at deliveries {seen[offset]} and {index}; around: {window};"
                f" subscribes (after n deliveries, was_recovering, recovered, offset): {subscribes}"
            )
        seen[offset] = index
    return "none"


def _gaps(offsets: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in itertools.pairwise(offsets) if b != a + 1][:5]
