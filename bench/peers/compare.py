"""Roomcast beside Centrifugo, python-socketio, Node socket.io and Node ws, same machine, same run.

Every peer does the same job (bench/peers/peers.py says which, and each one's defaults)
and is driven by the same C load client (bench/loadgen) speaking its wire format. The
server runs pinned to core 0, the load client to core 1. Each case runs every peer in
turn, round after round (A/B/C.../A/B/C..., the order rotated each round), and reports
the median and the range over the rounds. Beside every figure stand the checks that
make it comparable: the share of publications delivered, publications per WebSocket
frame (a server that falls behind joins messages and looks cheaper), how busy the
server's core was, the server's TCP writes per delivery, and how much of the server's
core something else used (from /proc/stat); runs where that passed 5% are flagged.

Usage: .venv/bin/python bench/peers/compare.py [--quick] [--rounds N] [--scenario NAME ...]
       [--case NAME ...] [--peer NAME ...] [--out DIR]
Results: bench/results/peers-<time>/ (results.json, results.md, one PNG per scenario),
and bench/results/peers-latest pointing at the newest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH_DIR))

import costmodel  # noqa: E402
import report  # noqa: E402

import run as harness  # noqa: E402
from peers import Peer, PeerError, PeerServer, all_peers, install, tcp_segments_out  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
CONTENTION_FLAG = 0.05  # share of the server's core used by other processes
#: How long a stopped peer may take to let its clients go past Roomcast's drain window
#: (aiohttp, under python-socketio, waits up to 60 s for open handlers on shutdown).
DRAIN_GRACE_S = 75.0


@dataclass
class Run:
    """One peer's figures from one run of one case, with the fairness checks beside them."""

    metrics: dict[str, float]
    delivered: float  # publications delivered (or connections set up) of those expected
    pubs_per_frame: float | None
    server_busy: float | None  # server CPU seconds per wall second in the window
    writes_per_delivery: float | None
    others_on_core: float | None  # share of the server's core other processes used
    details: dict[str, Any] = field(default_factory=dict)
    timed: bool = True  # CPU or time figures, which others on the core disturb (memory not)

    @property
    def flagged(self) -> bool:
        others = self.others_on_core
        return self.timed and others is not None and others > CONTENTION_FLAG


@dataclass
class Bench:
    """Sizes, scratch space and the processes of the run under way (killed by cleanup)."""

    quick: bool
    workdir: Path
    servers: list[PeerServer] = field(default_factory=list)
    loadgens: list[harness.Loadgen] = field(default_factory=list)
    _tokens: dict[int, Path] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def start(
        self, peer: Peer, redis_url: str | None = None, env: dict[str, str] | None = None
    ) -> PeerServer:
        server = PeerServer(
            peer,
            harness.free_port(),
            harness.SECRET,
            harness.API_KEY,
            self.workdir,
            redis_url,
            preexec=harness.raise_fd_limit,
            extra_env=env,
        )
        self.servers.append(server)
        return server

    def tokens(self, count: int) -> Path:
        if count not in self._tokens:
            path = self.workdir / f"tokens-{count}.txt"
            self._tokens[count] = harness.make_tokens(path, count)
        return self._tokens[count]

    def loadgen(
        self,
        server: PeerServer,
        conns: int,
        *,
        channel: str = "",
        pubs: int = 0,
        batch: int = 1,
        gap_ms: float = 0.0,
        warmup: int = 0,
        concurrency: int = 64,
        more_ports: list[int] | None = None,
        rooms: int = 0,
        rate: float = 0.0,
        reconnect_port: int = 0,
        timeout: float = 0.0,
    ) -> harness.Loadgen:
        peer = server.peer
        args = [
            f"--port={server.port}",
            f"--proto={peer.proto}",
            f"--path={peer.path}",
            f"--conns={conns}",
            f"--tokens={self.tokens(max(conns, 1))}",
            f"--size={harness.MESSAGE_BYTES}",
            f"--timeout={timeout or harness.setup_timeout(conns)}",
            f"--concurrency={concurrency}",
        ]
        if reconnect_port:
            args.append(f"--reconnect-port={reconnect_port}")
        if channel:
            args.append(f"--channel={channel}")
        if more_ports:
            args.append("--more-ports=" + ",".join(map(str, more_ports)))
        if pubs and rooms:  # the members publish, each into its own room
            args += [f"--rooms={rooms}", f"--pubs={pubs}", f"--rate={rate}"]
        elif pubs:  # a backend publishes through the server API
            args += [f"--api-key={harness.API_KEY}", f"--pubs={pubs}", f"--batch={batch}"]
            args += [f"--gap-ms={gap_ms}", f"--warmup={warmup}"]
        loadgen = harness.Loadgen(self.workdir, args)
        self.loadgens.append(loadgen)
        return loadgen

    def cleanup(self) -> None:
        for loadgen in self.loadgens:
            loadgen.stop()
        for server in self.servers:
            server.stop()
        self.loadgens.clear()
        self.servers.clear()


def wait_ready(loadgen: harness.Loadgen, conns: int) -> dict[str, Any]:
    report_ = loadgen.event("ready", harness.setup_timeout(conns) + 30)
    harness.require_ready(report_, conns)
    return report_


@dataclass(frozen=True)
class CoreTimes:
    """The server core's time from /proc/stat: tasks (user, nice, system), steal, interrupts.

    Interrupt and softirq time is kept apart: on loopback it is mostly the packets the
    run itself sends and receives, not another process, so it does not flag a run.
    """

    tasks_s: float
    steal_s: float
    interrupts_s: float

    @classmethod
    def take(cls) -> CoreTimes:
        name = f"cpu{harness.SERVER_CORE} "
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(name):
                ticks = [int(v) / harness.CLK_TCK for v in line.split()[1:]]
                return cls(ticks[0] + ticks[1] + ticks[2], ticks[7], ticks[5] + ticks[6])
        raise harness.BenchError(f"no {name.strip()} in /proc/stat")


@dataclass
class Window:
    """Samples of every server process and of the server core at one instant."""

    samples: list[Any]
    core: CoreTimes

    @classmethod
    def take(cls, servers: list[PeerServer]) -> Window:
        return cls([harness.Sample.take(s.pid) for s in servers], CoreTimes.take())


def core_share(servers: list[PeerServer], before: Window, after: Window) -> dict[str, Any]:
    """Server CPU over a window (all nodes) and the share of the server core others used.

    Others = the core's task and steal time minus the servers' own CPU. A server allowed
    on both cores (the GOMAXPROCS=2 row) has no core of its own: no figure (None).
    """
    pairs = zip(before.samples, after.samples, strict=True)
    windows = [harness.window(b, a) for b, a in pairs]
    wall = max(windows[0]["wall_s"], 1e-9)
    cpu = sum(w["server_cpu_s"] for w in windows)
    pinned = all(s.peer.cores == str(harness.SERVER_CORE) for s in servers)
    tasks = after.core.tasks_s - before.core.tasks_s
    steal = after.core.steal_s - before.core.steal_s
    interrupts = after.core.interrupts_s - before.core.interrupts_s
    others = max(0.0, tasks + steal - cpu) / wall if pinned else None
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "busy": cpu / wall,
        "others": others,
        "server_core": {"tasks_s": tasks, "steal_s": steal, "interrupts_s": interrupts},
        "windows": windows,
    }


# Cases ---------------------------------------------------------------------------------


def room_run(
    b: Bench,
    peer: Peer,
    room: int,
    pubs: int,
    *,
    batch: int = 1,
    gap_ms: float = 0.0,
    warmup: int = 0,
    nodes: int = 1,
    redis_url: str | None = None,
    rooms: int = 0,
    rate: float = 0.0,
) -> Run:
    """``room`` subscribers in one room, publications through the server API; or with
    ``rooms`` as many rooms, the members publishing at ``rate`` per second in turn."""
    servers = [b.start(peer, redis_url) for _ in range(nodes)]
    loadgen = b.loadgen(
        servers[0],
        room,
        channel="room",
        pubs=pubs,
        batch=batch,
        gap_ms=gap_ms,
        warmup=warmup,
        more_ports=[s.port for s in servers[1:]],
        rooms=rooms,
        rate=rate,
    )
    wait_ready(loadgen, room)
    time.sleep(0.5)
    segments = sum(tcp_segments_out(s.port) for s in servers)
    before = Window.take(servers)
    loadgen.command("go")
    done = loadgen.event("done", 900.0)
    after = Window.take(servers)
    segments = sum(tcp_segments_out(s.port) for s in servers) - segments
    for server in servers:
        server.alive()
    share = core_share(servers, before, after)
    deliveries = max(done["deliveries"], 1)
    frames = done.get("frames_with_publications", 0)
    members = room // rooms if rooms else room
    metrics = {
        "cpu_us_per_delivery": share["cpu_s"] / deliveries * 1e6,
        "cpu_us_per_publication": share["cpu_s"] / max(done["publish"]["sent"], 1) * 1e6,
        "deliveries_per_s": float(done["deliveries_per_second"]),
        "p50_ms": done["latency_ms"]["p50"],
        "p99_ms": done["latency_ms"]["p99"],
        "last_p50_ms": done["last_ms"]["p50"],
        "last_p99_ms": done["last_ms"]["p99"],
    }
    return Run(
        metrics=metrics,
        delivered=done["deliveries"] / (pubs * members),
        pubs_per_frame=done["deliveries"] / frames if frames else None,
        server_busy=share["busy"],
        writes_per_delivery=segments / deliveries,
        others_on_core=share["others"],
        details={"loadgen": done, "window": share, "segments": segments},
    )


def case_fanout(room: int, bursty: bool) -> Callable[[Bench, Peer], Run]:
    def run_case(b: Bench, peer: Peer) -> Run:
        if bursty:  # 10 publications per API request (a batch), ~400,000 deliveries
            pubs = max(20, b.size(400_000, 40_000) // room // 10 * 10)
            return room_run(b, peer, room, pubs, batch=10)
        pubs = max(10, b.size(200_000, 20_000) // room)  # one at a time: one frame per write
        return room_run(b, peer, room, pubs)

    return run_case


def case_last(room: int) -> Callable[[Bench, Peer], Run]:
    def run_case(b: Bench, peer: Peer) -> Run:
        warmup = b.size(5, 2)
        return room_run(b, peer, room, b.size(30, 10) + warmup, gap_ms=100.0, warmup=warmup)

    return run_case


def case_rooms(conns: int, rate: int, seconds: int) -> Callable[[Bench, Peer], Run]:
    def run_case(b: Bench, peer: Peer) -> Run:
        return room_run(b, peer, conns, rate * seconds, rooms=conns // 2, rate=rate)

    return run_case


def case_redis(room: int) -> Callable[[Bench, Peer], Run]:
    def run_case(b: Bench, peer: Peer) -> Run:
        with harness.redis_server(b.workdir) as port:
            url = f"redis://127.0.0.1:{port}/0"
            try:
                return room_run(b, peer, room, b.size(30, 10), nodes=3, redis_url=url)
            finally:
                b.cleanup()  # the nodes go before their Redis does

    return run_case


def case_idle(total: int) -> Callable[[Bench, Peer], Run]:
    def run_case(b: Bench, peer: Peer) -> Run:
        server = b.start(peer)
        time.sleep(1.0)
        heap_fresh = server.go_heap_inuse()
        fresh = Window.take([server])
        loadgen = b.loadgen(server, total, channel="lobby")
        wait_ready(loadgen, total)
        time.sleep(2.0)
        at_total = Window.take([server])
        server.alive()
        share = core_share([server], fresh, at_total)
        metrics = {
            "rss_kib_per_conn": (at_total.samples[0].rss_kib - fresh.samples[0].rss_kib) / total,
            "rss_mib_fresh": fresh.samples[0].rss_kib / 1024,
        }
        heap = server.go_heap_inuse()
        if heap is not None and heap_fresh is not None:
            metrics["go_heap_kib_per_conn"] = (heap - heap_fresh) / 1024 / total
        details = {"window": share}
        return Run(metrics, 1.0, None, share["busy"], None, share["others"], details, timed=False)

    return run_case


def connect_run(b: Bench, peer: Peer, count: int, concurrency: int) -> Run:
    """``count`` connections with a JWT (no subscription), ``concurrency`` at a time."""
    server = b.start(peer)
    warm = b.loadgen(server, 200)  # first-use costs stay out of the figure
    wait_ready(warm, 200)
    time.sleep(0.5)
    before = Window.take([server])
    loadgen = b.loadgen(server, count, concurrency=concurrency)
    ready = loadgen.event("ready", harness.setup_timeout(count) + 30)
    after = Window.take([server])
    server.alive()
    share = core_share([server], before, after)
    setup = ready["setup"]
    metrics = {
        "cpu_us_per_connect": share["cpu_s"] / max(ready["ready"], 1) * 1e6,
        "connects_per_s": ready["ready"] / max(setup["seconds"], 1e-9),
        "all_connected_s": setup["seconds"],
        "ready_p99_ms": setup["ready_ms"]["p99"],
    }
    return Run(
        metrics,
        ready["ready"] / count,
        None,
        share["busy"],
        None,
        share["others"],
        {"loadgen": ready, "window": share},
    )


def case_handshake(count: int) -> Callable[[Bench, Peer], Run]:
    return lambda b, peer: connect_run(b, peer, count, 64)


def case_storm(count: int) -> Callable[[Bench, Peer], Run]:
    return lambda b, peer: connect_run(b, peer, count, count)


def drain_run(b: Bench, peer: Peer, count: int, drain_window_s: float) -> Run:
    """``count`` clients subscribed on one server, which is stopped with SIGTERM as
    Kubernetes stops a pod; each client connects again at once to a second server of the
    same peer (both on one Redis where the peer has a backplane) and subscribes again.

    Each peer leaves as it does on SIGTERM: Roomcast closes with 3001 over its drain
    window, Centrifugo disconnects everyone with its shutdown code, python-socketio
    (aiohttp) shuts down its server, and the Node peers exit, their sockets closed by
    the kernel. The CPU is the second server's, over the storm.
    """
    with contextlib.ExitStack() as stack:
        redis_url = None
        if peer.cross_process:
            redis_port = stack.enter_context(harness.redis_server(b.workdir))
            stack.callback(b.cleanup)  # the servers go before their Redis does
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = (
            {"ROOMCAST_SHUTDOWN__DRAIN_WINDOW": f"{drain_window_s:g}s"}
            if peer.name == "roomcast"
            else None
        )
        first = b.start(peer, redis_url, env)
        second = b.start(peer, redis_url, env)
        timeout = harness.setup_timeout(count) + drain_window_s + DRAIN_GRACE_S
        loadgen = b.loadgen(
            first, count, channel="room", reconnect_port=second.port, timeout=timeout
        )
        wait_ready(loadgen, count)
        time.sleep(0.5)
        before = Window.take([first, second])  # the first stays sampled (a zombie) once it exits
        loadgen.command("storm")
        first.process.send_signal(signal.SIGTERM)
        report_ = loadgen.event("reconnected", timeout + 30)
        after = Window.take([first, second])
        second.alive()
        share = core_share([first, second], before, after)
        storm = report_["storm"]
        second_cpu = share["windows"][1]["server_cpu_s"]
        reconnected = storm["reconnected"]
        metrics = {
            "all_reconnected_s": storm["seconds"],
            "reconnect_p50_ms": storm["reconnect_ms"]["p50"],
            "reconnect_p99_ms": storm["reconnect_ms"]["p99"],
            "connect_failures": float(storm["failures"]),
            "cpu_us_per_reconnect": second_cpu / max(reconnected, 1) * 1e6,
        }
        details = {
            "loadgen": report_,
            "window": share,
            "first_server_cpu_s": share["windows"][0]["server_cpu_s"],
            "drain_window_s": drain_window_s if peer.name == "roomcast" else None,
        }
        return Run(
            metrics,
            reconnected / count,
            None,
            second_cpu / max(share["wall_s"], 1e-9),
            None,
            share["others"],
            details,
        )


def case_drain(count: int, drain_window_s: float) -> Callable[[Bench, Peer], Run]:
    return lambda b, peer: drain_run(b, peer, count, drain_window_s)


@dataclass(frozen=True)
class Case:
    name: str
    scenario: str
    description: str
    run: Callable[[Bench, Peer], Run]
    primary: str  # the metric the table and chart lead with
    cross_process: bool = False  # only peers with a Redis backplane


def cases(quick: bool) -> list[Case]:
    def size(full: int, small: int) -> int:
        return small if quick else full

    small_room, big_room, crowd = size(2_000, 200), size(10_000, 1_000), size(10_000, 1_000)
    found: list[Case] = []
    for room in (small_room, big_room):
        found.append(
            Case(
                f"fanout-{room}-single",
                "fanout",
                f"room of {room:,}, one publication at a time (one frame per write)",
                case_fanout(room, bursty=False),
                "cpu_us_per_delivery",
            )
        )
        found.append(
            Case(
                f"fanout-{room}-bursty",
                "fanout",
                f"room of {room:,}, 10 publications per API batch",
                case_fanout(room, bursty=True),
                "cpu_us_per_delivery",
            )
        )
    handshakes = size(5_000, 500)
    drain_window = size(10, 2)
    found += [
        Case(
            f"idle-{crowd}",
            "idle",
            f"{crowd:,} idle connections, each with a JWT, subscribed to one room",
            case_idle(crowd),
            "rss_kib_per_conn",
        ),
        Case(
            "handshake",
            "handshake",
            f"{handshakes:,} WebSocket handshakes + connect with an HS256 JWT, 64 in flight",
            case_handshake(handshakes),
            "cpu_us_per_connect",
        ),
        Case(
            f"last-{big_room}",
            "last",
            f"room of {big_room:,}, one publication per 100 ms: time to the last subscriber",
            case_last(big_room),
            "last_p99_ms",
        ),
        Case(
            f"rooms-{crowd // 2}x2",
            "rooms",
            f"{crowd // 2:,} rooms of 2, members publishing {size(5_000, 1_000):,}/s in turn",
            case_rooms(crowd, size(5_000, 1_000), size(4, 2)),
            "cpu_us_per_publication",
        ),
        Case(
            f"storm-{crowd}",
            "storm",
            f"{crowd:,} clients connecting at once, as after a drain",
            case_storm(crowd),
            "all_connected_s",
        ),
        Case(
            f"drain-{crowd}",
            "drain",
            f"{crowd:,} clients of a server stopped with SIGTERM reconnect to a second one, "
            f"on one Redis where the peer has a backplane (Roomcast's drain window "
            f"{drain_window:g} s)",
            case_drain(crowd, drain_window),
            "reconnect_p99_ms",
        ),
        Case(
            f"redis-{big_room}",
            "redis",
            f"room of {big_room:,} over three processes through one Redis (CPU of all three)",
            case_redis(big_room),
            "cpu_us_per_delivery",
            cross_process=True,
        ),
    ]
    return found


SCENARIOS = ("fanout", "idle", "handshake", "last", "rooms", "storm", "drain", "redis")


# Rounds and summaries -----------------------------------------------------------------


def summarise(runs: list[Run]) -> dict[str, Any]:
    """Median and range of every metric and fairness check over the rounds."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    summary: dict[str, Any] = {"rounds": len(runs), "flagged": sum(r.flagged for r in runs)}
    for key in runs[0].metrics:
        values = [r.metrics[key] for r in runs if key in r.metrics]
        if values:
            summary[key] = spread(values)
    for key in ("delivered", "pubs_per_frame", "server_busy", "writes_per_delivery"):
        values = [v for r in runs if (v := getattr(r, key)) is not None]
        if values:
            summary[key] = spread(values)
    others = [r.others_on_core for r in runs if r.others_on_core is not None]
    if others:
        summary["others_on_core"] = spread(others)
    return summary


def case_entry(
    case: Case, runs: dict[str, list[Run]], errors: dict[str, list[str]]
) -> dict[str, Any]:
    return {
        "scenario": case.scenario,
        "description": case.description,
        "primary": case.primary,
        "peers": {
            name: {
                "summary": summarise(peer_runs) if peer_runs else None,
                "runs": [{**r.__dict__, "flagged": r.flagged} for r in peer_runs],
                "errors": errors[name],
            }
            for name, peer_runs in runs.items()
        },
    }


def run_cases(
    selected: list[Case], peers: list[Peer], rounds: int, b: Bench, into: dict[str, Any]
) -> None:
    """Run every case into ``into``, each entry rewritten after every run, so what was
    measured survives an interruption."""
    for case in selected:
        entrants = [p for p in peers if p.cross_process or not case.cross_process]
        runs: dict[str, list[Run]] = {p.name: [] for p in entrants}
        errors: dict[str, list[str]] = {p.name: [] for p in entrants}
        for round_no in range(rounds):
            shift = round_no % len(entrants)
            for peer in entrants[shift:] + entrants[:shift]:
                load = harness.load_average()[0]
                where = f"[{case.name}] round {round_no + 1}/{rounds} {peer.name}"
                print(where, end="", flush=True)
                try:
                    run = case.run(b, peer)
                except (harness.BenchError, PeerError, OSError) as exc:
                    print(f": failed: {exc}", flush=True)
                    errors[peer.name].append(str(exc)[:2000])
                    continue
                finally:
                    b.cleanup()
                runs[peer.name].append(run)
                into[case.name] = case_entry(case, runs, errors)
                flag = "  FLAGGED: others used the server core" if run.flagged else ""
                value = run.metrics.get(case.primary, float("nan"))
                print(f": {case.primary} {value:.3g} (load {load:.2f}){flag}", flush=True)
        into[case.name] = case_entry(case, runs, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument(
        "--case", action="append", help="run only this case, e.g. fanout-2000-single (repeatable)"
    )
    parser.add_argument(
        "--peer", action="append", choices=[p.name for p in all_peers()], help="repeatable"
    )
    parser.add_argument("--rounds", type=int, help="rounds per case (default 3, --quick 1)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        print("needs 2 cores and taskset (util-linux)", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    os.sched_setaffinity(0, {harness.LOAD_CORE})
    harness.build_loadgen()
    install()
    peers = [p for p in all_peers() if not args.peer or p.name in args.peer]
    wanted = args.scenario or list(SCENARIOS)
    selected = [c for c in cases(args.quick) if c.scenario in wanted]
    selected.sort(key=lambda c: wanted.index(c.scenario))
    if args.case:
        unknown = set(args.case) - {c.name for c in selected}
        if unknown:
            names = ", ".join(c.name for c in selected)
            parser.error(f"unknown case {', '.join(sorted(unknown))}; at these sizes: {names}")
        selected = [c for c in selected if c.name in args.case]

    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "rounds": rounds,
        "host": harness.host_info(),
        "load_average_before": harness.load_average(),
        "message_bytes": harness.MESSAGE_BYTES,
        "contention_flag": CONTENTION_FLAG,
        "peers": [
            {"name": p.name, "title": p.title, "version": p.version, "defaults": p.defaults}
            for p in peers
        ],
    }
    workdir = Path(tempfile.mkdtemp(prefix="roomcast-peers-"))
    b = Bench(quick=args.quick, workdir=workdir)
    results["cases"] = {}
    interrupted = False
    with harness.terminate_as_exit():
        try:
            run_cases(selected, peers, rounds, b, results["cases"])
        except KeyboardInterrupt:
            interrupted = True  # write what was measured, marked as such
            print("\ninterrupted: writing the runs finished so far", file=sys.stderr)
        finally:
            b.cleanup()
            shutil.rmtree(workdir, ignore_errors=True)
    results["interrupted"] = interrupted
    results["load_average_after"] = harness.load_average()
    results["cost_model"] = costmodel.project(results)

    out = (args.out or RESULTS_DIR) / f"peers-{started.strftime('%Y%m%dT%H%M%SZ')}"
    written = report.write(results, out)
    print()
    print(written["markdown"].read_text())
    print(f"results in {out}/")
    failed = [
        f"{case}/{peer}"
        for case, entry in results["cases"].items()
        for peer, data in entry["peers"].items()
        if data["errors"]
    ]
    if failed:
        print("failed runs: " + ", ".join(failed), file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
