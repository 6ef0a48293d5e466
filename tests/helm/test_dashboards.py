"""The chart's Grafana dashboards: every server panel's PromQL, run by a real Prometheus.

Two ``roomcast serve`` processes share a real redis-server, a third runs the memory
engine (its job ``roomcast-solo``, a second cluster); centrifuge-python clients connect,
subscribe and publish through all three, an HTTP-streaming session on the first sends
its commands to both Redis-engine servers (the second forwards them) and an SSE session
stays open on the second, while Prometheus (built from source) scrapes them every second.
The traffic runs once for the module, for every test that reads what it exports. Each
panel query of the server dashboard must then return samples, all finite and
non-negative, and the headline panels must agree with the traffic. The operator
dashboard needs the operator reconciling against an API server; its queries are checked
here for syntax and series names, and against a running operator in
e2e/operator/test_dashboard.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from centrifuge import Client, SubscriptionEventHandler

from roomcast.codes import DisconnectCode
from tests.helm.chart import CHART, by_kind, render_chart
from tests.processes import ServerProcess, start_server, token
from tests.prometheus import PrometheusServer
from tests.server.engine.redis_servers import RedisServer
from tests.support.streams import (
    EMULATION_CONFIG,
    JsonStream,
    emulate,
    http_session,
    open_sse,
    open_stream,
)
from tests.wsclient import RawClient

DASHBOARDS = CHART / "dashboards"
NAMESPACE = "roomcast-test"
JOB = "roomcast"
SOLO_JOB = "roomcast-solo"
#: Clients per server: the two Redis-engine pods, then the memory-engine one.
PER_SERVER = (3, 3, 2)
CLIENTS = sum(PER_SERVER)
#: Emulation sessions per server by transport (connections too, each with one subscription).
EMULATED = {"http_stream": (1, 0, 0), "sse": (0, 1, 0)}
EMULATED_PER_SERVER = [sum(n) for n in zip(*EMULATED.values(), strict=True)]
CONNECTIONS = CLIENTS + sum(EMULATED_PER_SERVER)
PODS = ("roomcast-0", "roomcast-1", "solo-0")
RATE_WINDOW = "20s"

pytestmark = pytest.mark.redis


def load(name: str) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return dashboard


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target, with Grafana's variables as a query would see
    them with "All" selected and a short range."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable in ("namespace", "job", "cluster_namespace", "cluster"):
                expr = expr.replace(f"${variable}", ".+")
            expr = expr.replace("$__rate_interval", RATE_WINDOW).replace("$__range", "5m")
            found.append((panel["title"], expr))
    return found


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(roomcast_[a-z_]+)", expr))


class Counting(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.received = 0

    async def on_publication(self, ctx: Any) -> None:
        self.received += 1


@pytest.fixture(scope="module")
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="roomcast-dashboards-"))


@pytest.fixture(scope="module")
def fleet(workdir: Path) -> Iterator[list[ServerProcess]]:
    """Two servers on one real Redis, and one on the memory engine; all serve the
    emulation transports."""
    with RedisServer(workdir=workdir) as redis_server:
        config = {
            **EMULATION_CONFIG,
            "engine": {"type": "redis", "redis": {"address": [redis_server.url]}},
        }
        servers: list[ServerProcess] = []
        try:
            for _ in range(2):
                servers.append(start_server(config, workdir=workdir))
            servers.append(start_server(EMULATION_CONFIG, workdir=workdir))
            yield servers
        finally:
            for server in servers:
                server.stop()


@pytest.fixture(scope="module")
def prometheus(fleet: list[ServerProcess], workdir: Path) -> Iterator[PrometheusServer]:
    targets = [
        (job, f"127.0.0.1:{server.port}", {"namespace": NAMESPACE, "pod": pod})
        for job, server, pod in zip((JOB, JOB, SOLO_JOB), fleet, PODS, strict=True)
    ]
    server = PrometheusServer(targets, workdir).start()
    try:
        yield server
    finally:
        server.stop()


async def refuse_one(server: ServerProcess) -> None:
    """A connection refused for its token (signed with another secret)."""
    async with await RawClient.open(server.ws_url) as refused:
        await refused.send({"id": 1, "connect": {"token": token("x", secret="wrong" * 8)}})
        assert await refused.closed() == DisconnectCode.INVALID_TOKEN


async def emulation_requests(fleet: list[ServerProcess], connect: dict[str, Any]) -> None:
    """A pong to the stream's server (handled), one through the other Redis-engine server
    (forwarded), and one for a session that does not exist (refused with 404). Its own
    client session: closing one made by http_session ends the stream too."""
    async with aiohttp.ClientSession() as http:
        assert await emulate(http, fleet[0].http_url, connect, {}) == 204
        assert await emulate(http, fleet[1].http_url, connect, {}) == 204
        unknown = {**connect, "session": uuid.uuid4().hex}
        assert await emulate(http, fleet[0].http_url, unknown, {}) == 404


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def streaming(
    fleet: list[ServerProcess],
) -> AsyncIterator[dict[str, tuple[JsonStream, dict[str, Any], ServerProcess]]]:
    """By transport, a session's stream, connect reply and server: HTTP streaming on the
    first server, subscribed through the second (a forwarded request), and SSE on the
    second."""
    async with http_session() as http:
        sessions = {
            "http_stream": (*await open_stream(http, fleet[0], user="streamer"), fleet[0]),
            "sse": (*await open_sse(http, fleet[1], user="eventsource"), fleet[1]),
        }
        for stream, connect, _ in sessions.values():
            quiet = {"id": 2, "subscribe": {"channel": f"quiet{uuid.uuid4().hex[:8]}"}}
            assert await emulate(http, fleet[1].http_url, connect, quiet) == 204
            assert "subscribe" in await stream.until(lambda m: m.get("id") == 2)
        yield sessions


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def traffic(
    fleet: list[ServerProcess],
    prometheus: PrometheusServer,
    streaming: dict[str, tuple[JsonStream, dict[str, Any], ServerProcess]],
) -> AsyncIterator[list[Client]]:
    """Clients on every server, each on one channel, publishing until the module's tests
    end; the HTTP-streaming session's requests before and after Prometheus knows their
    counter, and the emulation sessions' pongs. Once for the module: each test that reads
    what the traffic exports asks for it, so it passes alone too."""
    _, connect, _ = streaming["http_stream"]
    channel = f"dash{uuid.uuid4().hex[:8]}"
    clients: list[Client] = []
    handlers: list[Counting] = []
    servers = [server for server, n in zip(fleet, PER_SERVER, strict=True) for _ in range(n)]
    for i, server in enumerate(servers):
        client = Client(server.ws_url, token=token(f"user{i}"))
        clients.append(client)
        await client.connect()
        handler = Counting()
        handlers.append(handler)
        await client.new_subscription(channel, events=handler).subscribe()
    # One subscriber that comes back and recovers what it missed.
    async with await RawClient.open(fleet[0].ws_url) as comeback:
        await comeback.connect(token("comeback"))
        first = await comeback.call(2, "subscribe", {"channel": channel + "r"})
        fleet[0].api("publish", {"channel": channel + "r", "data": {"missed": 1}})
        await comeback.call(3, "unsubscribe", {"channel": channel + "r"})
        position = {
            "offset": first["subscribe"].get("offset", 0),
            "epoch": first["subscribe"]["epoch"],
        }
        again = await comeback.call(
            4, "subscribe", {"channel": channel + "r", "recover": True, **position}
        )
        assert again["subscribe"]["recovered"] is True
    await refuse_one(fleet[0])
    await emulation_requests(fleet, connect)

    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            sub = clients[n % CLIENTS].get_subscription(channel)
            assert sub is not None
            await sub.publish({"n": n})
            server = fleet[n % len(fleet)]
            await asyncio.to_thread(server.api, "publish", {"channel": channel, "data": {"api": n}})
            n += 1
            await asyncio.sleep(0.05)

    async def pong(stream: JsonStream, connect: dict[str, Any], server: ServerProcess) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                if await stream.next(timeout=120) == {}:
                    await emulate(http, server.http_url, connect, {})

    publisher = asyncio.create_task(publish())
    pongers = [asyncio.create_task(pong(*session)) for session in streaming.values()]
    try:
        # Prometheus must have seen the connections and a few scrapes of rising counters.
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            assert not publisher.done(), publisher
            for ponger in pongers:
                assert not ponger.done(), ponger
            connections = prometheus.query("sum(roomcast_connections)")
            deliveries = prometheus.query(f"min(rate(roomcast_deliveries_total[{RATE_WINDOW}]))")
            latency = prometheus.query(
                f"sum(rate(roomcast_publish_to_write_seconds_count[{RATE_WINDOW}]))"
            )
            seen = connections and float(connections[0]["value"][1]) == CONNECTIONS
            rising = [float(q[0]["value"][1]) if q else 0 for q in (deliveries, latency)]
            if seen and min(rising) > 0:
                break
            assert asyncio.get_running_loop().time() < deadline, "Prometheus saw no traffic"
            await asyncio.sleep(1)
        assert all(h.received > 0 for h in handlers)
        # A second refusal and emulation requests once Prometheus knows the counters, so
        # that their rates show.
        await refuse_one(fleet[0])
        await emulation_requests(fleet, connect)
        await asyncio.sleep(2.5)
        yield clients
    finally:
        stop.set()
        await publisher
        for ponger in pongers:
            ponger.cancel()
        await asyncio.gather(*pongers, return_exceptions=True)
        for client in clients:
            await client.disconnect()
        # The SDK closes its socket in a task of its own; let those finish before the loop ends.
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=10)


def _values(samples: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in samples]


@pytest.mark.asyncio(loop_scope="module")
async def test_every_server_panel_has_sane_data(
    traffic: list[Client], prometheus: PrometheusServer
) -> None:
    queries = panel_queries(load("server-fleet.json"))
    assert len(queries) >= 15
    seen: dict[str, list[float]] = {}
    for title, expr in queries:
        samples = await asyncio.to_thread(prometheus.query, expr)
        assert samples, f"panel {title!r} is empty: {expr}"
        values = _values(samples)
        assert all(math.isfinite(v) and v >= 0 for v in values), f"{title!r}: {values} ({expr})"
        seen.setdefault(title, []).extend(values)

    assert seen["Connections"] == [CONNECTIONS]
    assert seen["Pods"] == [len(PER_SERVER)]
    assert seen["Subscriptions"] == [CONNECTIONS]
    assert seen["Pods with engine down"] == [0]
    assert seen["Pods draining"] == [0]
    assert seen["Deliveries / s"][0] > 0
    per_pod = [c + e for c, e in zip(PER_SERVER, EMULATED_PER_SERVER, strict=True)]
    assert sorted(seen["Connections per pod"]) == sorted(per_pod)
    latencies = seen["Publish-to-write latency"]
    assert all(0 < v < 2.5 for v in latencies), latencies
    # Two connections were refused for their tokens.
    refused = prometheus.query('sum(roomcast_disconnects_total{code="3500"})')
    assert _values(refused) == [2]
    assert seen["Connect attempts"] and max(seen["Connect attempts"]) > 0

    transports = by_legend(prometheus, queries, "Connections by transport")
    assert transports == {
        "WebSocket": [CLIENTS],
        **{transport: [sum(n)] for transport, n in EMULATED.items()},
        **{
            f"{pod} {transport}": [n[i]]
            for transport, n in EMULATED.items()
            for i, pod in enumerate(PODS)
        },
    }
    requests = by_legend(prometheus, queries, "Emulation requests")
    assert {"handled", "forwarded", "no_session"} <= requests.keys(), requests
    assert all(requests[outcome][0] > 0 for outcome in ("handled", "forwarded", "no_session"))
    # The unknown session's requests were refused, the others not.
    assert 0 < requests["refused share"][0] < 1, requests


def by_legend(
    prometheus: PrometheusServer, queries: list[tuple[str, str]], title: str
) -> dict[str, list[float]]:
    """The values of one panel's queries by legend, as Grafana shows it: the target's
    ``legendFormat`` with each ``{{label}}`` replaced by the sample's value of it."""
    panel = next(p for p in load("server-fleet.json")["panels"] if p["title"] == title)
    legends = [t["legendFormat"] for t in panel["targets"]]
    exprs = [expr for t, expr in queries if t == title]
    found: dict[str, list[float]] = {}
    for legend, expr in zip(legends, exprs, strict=True):
        for sample in prometheus.query(expr):
            key = legend_of(legend, sample["metric"])
            found.setdefault(key, []).append(float(sample["value"][1]))
    return found


def legend_of(legend_format: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), legend_format)


def test_template_variables_list_the_scraped_cluster(
    prometheus: PrometheusServer, fleet: list[ServerProcess]
) -> None:
    variables = {v["name"]: v for v in load("server-fleet.json")["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for name, want in (("namespace", NAMESPACE), ("job", JOB)):
        query = variables[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match and match.group(2) == name, query
        selector = match.group(1).replace("$namespace", ".+")
        deadline = 30
        values: list[str] = []
        while deadline and want not in values:
            values = prometheus.get(f"/api/v1/label/{name}/values", **{"match[]": selector})
            deadline -= 1
        assert want in values


def test_operator_queries_parse_and_name_exported_series(prometheus: PrometheusServer) -> None:
    from roomcast_operator.metrics import OperatorMetrics

    exported = {m.name for m in OperatorMetrics().registry.collect()}
    for title, expr in panel_queries(load("operator-releases.json")):
        prometheus.query(expr)  # a PromQL error fails the answer's status
        for name in metric_names(expr):
            family = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert family in exported, f"{title!r} reads {name}, which the operator does not export"


@pytest.mark.asyncio(loop_scope="module")
async def test_server_queries_name_exported_series(
    traffic: list[Client], prometheus: PrometheusServer
) -> None:
    """A counter is exported once it has counted: the traffic makes every one count."""
    names = set(await asyncio.to_thread(prometheus.get, "/api/v1/label/__name__/values"))
    for title, expr in panel_queries(load("server-fleet.json")):
        for name in metric_names(expr):
            assert name in names, f"{title!r} reads {name}, which no server exported"


def test_chart_ships_each_dashboard_as_a_sidecar_configmap(helm: str) -> None:
    assert not [
        o for o in by_kind(render_chart(helm), "ConfigMap") if "dashboard" in o["metadata"]["name"]
    ]
    objects = render_chart(helm, sets=["dashboards.enabled=true"])
    maps = [o for o in by_kind(objects, "ConfigMap") if "dashboard" in o["metadata"]["name"]]
    shipped = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        for key, text in config_map["data"].items():
            shipped[key] = json.loads(text)
    assert shipped == {
        f"roomcast-{path.name}": json.loads(path.read_text()) for path in DASHBOARDS.glob("*.json")
    }
    assert {d["uid"] for d in shipped.values()} == {
        "roomcast-server-fleet",
        "roomcast-operator-releases",
    }


@pytest.mark.parametrize("name", ["server-fleet.json", "operator-releases.json"])
def test_dashboard_layout_is_what_grafana_expects(name: str) -> None:
    """Unique panel ids and refIds, the data source variable everywhere, panels inside the
    24-column grid and not on top of each other."""
    dashboard = load(name)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range"}
            assert used <= variables, f"{panel['title']}: {used - variables}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
