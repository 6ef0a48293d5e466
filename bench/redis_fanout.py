"""Benchmark the Redis backplane: ingest rate per core, and cross-node fan-out.

1. ingest: a helper process floods Redis with pipelined PUBLISHes of engine frames
   (offsets in order on a few channels), timed as this release publishes them and
   plain as an earlier one does; this process runs the RedisEngine with a counting
   handler and reports messages per CPU-second of the reading process, next to
   redis-py's PubSub reader on the same stream.
2. fanout: three ``roomcast serve`` nodes on one Redis, subscribers spread over them,
   a publisher on node A (server API); deliveries/s and p50/p99 publish-to-receive
   latency, beside the same load on one memory-engine node.

Usage: .venv/bin/python bench/redis_fanout.py [--messages N] [--subscribers N]
       [--rate R] [--seconds S] [--skip-fanout]
Results: bench/results/redis_fanout-<timestamp>.json and a printed table.

``--ingest-only --redis-port P`` measures the ingest alone against a running Redis and
prints it as JSON, with frames as the ``roomcast`` on the path publishes them (timed
if it reads them): ``bench/run.py`` runs it so with the code of ``--server-commit``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import hiredis
import jwt
import redis
import yaml

import roomcast
from roomcast.config import RedisSettings
from roomcast.engine import ClientInfo, Publication, redis_codec
from roomcast.engine.redis import RedisEngine
from roomcast.engine.redis_codec import encode_body
from roomcast.engine.redis_shard import RedisKeys

#: whether the roomcast measured reads (and so, in a cluster of its release, receives)
#: timed frames; a release before them reads only plain ones
READS_TIMED = hasattr(redis_codec, "decode_timed_message")

BENCH_DIR = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789abcdef0123456789"
API_KEY = "bench-api-key"
ROOMCAST = str(Path(sys.executable).with_name("roomcast"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (tests/deps.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir),
         "--client-output-buffer-limit", "pubsub", "0", "0", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            if redis.Redis(port=port).ping():
                return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


# -- ingest ---------------------------------------------------------------------------
def _flood(
    port: int, prefix: str, channels: int, messages: int, timed: bool, core: int | None
) -> None:
    """Publish ``messages`` frames spread over channels, offsets in order, pipelined;
    ``timed`` frames carry the publisher's time, as this release writes them. ``core``
    keeps the publisher off the reader's core."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    keys = RedisKeys(prefix)
    body = encode_body(Publication(b'{"text":"hello world","n":12345}', info=ClientInfo("u", "c")))
    sock = socket.create_connection(("127.0.0.1", port))
    reader = hiredis.Reader()
    offsets = [0] * channels
    batch = 1000
    sent = 0
    while sent < messages:
        parts = []
        prefix = redis_codec.timed_prefix(time.time()) if timed else b""  # one read per batch
        for i in range(min(batch, messages - sent)):
            ch = (sent + i) % channels
            offsets[ch] += 1
            frame = b"%sp%d:EPOCH:%s" % (prefix, offsets[ch], body)
            parts.append(hiredis.pack_command((b"PUBLISH", keys.pubsub(f"c{ch}"), frame)))
        sock.sendall(b"".join(parts))
        got = 0
        while got < len(parts):
            reader.feed(sock.recv(1 << 20))
            while reader.gets() is not False:
                got += 1
        sent += len(parts)
    sock.close()


class _Counter:
    uid = "bench"

    def __init__(self) -> None:
        self.n = 0

    def on_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        self.n += 1

    def on_join(self, channel: str, info: ClientInfo) -> None: ...

    def on_leave(self, channel: str, info: ClientInfo) -> None: ...

    def on_control(self, payload: bytes) -> None: ...

    def on_insufficient_state(self, channel: str) -> None: ...

    def on_node_message(self, payload: bytes) -> None: ...


async def _ingest_engine(
    port: int, messages: int, channels: int, timed: bool = True, flood_core: int | None = None
) -> dict[str, float]:
    prefix = "bench"
    settings = RedisSettings(address=[f"redis://127.0.0.1:{port}/0"], prefix=prefix)
    engine = RedisEngine(settings)
    counter = _Counter()
    await engine.start(counter)
    for ch in range(channels):
        await engine.subscribe(f"c{ch}")
    flood = multiprocessing.Process(
        target=_flood, args=(port, prefix, channels, messages, timed, flood_core)
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    flood.start()
    while counter.n < messages:
        await asyncio.sleep(0.005)
        if not flood.is_alive() and counter.n < messages and time.perf_counter() - wall0 > 120:
            break
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    flood.join()
    await engine.close()
    return {
        "messages": counter.n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "per_cpu_second": round(counter.n / cpu) if cpu else 0,
        "us_per_message": round(cpu / max(counter.n, 1) * 1e6, 2),
    }


def _ingest_redis_py(port: int, messages: int, channels: int) -> dict[str, float]:
    client = redis.Redis(port=port)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    keys = RedisKeys("bench")
    pubsub.subscribe(*[keys.pubsub(f"c{ch}") for ch in range(channels)])
    while pubsub.get_message(timeout=0.1) is not None:
        pass
    flood = multiprocessing.Process(
        target=_flood, args=(port, "bench", channels, messages, READS_TIMED, None)
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    flood.start()
    n = 0
    while n < messages:
        if pubsub.get_message(timeout=1.0) is not None:
            n += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    flood.join()
    pubsub.close()
    return {
        "messages": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "per_cpu_second": round(n / cpu) if cpu else 0,
        "us_per_message": round(cpu / max(n, 1) * 1e6, 2),
    }


# -- fan-out --------------------------------------------------------------------------
def _start_node(
    workdir: Path, config: dict[str, Any], name: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "ROOMCAST_HOST": "127.0.0.1",
        "ROOMCAST_PORT": str(port),
        "ROOMCAST_TOKEN_HMAC_SECRET": SECRET,
        "ROOMCAST_API_KEY": API_KEY,
        "ROOMCAST_CONFIG": str(path),
        "ROOMCAST_LOG_LEVEL": "warning",
        "ROOMCAST_NODE_NAME": name,
    }
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen([ROOMCAST, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"node {name} did not become ready")


def _subscriber_process(ports: list[int], count: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_subscribers(ports, count, seconds)))


async def _subscribers(ports: list[int], count: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    ready = 0

    async def one(session: aiohttp.ClientSession, port: int) -> None:
        nonlocal ready
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        async with session.ws_connect(url, protocols=("centrifuge-json",)) as ws:
            await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
            await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": "fan"}}))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.time()
                for line in msg.data.split("\n"):
                    if '"pub"' in line:
                        latencies.append(now - json.loads(line)["push"]["pub"]["data"]["t"])
                    elif '"id":2' in line:
                        ready += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(one(session, ports[i % len(ports)])) for i in range(count)]
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"ready": ready, "latencies": latencies}


def _fanout(
    ports: list[int], api_port: int, subscribers: int, rate: float, seconds: float
) -> dict[str, Any]:
    procs = 2
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_subscriber_process,
            args=(ports, subscribers // procs, seconds + 15, queue),
        )
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    time.sleep(min(12.0, 2 + subscribers / 1000))  # connect and subscribe
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        body = json.dumps({"channel": "fan", "data": {"t": time.time()}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/api/publish", data=body,
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=5):
            sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    n = len(latencies)
    return {
        "subscribers": subscribers,
        "subscribed": sum(r["ready"] for r in results),
        "publications": sent,
        "deliveries": n,
        "expected": sent * subscribers,
        "deliveries_per_s": round(n / seconds),
        "p50_ms": round(latencies[n // 2] * 1000, 2) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--subscribers", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--ingest-only", action="store_true", help="print the ingest as JSON")
    parser.add_argument("--redis-port", type=int, help="with --ingest-only: a running Redis")
    parser.add_argument("--flood-core", type=int, help="with --ingest-only: the publisher's core")
    args = parser.parse_args()
    if args.ingest_only:
        if args.redis_port is None:
            parser.error("--ingest-only needs --redis-port")
        ingest = asyncio.run(
            _ingest_engine(
                args.redis_port, args.messages, args.channels, READS_TIMED, args.flood_core
            )
        )
        frames = "timed" if READS_TIMED else "plain"
        print(json.dumps({**ingest, "frames": frames, "roomcast": roomcast.__path__[0]}))
        return
    workdir = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
    redis_proc, port = start_redis(workdir)
    procs: list[subprocess.Popen[bytes]] = [redis_proc]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    }
    try:
        results["ingest_engine"] = asyncio.run(
            _ingest_engine(port, args.messages, args.channels, READS_TIMED)
        )
        redis.Redis(port=port).flushall()
        results["ingest_engine_plain"] = asyncio.run(
            _ingest_engine(port, args.messages, args.channels, timed=False)
        )
        redis.Redis(port=port).flushall()
        results["ingest_redis_py"] = _ingest_redis_py(
            port, min(args.messages, 100_000), args.channels
        )
        if not args.skip_fanout:
            channel = {"without_namespace": {"allow_subscribe_for_client": True}}
            single_cfg = {"channel": channel}
            proc, single = _start_node(workdir, single_cfg, "single")
            procs.append(proc)
            results["fanout_single_node"] = _fanout(
                [single], single, args.subscribers, args.rate, args.seconds
            )
            proc.kill()
            redis_cfg = {
                "channel": channel,
                "engine": {"type": "redis", "redis": {"address": [f"redis://127.0.0.1:{port}/0"]}},
            }
            ports = []
            for i in range(3):
                proc, node_port = _start_node(workdir, redis_cfg, f"node{i}")
                procs.append(proc)
                ports.append(node_port)
            results["fanout_three_nodes"] = _fanout(
                ports, ports[0], args.subscribers, args.rate, args.seconds
            )
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"redis_fanout-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"{'measurement':<22} {'value':>12}  detail")
    for name in ("ingest_engine", "ingest_engine_plain", "ingest_redis_py"):
        r = results[name]
        print(
            f"{name:<22} {r['per_cpu_second']:>10,}/s"
            f"  {r['us_per_message']} us/msg, {r['messages']:,} msgs"
        )
    for name in ("fanout_single_node", "fanout_three_nodes"):
        if name in results:
            r = results[name]
            print(
                f"{name:<22} {r['deliveries_per_s']:>10,}/s"
                f"  p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
                f" {r['deliveries']:,}/{r['expected']:,} delivered, {r['subscribed']} subscribed"
            )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
