"""Prometheus metrics of one node.

Hot-path counters are plain integers on ``Metrics`` (an attribute increment per
event); a custom collector turns them into Prometheus samples at scrape time.
Names carry units, and the families are what the operator's health checks read:
connect errors, terminal disconnects, failed recoveries, publish latency and
engine errors.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .codes import is_terminal_disconnect

LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """Counters of one node; the gauges are read from callbacks at scrape time.

    A gauge of ``labelled_gauges`` has one label; its callback returns the reading of
    each label value from counts its owner keeps as things happen, so a scrape counts
    nothing and no event looks a label up.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = 0
        self.publications: Counter[str] = Counter()  # by source: client, api
        self.commands: Counter[tuple[str, str]] = Counter()  # (method, result)
        self.disconnects: Counter[int] = Counter()
        self.connects: Counter[str] = Counter()  # accepted, rejected
        self.connect_errors: Counter[int] = Counter()  # rejected connects by error code
        self.recoveries: Counter[str] = Counter()  # recovered, failed
        self.emulation_requests: Counter[str] = Counter()  # /emulation requests by outcome
        self.engine_errors = 0
        self.gauges: dict[str, Callable[[], float]] = {}
        self.labelled_gauges: dict[str, tuple[str, Callable[[], Mapping[str, float]]]] = {}
        self.publish_latency = Histogram(
            "roomcast_publish_to_write_seconds",
            "Time from accepting a publication (with Redis: from its arrival from Redis) "
            "to writing it to subscribers' sockets.",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._latency_pending: list[float] = []
        self.registry.register(_Collector(self))

    def track_publish_latency(self, created: float) -> None:
        """Remember a fanned-out publication; observed when its frames are written."""
        self._latency_pending.append(created)

    def frames_written(self) -> None:
        """Called once per flush of all outboxes."""
        if self._latency_pending:
            now = time.monotonic()
            for created in self._latency_pending:
                self.publish_latency.observe(now - created)
            self._latency_pending.clear()

    def count_disconnect(self, code: int) -> None:
        self.disconnects[code] += 1

    def register_engine(self, engine: object) -> None:
        """Export an engine's own metrics (Redis round trips, reconnects) beside ours."""
        collector = getattr(engine, "metrics_collector", None)
        if collector is not None:
            self.registry.register(collector)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        for name, read in m.gauges.items():
            gauge = GaugeMetricFamily(f"roomcast_{name}", _GAUGE_HELP.get(name, name))
            gauge.add_metric([], read())
            yield gauge
        for name, (label, read_each) in m.labelled_gauges.items():
            gauge = GaugeMetricFamily(
                f"roomcast_{name}", _GAUGE_HELP.get(name, name), labels=[label]
            )
            for value, n in sorted(read_each().items()):
                gauge.add_metric([value], n)
            yield gauge
        yield _counter("roomcast_deliveries", "Messages written to subscribers.", m.deliveries)
        yield _counter("roomcast_engine_errors", "Failed engine operations.", m.engine_errors)
        labelled: list[tuple[str, str, list[str], dict[tuple[str, ...], int]]] = [
            (
                "roomcast_publications",
                "Publications accepted.",
                ["source"],
                {(source,): n for source, n in m.publications.items()},
            ),
            (
                "roomcast_commands",
                "Client commands by method and result.",
                ["method", "result"],
                {key: n for key, n in m.commands.items()},
            ),
            (
                "roomcast_disconnects",
                "Connections closed by the server, by code.",
                ["code", "terminal"],
                {
                    (str(code), str(is_terminal_disconnect(code)).lower()): n
                    for code, n in m.disconnects.items()
                },
            ),
            (
                "roomcast_connects",
                "Connect attempts by result.",
                ["result"],
                {(result,): n for result, n in m.connects.items()},
            ),
            (
                "roomcast_connect_errors",
                "Rejected connect attempts by the error code replied (an expired token is "
                "the client's, an internal error the server's).",
                ["code"],
                {(str(code),): n for code, n in m.connect_errors.items()},
            ),
            (
                "roomcast_recoveries",
                "Subscribe-time recoveries by result.",
                ["result"],
                {(result,): n for result, n in m.recoveries.items()},
            ),
            (
                "roomcast_emulation_requests",
                "Emulation requests (commands of HTTP-streaming and SSE connections) by outcome.",
                ["outcome"],
                {(outcome,): n for outcome, n in m.emulation_requests.items()},
            ),
        ]
        for name, doc, labels, values in labelled:
            family = CounterMetricFamily(name, doc, labels=labels)
            for label_values, n in sorted(values.items()):
                family.add_metric(list(label_values), n)
            yield family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


_GAUGE_HELP = {
    "emulation_sessions": "HTTP-streaming and SSE connections on this node, by transport.",
    "connections": "Open client connections on this node.",
    "subscriptions": "Channel subscriptions on this node.",
    "channels": "Channels with subscribers on this node.",
    "draining": "1 while the node drains connections for shutdown.",
    "engine_available": "1 while the engine's backing store is reachable.",
    "tasks": "asyncio tasks of the process (a leak shows as growth).",
}
