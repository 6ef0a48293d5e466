"""Benchmark the Roomcast server on this machine and compare it with its targets.

The server runs pinned to core 0 and the C load generator (bench/loadgen) to core 1,
so the numbers say what one core of Python does. Server cost is read from the kernel
(/proc/<pid>/stat for CPU time, /proc/<pid>/status for RSS) around each measured
phase, never from the server itself. Every scenario starts its own server on a free
port and kills it afterwards, also when something fails.

Usage: .venv/bin/python bench/run.py [--quick] [--scenario NAME ...]
Results: bench/results/<timestamp>.json and bench/results/latest.json, plus a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml

from health import wait_healthy  # bench/ is on sys.path when run as a script

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN_DIR = BENCH_DIR / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen"
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent

SERVER_CORE = 0
LOAD_CORE = 1
SECRET = "roomcast-bench-secret-0123456789abcdef"
API_KEY = "bench-api-key"
MESSAGE_BYTES = 100  # publication data size, as in the issue
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

#: Only what the scenarios need. The command rate limit is lifted because the single
#: publisher connection sends far more than the default 100 commands/s; everything
#: else (queue size, pings, compression off, logging) is the default a user gets.
SERVER_CONFIG: dict[str, Any] = {
    "channel": {
        "without_namespace": {
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
        }
    },
    "client": {"command_rate_limit": {"rate_per_second": 1_000_000, "burst": 1_000_000}},
}


class BenchError(Exception):
    """A scenario could not run to the end (process died, timed out, bad output)."""


# /proc readings ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_precise(pid: int) -> float | None:
    """The same CPU time in nanoseconds: the sum of every live thread's schedstat.

    /proc/<pid>/stat counts clock ticks (10 ms); short phases need better. Threads
    that exited are missing here, so the runner keeps both and compares them.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def proc_status(pid: int) -> dict[str, int]:
    """Numeric fields of /proc/<pid>/status (VmRSS in KiB, context switches)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def core_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) time per CPU core, from /proc/stat."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values]
            busy[int(name[3:])] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
    return busy


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


@dataclass
class Sample:
    """Server CPU, memory and machine state at one instant."""

    cpu_s: float
    cpu_precise_s: float | None
    rss_kib: int
    involuntary_switches: int
    cores_busy_s: dict[int, float]
    at: float

    @classmethod
    def take(cls, pid: int) -> Sample:
        status = proc_status(pid)
        return cls(
            cpu_s=cpu_seconds(pid),
            cpu_precise_s=cpu_seconds_precise(pid),
            rss_kib=status.get("VmRSS", 0),
            involuntary_switches=status.get("nonvoluntary_ctxt_switches", 0),
            cores_busy_s=core_busy_seconds(),
            at=time.monotonic(),
        )


def contention_row(name: str, measured: dict[str, Any]) -> Row:
    """How much of the server's core other processes took: latency is only as good as this."""
    busy = measured["server_core_busy_by_others_s"] / max(measured["wall_s"], 1e-9) * 100
    return Row(name, "server core used by other processes", busy, "%")


def window(before: Sample, after: Sample) -> dict[str, Any]:
    """What happened between two samples; 'others' is CPU stolen on the server's core."""
    wall = after.at - before.at
    ticks_cpu = after.cpu_s - before.cpu_s
    server_cpu = ticks_cpu
    if before.cpu_precise_s is not None and after.cpu_precise_s is not None:
        precise = after.cpu_precise_s - before.cpu_precise_s
        # trust the nanosecond sum unless a thread exited in between (then it falls short)
        if abs(precise - ticks_cpu) <= 2.5 / CLK_TCK + 0.05 * ticks_cpu:
            server_cpu = precise
    core = after.cores_busy_s.get(SERVER_CORE, 0.0) - before.cores_busy_s.get(SERVER_CORE, 0.0)
    load_core = after.cores_busy_s.get(LOAD_CORE, 0.0) - before.cores_busy_s.get(LOAD_CORE, 0.0)
    return {
        "wall_s": round(wall, 3),
        "server_cpu_s": round(server_cpu, 6),
        "server_cpu_s_from_stat": round(ticks_cpu, 3),
        "server_core_busy_s": round(core, 3),
        "server_core_busy_by_others_s": round(max(0.0, core - server_cpu), 3),
        "load_core_busy_s": round(load_core, 3),
        "server_involuntary_switches": after.involuntary_switches - before.involuntary_switches,
    }


# Processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> None:
    """Runs in the child before exec: 10,000 sockets need more than the usual 1,024 fds."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65_536), max(hard, 65_536)))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_tokens(path: Path, count: int, prefix: str = "user") -> Path:
    """One connection JWT per line, each for its own user, valid for an hour."""
    exp = int(time.time()) + 3600
    lines = [
        jwt.encode({"sub": f"{prefix}{i}", "exp": exp}, SECRET, algorithm="HS256")
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def build_loadgen() -> Path:
    """Compile the load generator if it is missing or older than its source."""
    source = LOADGEN_DIR / "loadgen.c"
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= source.stat().st_mtime:
        return LOADGEN
    command = ["cc", "-O2", "-Wall", "-Wextra", "-std=gnu11", "-o", str(LOADGEN), str(source)]
    subprocess.run(command, check=True)
    return LOADGEN


class Server:
    """A ``roomcast serve`` pinned to the server core, on a free port, with its own config.

    ``source`` is a directory holding the ``roomcast`` package to run instead of the
    installed one (a snapshot such as ``git archive HEAD server``), so a benchmark is
    not disturbed by edits to the working tree while it runs.
    """

    def __init__(
        self, workdir: Path, source: Path | None = None, engine: dict[str, Any] | None = None
    ) -> None:
        self.port = free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        config_path = workdir / f"config-{self.port}.yaml"
        config = {**SERVER_CONFIG, "engine": engine} if engine else SERVER_CONFIG
        config_path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "ROOMCAST_HOST": "127.0.0.1",
            "ROOMCAST_PORT": str(self.port),
            "ROOMCAST_TOKEN_HMAC_SECRET": SECRET,
            "ROOMCAST_API_KEY": API_KEY,
            "ROOMCAST_CONFIG": str(config_path),
        }
        if source is not None:
            env["PYTHONPATH"] = str(source)
        command = [sys.executable, "-m", "roomcast.cli", "serve"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["taskset", "-c", str(SERVER_CORE), *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=raise_fd_limit,
            )
        self.pid = self.process.pid  # taskset execs the server: same pid
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        problem = wait_healthy(self.process, self.port, 20)
        if problem is not None:
            raise BenchError(f"server {problem}:\n{self.log()}")

    def sample(self) -> Sample:
        if self.process.poll() is not None:
            raise BenchError(f"server died with {self.process.returncode}:\n{self.log()}")
        return Sample.take(self.pid)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3000:]

    def stop(self) -> None:
        """SIGKILL: a graceful drain would take its 30 s window and measures nothing here."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Loadgen:
    """One load generator process pinned to the load core, driven phase by phase."""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        self.stderr_path = workdir / f"loadgen-{time.monotonic_ns()}.err"
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                ["taskset", "-c", str(LOAD_CORE), str(LOADGEN), *args, "--wait"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=raise_fd_limit,
            )
        self._buffer = b""

    def event(self, name: str, timeout_s: float) -> dict[str, Any]:
        """Wait for the next JSON line on stdout, which must be this event."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"loadgen: no {name!r} within {timeout_s:.0f} s")
                if not selector.select(remaining):
                    continue
                chunk = os.read(fd, 65_536)
                if not chunk:
                    err = self.stderr_path.read_text(errors="replace")
                    raise BenchError(f"loadgen exited before {name!r}: {err}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        report: dict[str, Any] = json.loads(line)
        if report.get("event") != name:
            raise BenchError(f"loadgen: expected {name!r}, got {report.get('event')!r}")
        return report

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(text.encode() + b"\n")
            self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.command("quit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Scenarios ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measured value against the issue's target, if any."""

    scenario: str
    metric: str
    value: float
    unit: str
    target: float | None = None  # upper bound
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.ok is None and self.target is not None:
            self.ok = self.value <= self.target


@dataclass
class Context:
    """What a scenario needs: sizes, a scratch directory, and process bookkeeping."""

    quick: bool
    workdir: Path
    source: Path | None = None
    _servers: list[Server] = field(default_factory=list)
    _loadgens: list[Loadgen] = field(default_factory=list)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def server(self, engine: dict[str, Any] | None = None) -> Server:
        server = Server(self.workdir, self.source, engine)
        self._servers.append(server)
        return server

    def loadgen(
        self,
        server: Server,
        conns: int,
        *,
        channel: str = "",
        pubs: int = 0,
        batch: int = 1,
        rate: float = 0.0,
        gap_ms: float = 0.0,
        timeout_s: float = 60.0,
        more_ports: list[int] | None = None,
        warmup: int = 0,
        proto: str = "centrifuge",
    ) -> Loadgen:
        tokens = make_tokens(self.workdir / f"tokens-{conns}.txt", max(conns, 1))
        args = [
            f"--port={server.port}",
            f"--conns={conns}",
            f"--tokens={tokens}",
            f"--size={MESSAGE_BYTES}",
            f"--timeout={timeout_s}",
            f"--proto={proto}",
        ]
        if channel:
            args.append(f"--channel={channel}")
        if more_ports:  # subscribers round-robin over the nodes, the publisher on the first
            args.append("--more-ports=" + ",".join(map(str, more_ports)))
        if pubs:
            pub_token = jwt.encode(
                {"sub": "publisher", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
            )
            args += [f"--pub-token={pub_token}", f"--pubs={pubs}", f"--batch={batch}"]
            args += [f"--rate={rate}", f"--gap-ms={gap_ms}", f"--warmup={warmup}"]
        loadgen = Loadgen(self.workdir, args)
        self._loadgens.append(loadgen)
        return loadgen

    def cleanup(self) -> None:
        for loadgen in self._loadgens:
            loadgen.stop()
        for server in self._servers:
            server.stop()
        self._loadgens.clear()
        self._servers.clear()


@dataclass
class Outcome:
    rows: list[Row]
    details: dict[str, Any]


def setup_timeout(conns: int) -> float:
    """Generous: a handshake costs the single server core a few hundred microseconds."""
    return 60.0 + conns / 100


def require_ready(report: dict[str, Any], conns: int) -> None:
    if report["ready"] != conns:
        raise BenchError(f"only {report['ready']} of {conns} connections set up: {report}")


def scenario_idle(ctx: Context) -> Outcome:
    """RSS per idle connection (connected with a JWT, subscribed to one shared channel)."""
    total = ctx.size(10_000, 1_000)
    first = total // 10
    server = ctx.server()
    time.sleep(1.0)
    fresh = server.sample()
    part = ctx.loadgen(server, first, channel="lobby", timeout_s=setup_timeout(first))
    require_ready(part.event("ready", setup_timeout(first)), first)
    time.sleep(1.0)
    at_first = server.sample()
    rest = ctx.loadgen(server, total - first, channel="lobby", timeout_s=setup_timeout(total))
    report = rest.event("ready", setup_timeout(total))
    require_ready(report, total - first)
    time.sleep(2.0)
    at_total = server.sample()
    per_conn = (at_total.rss_kib - fresh.rss_kib) / total
    marginal = (at_total.rss_kib - at_first.rss_kib) / (total - first)
    rows = [
        Row("idle", f"RSS per connection at {total:,}", per_conn, "KiB", 12.0),
        Row("idle", f"RSS per connection, {first:,} to {total:,}", marginal, "KiB"),
        Row("idle", "server RSS fresh", fresh.rss_kib / 1024, "MiB"),
    ]
    details = {
        "connections": total,
        "rss_kib": {
            "fresh": fresh.rss_kib,
            "at_first": at_first.rss_kib,
            "at_total": at_total.rss_kib,
        },
        "loadgen": report,
    }
    return Outcome(rows, details)


def scenario_handshake(ctx: Context) -> Outcome:
    """Server CPU per WebSocket upgrade + connect with an HS256 JWT (no subscribe)."""
    count = ctx.size(5_000, 500)
    server = ctx.server()
    warm = ctx.loadgen(server, 200)  # first-use costs (imports, caches) stay out of the number
    require_ready(warm.event("ready", setup_timeout(200)), 200)
    time.sleep(0.5)
    before = server.sample()
    loadgen = ctx.loadgen(server, count, timeout_s=setup_timeout(count))
    report = loadgen.event("ready", setup_timeout(count))
    after = server.sample()
    require_ready(report, count)
    measured = window(before, after)
    per_handshake = measured["server_cpu_s"] / count * 1e6
    setup = report["setup"]
    rows = [
        Row("handshake", "server CPU per handshake with JWT", per_handshake, "us", 300.0),
        Row("handshake", "handshakes per second (64 in flight)", count / setup["seconds"], "/s"),
        Row("handshake", "connect ready p99", setup["ready_ms"]["p99"], "ms"),
        Row(
            "handshake",
            "RSS per connection, no subscription",
            (after.rss_kib - before.rss_kib) / count,
            "KiB",
        ),
        contention_row("handshake", measured),
    ]
    return Outcome(rows, {"handshakes": count, "window": measured, "loadgen": report})


def run_fanout(
    ctx: Context,
    name: str,
    room: int,
    *,
    pubs: int,
    batch: int = 1,
    rate: float = 0.0,
    gap_ms: float = 0.0,
    nodes: list[Server] | None = None,
    warmup: int = 0,
    proto: str = "centrifuge",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One room, one publisher on the client protocol; returns (loadgen report, window).

    With ``nodes`` the subscribers spread over them and the publisher uses the first;
    the window is then that first node's."""
    server = nodes[0] if nodes else ctx.server()
    loadgen = ctx.loadgen(
        server,
        room,
        channel="room",
        pubs=pubs,
        batch=batch,
        rate=rate,
        gap_ms=gap_ms,
        timeout_s=setup_timeout(room),
        more_ports=[node.port for node in nodes[1:]] if nodes else None,
        warmup=warmup,
        proto=proto,
    )
    require_ready(loadgen.event("ready", setup_timeout(room)), room)
    time.sleep(0.5)
    before = server.sample()
    loadgen.command("go")
    report = loadgen.event("done", 600.0)
    after = server.sample()
    if report["deliveries"] != report["expected"] or report["publish"]["sent"] != pubs:
        raise BenchError(f"{name}: lost deliveries: {report}")
    return report, window(before, after)


def fanout_rows(
    name: str, report: dict[str, Any], measured: dict[str, Any], target: float
) -> list[Row]:
    per_delivery = measured["server_cpu_s"] / report["deliveries"] * 1e6
    latency = report["latency_ms"]
    return [
        Row(name, "server CPU per delivery", per_delivery, "us", target),
        Row(name, "publish-to-receive p50", latency["p50"], "ms"),
        Row(name, "publish-to-receive p99", latency["p99"], "ms"),
        Row(name, "deliveries per second", report["deliveries_per_second"], "/s"),
        contention_row(name, measured),
    ]


def scenario_fanout(ctx: Context) -> Outcome:
    """CPU per delivery, one frame per write (closed loop) and bursty (10 per frame)."""
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for room in (ctx.size(2_000, 200), ctx.size(10_000, 1_000)):
        # one at a time: the next publication leaves once every subscriber has the last one,
        # so each is written alone; ~1,000,000 deliveries
        single = f"fanout-{room}-single"
        pubs = max(20, ctx.size(1_000_000, 20_000) // room)
        report, measured = run_fanout(ctx, single, room, pubs=pubs)
        rows += fanout_rows(single, report, measured, 8.5)
        details[single] = {"room": room, "pubs": pubs, "window": measured, "loadgen": report}
        ctx.cleanup()
        # bursty: 10 publications per frame, handled in one loop turn, coalesced per socket
        bursty = f"fanout-{room}-bursty"
        pubs = max(100, ctx.size(4_000_000, 40_000) // room // 10 * 10)
        report, measured = run_fanout(ctx, bursty, room, pubs=pubs, batch=10)
        rows += fanout_rows(bursty, report, measured, 1.5)
        details[bursty] = {"room": room, "pubs": pubs, "batch": 10, "window": measured}
        details[bursty]["loadgen"] = report
        ctx.cleanup()
    return Outcome(rows, details)


def scenario_protobuf(ctx: Context) -> Outcome:
    """The room of 2,000 of ``fanout`` with every client on the Protobuf encoding (binary
    frames), one at a time and bursty, against the same targets."""
    rows: list[Row] = []
    details: dict[str, Any] = {}
    room = ctx.size(2_000, 200)
    for kind, batch, total, target in (
        ("single", 1, 1_000_000, 8.5),
        ("bursty", 10, 4_000_000, 1.5),
    ):
        name = f"protobuf-{room}-{kind}"
        pubs = max(20 * batch, ctx.size(total, total // 50) // room // batch * batch)
        report, measured = run_fanout(ctx, name, room, pubs=pubs, batch=batch, proto="protobuf")
        rows += fanout_rows(name, report, measured, target)
        details[name] = {"room": room, "pubs": pubs, "batch": batch, "window": measured}
        details[name]["loadgen"] = report
        ctx.cleanup()
    return Outcome(rows, details)


def scenario_rate(ctx: Context) -> Outcome:
    """A room of 2,000 at 100,000 deliveries/s offered (open loop): p99 latency."""
    room = ctx.size(2_000, 200)
    deliveries_per_s = ctx.size(100_000, 10_000)
    seconds = ctx.size(10, 3)
    rate = deliveries_per_s / room
    pubs = int(rate * seconds)
    name = f"rate-{room}"
    report, measured = run_fanout(ctx, name, room, pubs=pubs, rate=rate)
    per_delivery = measured["server_cpu_s"] / report["deliveries"] * 1e6
    rows = [
        Row(
            name,
            f"p99 at {deliveries_per_s:,} deliveries/s",
            report["latency_ms"]["p99"],
            "ms",
            25.0,
        ),
        Row(name, "publish-to-receive p50", report["latency_ms"]["p50"], "ms"),
        Row(name, "deliveries per second achieved", report["deliveries_per_second"], "/s"),
        Row(name, "server CPU per delivery", per_delivery, "us"),
        Row(name, "server core busy", measured["server_cpu_s"] / measured["wall_s"] * 100, "%"),
        contention_row(name, measured),
    ]
    details = {"room": room, "rate": rate, "pubs": pubs, "window": measured, "loadgen": report}
    return Outcome(rows, details)


def scenario_last(ctx: Context) -> Outcome:
    """A room of 10,000: time until the last subscriber has a publication (p99)."""
    room = ctx.size(10_000, 1_000)
    warmup = ctx.size(10, 2)
    pubs = ctx.size(100, 20) + warmup
    name = f"last-{room}"
    # one publication at a time with a pause after each, so each meets an idle server; the
    # first ones meet cold sockets (the very first takes ~1.4x as long) and are not measured
    report, measured = run_fanout(ctx, name, room, pubs=pubs, gap_ms=100.0, warmup=warmup)
    last = report["last_ms"]
    rows = [
        Row(name, "time to last subscriber p99", last["p99"], "ms", 100.0),
        Row(name, "time to last subscriber p50", last["p50"], "ms"),
        Row(name, "publish-to-receive p50", report["latency_ms"]["p50"], "ms"),
        contention_row(name, measured),
    ]
    details = {"room": room, "pubs": pubs, "warmup": warmup, "window": measured, "loadgen": report}
    return Outcome(rows, details)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """A redis-server on the load core (the server core is for the nodes), killed after."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (tests/deps.sh installs it)")
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", str(LOAD_CORE), binary, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise BenchError("redis-server did not start")
            time.sleep(0.02)
        yield port
    finally:
        process.kill()
        process.wait()


def scenario_redis(ctx: Context) -> Outcome:
    """Cross-node fan-out through Redis beside one memory-engine node, same load, same run.

    One room of 10,000; the publisher on node A, subscribers round-robin over three
    nodes sharing the server core, one publication at a time (closed loop)."""
    room = ctx.size(10_000, 1_000)
    pubs = ctx.size(300, 40)
    rows: list[Row] = []
    details: dict[str, Any] = {"room": room, "pubs": pubs}
    single, single_window = run_fanout(ctx, "redis-single", room, pubs=pubs)
    ctx.cleanup()
    with redis_server(ctx.workdir) as port:
        engine = {"type": "redis", "redis": {"address": [f"redis://127.0.0.1:{port}/0"]}}
        nodes = [ctx.server(engine) for _ in range(3)]
        cross, cross_window = run_fanout(ctx, "redis-cross", room, pubs=pubs, nodes=nodes)
        ctx.cleanup()
    name = f"redis-{room}"
    for label, report in (("one node, memory", single), ("three nodes, redis", cross)):
        latency = report["latency_ms"]
        rows.append(
            Row(name, f"{label}: deliveries per second", report["deliveries_per_second"], "/s")
        )
        rows.append(Row(name, f"{label}: p50", latency["p50"], "ms"))
        rows.append(Row(name, f"{label}: p99", latency["p99"], "ms"))
    ratio = cross["deliveries_per_second"] / max(single["deliveries_per_second"], 1) * 100
    rows.append(Row(name, "cross-node throughput of single-node", ratio, "%", ok=ratio >= 70))
    added = cross["latency_ms"]["p99"] - single["latency_ms"]["p99"]
    rows.append(Row(name, "p99 added by redis", added, "ms", 2.0))
    details |= {
        "single": {"window": single_window, "loadgen": single},
        "cross": {"window": cross_window, "loadgen": cross},
    }
    return Outcome(rows, details)


def scenario_redis_ingest(ctx: Context) -> Outcome:
    """The backplane's ingest: pub/sub frames one engine reads per CPU-second.

    The reader is a process of its own on the server core, running the server's code
    (``--server-commit`` too); Redis and the publisher are on the load core. Frames are
    what that code's release publishes: timed if it reads them, plain before that."""
    messages = ctx.size(300_000, 50_000)
    with redis_server(ctx.workdir) as port:
        env = dict(os.environ)
        if ctx.source is not None:
            env["PYTHONPATH"] = str(ctx.source)
        command = [
            "taskset", "-c", str(SERVER_CORE), sys.executable, str(BENCH_DIR / "redis_fanout.py"),
            "--ingest-only", "--redis-port", str(port), "--messages", str(messages),
            "--channels", "10", "--flood-core", str(LOAD_CORE),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise BenchError("the ingest did not finish in 300 s") from None
    if done.returncode != 0:
        raise BenchError(f"the ingest failed:\n{done.stderr[-2000:]}")
    ingest = json.loads(done.stdout.splitlines()[-1])
    per_core = ingest["per_cpu_second"]
    row = Row("redis-ingest", "backplane ingest per core", per_core, "/s", ok=per_core >= 300_000)
    return Outcome([row], {"ingest": ingest})


SCENARIOS: dict[str, Callable[[Context], Outcome]] = {
    "idle": scenario_idle,
    "handshake": scenario_handshake,
    "fanout": scenario_fanout,
    "protobuf": scenario_protobuf,
    "rate": scenario_rate,
    "last": scenario_last,
    "redis": scenario_redis,
    "redis-ingest": scenario_redis_ingest,
}


# Report -------------------------------------------------------------------------------


def format_value(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def print_table(rows: list[Row]) -> None:
    header = ("scenario", "metric", "value", "target", "result")
    lines = [
        (
            r.scenario,
            r.metric,
            f"{format_value(r.value)} {r.unit}",
            f"<= {format_value(r.target)} {r.unit}" if r.target is not None else "-",
            "-" if r.ok is None else ("pass" if r.ok else "FAIL"),
        )
        for r in rows
    ]
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(header)]
    for line in (header, *lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip()


def snapshot_server(rev: str, workdir: Path) -> tuple[Path, str]:
    """Extract server/ at a commit, so edits in the working tree cannot disturb the run."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if not commit:
        raise SystemExit(f"unknown revision {rev!r}")
    target = workdir / "server-snapshot"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "server"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "server", commit


def server_provenance(commit: str | None) -> dict[str, Any]:
    """Which server code was measured: a commit's snapshot, or the working tree."""
    if commit is not None:
        return {"source": "snapshot", "commit": commit}
    return {
        "source": "installed (working tree)",
        "head": git("rev-parse", "HEAD"),
        "uncommitted_server_changes": git("status", "--porcelain", "server").splitlines(),
    }


def host_info() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server_core": SERVER_CORE,
        "load_core": LOAD_CORE,
    }


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every child process is killed on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument(
        "--server-commit",
        metavar="REV",
        help="benchmark the server as committed at REV (default: the installed working tree)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed, not only on errors"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        print("needs 2 cores and taskset (util-linux)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CORE})  # the runner mostly sleeps; keep core 0 for the server
    build_loadgen()

    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "host": host_info(),
        "load_average_before": load_average(),
        "message_bytes": MESSAGE_BYTES,
        "server_config": SERVER_CONFIG,
        "scenarios": {},
    }
    rows: list[Row] = []
    failed: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
    with terminate_as_exit():
        try:
            source, commit = None, None
            if args.server_commit:
                source, commit = snapshot_server(args.server_commit, workdir)
            results["server"] = server_provenance(commit)
            for name in args.scenario or list(SCENARIOS):
                ctx = Context(quick=args.quick, workdir=workdir, source=source)
                load_before = load_average()
                print(f"[{name}] running (load average {load_before[0]:.2f})", flush=True)
                try:
                    outcome = SCENARIOS[name](ctx)
                except BenchError as exc:
                    print(f"[{name}] failed: {exc}", file=sys.stderr)
                    failed.append(name)
                    results["scenarios"][name] = {"error": str(exc)}
                    continue
                finally:
                    ctx.cleanup()
                rows += outcome.rows
                results["scenarios"][name] = {
                    **outcome.details,
                    "load_average": {"before": load_before, "after": load_average()},
                    "rows": [r.__dict__ for r in outcome.rows],
                }
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_after"] = load_average()
    results["failed"] = failed

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2) + "\n"
    (RESULTS_DIR / f"{stamp}.json").write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    print()
    print_table(rows)
    la = results["load_average_before"], results["load_average_after"]
    print(f"\nload average before {la[0]}, after {la[1]}; results in {RESULTS_DIR / stamp}.json")
    if args.quick:
        print("--quick: smaller rooms and fewer messages; compare with the targets loosely")
    missed = any(r.ok is False for r in rows)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
