"""Churn against a real ``roomcast serve`` for a while, sampling what a leak would grow.

Workers connect, subscribe (presence, join/leave, history), publish, read history and
presence, recover after a reconnect, send bad input now and then, and leave: politely,
abruptly (an RST) or by being cut for a protocol error. A backend publishes and
broadcasts through the server API meanwhile. Every ``interval`` the server's RSS and
open file descriptors are read from /proc, and its asyncio tasks, connections,
subscriptions, channels and presence entries from /metrics (presence from Redis with
the Redis engine).

The run has a warm-up, a quiet moment whose sample is the baseline, the churn, and a
final quiet moment: after it nothing may be left of the churn (no connection,
subscription, channel or presence entry), fds and tasks must be back at the baseline
and RSS within 5 % of it.

    python -m tests.server.soak --engine memory --minutes 60 --out reports/soak

writes ``<engine>-<time>.json`` and ``<engine>-<time>.png`` and exits 1 when something
did not return to the baseline (or the churn was too small to tell).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.processes import API_KEY, PROTOCOL_CONFIG, ServerProcess, start_server
from tests.support.tokens import token

CHANNELS = [f"room{i}" for i in range(20)]
RSS_TOLERANCE = 0.05
#: An idle server's RSS moves by a few hundred KiB on its own (allocator, caches).
RSS_SLACK_KIB = 1024


@dataclass
class Sample:
    seconds: float
    phase: str
    rss_kib: int
    fds: int
    tasks: float
    connections: float
    subscriptions: float
    channels: float
    presence: float


@dataclass
class Counts:
    cycles: int = 0
    publications: int = 0
    recoveries: int = 0
    bad_inputs: int = 0
    aborts: int = 0
    errors: int = 0


class Target:
    """The server under test and how to read its state."""

    def __init__(self, server: ServerProcess, redis_url: str | None) -> None:
        self.server = server
        self.redis_url = redis_url
        self.started = time.monotonic()

    async def sample(self, session: aiohttp.ClientSession, phase: str) -> Sample:
        rss, fds = await asyncio.to_thread(process_usage, self.server.process.pid)
        async with session.get(f"{self.server.http_url}/metrics") as response:
            metrics = parse_metrics(await response.text())
        presence = metrics.get("roomcast_engine_memory_presence_entries", 0.0)
        if self.redis_url is not None:
            presence = await asyncio.to_thread(redis_presence_entries, self.redis_url)
        return Sample(
            seconds=round(time.monotonic() - self.started, 2),
            phase=phase,
            rss_kib=rss,
            fds=fds,
            tasks=metrics.get("roomcast_tasks", 0.0),
            connections=metrics.get("roomcast_connections", 0.0),
            subscriptions=metrics.get("roomcast_subscriptions", 0.0),
            channels=metrics.get("roomcast_channels", 0.0),
            presence=presence,
        )


def process_usage(pid: int) -> tuple[int, int]:
    """RSS in KiB and open file descriptors of a process, as the kernel counts them."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def parse_metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def redis_presence_entries(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return float(sum(client.hlen(key) for key in client.scan_iter("*presence.data*")))
    finally:
        client.close()


async def churn(
    session: aiohttp.ClientSession, target: Target, worker: int, stop: asyncio.Event, counts: Counts
) -> None:
    """One client's life, over and over, until ``stop``."""
    rng = random.Random(worker)
    position: dict[str, Any] | None = None
    while not stop.is_set():
        counts.cycles += 1
        try:
            position = await one_connection(session, target, rng, position, counts)
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            counts.errors += 1
            await asyncio.sleep(0.1)


async def one_connection(
    session: aiohttp.ClientSession,
    target: Target,
    rng: random.Random,
    position: dict[str, Any] | None,
    counts: Counts,
) -> dict[str, Any] | None:
    """Connect, do a few things, leave one way or another; the position to recover next."""
    claims: dict[str, Any] = {"channels": [rng.choice(CHANNELS)]} if rng.random() < 0.3 else {}
    async with session.ws_connect(target.server.ws_url, max_msg_size=0) as ws:
        await ws.send_json(
            {"id": 1, "connect": {"token": token(f"u{rng.randrange(50)}", **claims)}}
        )
        await ws.receive(timeout=5)
        channel = rng.choice(CHANNELS)
        subscribe: dict[str, Any] = {"channel": channel}
        if position is not None and rng.random() < 0.5:
            subscribe.update(position, recover=True)
            channel = position["channel"]
            subscribe["channel"] = channel
            counts.recoveries += 1
        await ws.send_json({"id": 2, "subscribe": subscribe})
        reply = await reply_to(ws, 2)
        result = reply.get("subscribe", {})
        next_position = (
            {
                "channel": channel,
                "offset": result.get("offset", 0),
                "epoch": result.get("epoch", ""),
            }
            if "epoch" in result
            else None
        )
        for n in range(rng.randrange(1, 4)):
            await ws.send_json({"id": 10 + n, "publish": {"channel": channel, "data": {"n": n}}})
            counts.publications += 1
        await ws.send_json({"id": 20, "history": {"channel": channel, "limit": 5}})
        await ws.send_json({"id": 21, "presence": {"channel": channel}})
        await reply_to(ws, 21)
        roll = rng.random()
        if roll < 0.1:  # an error reply, then on as before
            counts.bad_inputs += 1
            await ws.send_json(
                {"id": 30, "history": {"channel": channel, "since": {"offset": "²"}}}
            )
            await reply_to(ws, 30)
        elif roll < 0.15:  # cut for malformed input
            counts.bad_inputs += 1
            await ws.send_str("{not json")
            await ws.receive(timeout=5)
            return next_position
        elif roll < 0.2:  # cut for a message over the limit
            counts.bad_inputs += 1
            await ws.send_str(" " * 70_000)
            await ws.receive(timeout=5)
            return next_position
        await asyncio.sleep(rng.uniform(0, 0.2))
        if rng.random() < 0.3:
            counts.aborts += 1
            transport = ws._response.connection.transport if ws._response.connection else None
            if transport is not None:
                transport.abort()  # no close frame: the server finds out from the socket
        return next_position


async def reply_to(ws: aiohttp.ClientWebSocketResponse, command_id: int) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"closed: {ws.close_code}")
        for line in msg.data.split("\n"):
            message = json.loads(line)
            if message.get("id") == command_id:
                return dict(message)


async def backend(session: aiohttp.ClientSession, target: Target, stop: asyncio.Event) -> None:
    """Publishes and broadcasts through the server API, as an application backend does."""
    rng = random.Random(0)
    url = f"{target.server.http_url}/api"
    headers = {"X-API-Key": API_KEY}
    while not stop.is_set():
        body: dict[str, Any]
        if rng.random() < 0.8:
            method, body = "publish", {"channel": rng.choice(CHANNELS), "data": {"api": True}}
        else:
            method, body = "broadcast", {"channels": rng.sample(CHANNELS, 5), "data": {"b": 1}}
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(f"{url}/{method}", json=body, headers=headers) as response:
                await response.read()
        await asyncio.sleep(0.05)


async def load(
    session: aiohttp.ClientSession, target: Target, seconds: float, workers: int, counts: Counts
) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(churn(session, target, w, stop, counts)) for w in range(workers)]
    tasks.append(asyncio.ensure_future(backend(session, target, stop)))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)


async def quiet(session: aiohttp.ClientSession, target: Target, timeout: float = 30) -> Sample:
    """Wait until the churn has left the server; the sample then."""
    deadline = time.monotonic() + timeout
    previous: Sample | None = None
    while True:
        sample = await target.sample(session, "quiet")
        settled = previous is not None and sample.tasks == previous.tasks
        if settled and not (sample.connections or sample.subscriptions or sample.presence):
            return sample
        if time.monotonic() > deadline:
            return sample
        previous = sample
        await asyncio.sleep(0.5)


async def soak(target: Target, seconds: float, workers: int, interval: float) -> dict[str, Any]:
    counts = Counts()
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as session:

        async def sampler(phase: str, stop: asyncio.Event) -> None:
            while not stop.is_set():
                samples.append(await target.sample(session, phase))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

        async def phase(name: str, duration: float) -> None:
            stop = asyncio.Event()
            sampling = asyncio.ensure_future(sampler(name, stop))
            await load(session, target, duration, workers, counts)
            stop.set()
            await sampling

        warmup = max(10.0, seconds * 0.2)
        await phase("warm-up", warmup)
        baseline = await quiet(session, target)
        samples.append(baseline)
        await phase("churn", max(0.0, seconds - warmup))
        final = await quiet(session, target)
        samples.append(final)
    return {
        "samples": [asdict(s) for s in samples],
        "counts": asdict(counts),
        "baseline": asdict(baseline),
        "final": asdict(final),
        "problems": problems(baseline, final) + too_little(counts),
    }


def problems(baseline: Sample, final: Sample) -> list[str]:
    """What did not return to the baseline once the churn was over."""
    found = [
        f"{name} {getattr(final, name)} left"
        for name in ("connections", "subscriptions", "channels", "presence")
        if getattr(final, name)
    ]
    if final.fds > baseline.fds:
        found.append(f"fds {baseline.fds} -> {final.fds}")
    if final.tasks > baseline.tasks:
        found.append(f"tasks {baseline.tasks} -> {final.tasks}")
    if final.rss_kib > baseline.rss_kib * (1 + RSS_TOLERANCE) + RSS_SLACK_KIB:
        found.append(f"RSS {baseline.rss_kib} KiB -> {final.rss_kib} KiB")
    return found


def too_little(counts: Counts) -> list[str]:
    """A churn too small to prove anything: a soak that could not reach its server."""
    found = [] if counts.cycles > 100 else [f"only {counts.cycles} connections"]
    found += [
        f"no {name.replace('_', ' ')}"
        for name in ("bad_inputs", "aborts", "recoveries")
        if not getattr(counts, name)
    ]
    return found


@contextlib.contextmanager
def served(engine: str) -> Iterator[Target]:
    """A server process on the memory engine, or on Redis with a redis-server of its own."""
    with contextlib.ExitStack() as stack:
        config: dict[str, Any] = dict(PROTOCOL_CONFIG)
        redis_url = None
        if engine == "redis":
            from tests.server.engine.redis_servers import RedisServer

            redis_server = stack.enter_context(RedisServer())
            redis_url = redis_server.url
            config["engine"] = {"type": "redis", "redis": {"address": [redis_url]}}
        server = start_server(config)
        stack.callback(server.stop)
        yield Target(server, redis_url)


def chart(result: dict[str, Any], path: Path) -> None:
    """A PNG of the samples over time."""
    import matplotlib  # a second to import: only when charting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    minutes = [s["seconds"] / 60 for s in samples]
    panels = [
        ("RSS (MiB)", [("rss", [s["rss_kib"] / 1024 for s in samples])]),
        ("open fds / asyncio tasks", [("fds", [s["fds"] for s in samples]),
                                      ("tasks", [s["tasks"] for s in samples])]),
        ("connections / subscriptions", [("connections", [s["connections"] for s in samples]),
                                         ("subscriptions", [s["subscriptions"] for s in samples])]),
        ("channels / presence entries", [("channels", [s["channels"] for s in samples]),
                                         ("presence", [s["presence"] for s in samples])]),
    ]  # fmt: skip
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 10), sharex=True)
    for axis, (title, series) in zip(axes, panels, strict=True):
        for label, values in series:
            axis.plot(minutes, values, label=label, linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.legend(loc="upper right", fontsize=8)
        axis.axvline(result["baseline"]["seconds"] / 60, color="grey", linestyle=":")
    axes[-1].set_xlabel("minutes")
    figure.suptitle(f"roomcast soak, {result['engine']} engine", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["memory", "redis"], default="memory")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=20, help="clients churning at once")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("reports/soak"))
    args = parser.parse_args(argv)
    with served(args.engine) as target:
        result = asyncio.run(soak(target, args.minutes * 60, args.workers, args.interval))
    result["engine"] = args.engine
    result["minutes"] = args.minutes
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = args.out / f"{args.engine}-{stamp}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    chart(result, stem.with_suffix(".png"))
    print(json.dumps({k: result[k] for k in ("counts", "baseline", "final", "problems")}, indent=1))
    print(f"results: {stem}.json, chart: {stem}.png")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
