"""A fleet projected from the measured per-core costs: 1 M connections, 500,000 deliveries/s.

Calibrated from this run's medians for each server: memory per idle connection, CPU per
connect (with JWT), CPU per delivery (rooms through Redis over three processes when that
case ran, else one process at one frame per write) and the fresh process's memory. The
assumptions are stated in the output and kept deliberately simple: every server process
uses one core (Centrifugo's figures come from GOMAXPROCS=1), cores run at 60%, server
pings every 25 s cost one delivery each, clients reconnect at Centrifugo's test rate,
publications go to rooms of 2,000, and every pod takes each publication once from Redis.
"""

from __future__ import annotations

import math
from typing import Any

CONNECTIONS = 1_000_000
DELIVERIES_PER_S = 500_000
RECONNECTS_PER_S = 200_000 / 60  # Centrifugo's million-connection test: 200,000 a minute
PING_INTERVAL_S = 25.0
CORE_UTILISATION = 0.6
ROOM = 2_000
REDIS_MESSAGES_PER_SHARD_S = 100_000  # an assumption: one Redis core fanning out pub/sub

#: Centrifugo's own published million-connection test, in words (their blog, 2020).
PUBLISHED = {
    "pods": 20,
    "redis_shards": 5,
    "connections": 1_000_000,
    "deliveries_per_s": 28_000_000 / 60,
    "p99_ms": 200,
    "text": (
        "Centrifugo's team described a Kubernetes test in their 2020 blog post on a million "
        "connections: 20 pods of a Centrifuge-based server with the Redis engine sharded over "
        "5 Redis instances (at most one CPU each), 1 million WebSocket connections speaking "
        "the Protobuf protocol, each subscribed to a personal channel and a group channel of "
        "10, about 28 million messages a minute (about 470,000/s) delivered with p99 under "
        "200 ms, while 200,000 clients a minute reconnected."
    ),
}


def _median(results: dict[str, Any], case_prefix: str, peer: str, metric: str) -> float | None:
    for name, case in results.get("cases", {}).items():
        if not name.startswith(case_prefix):
            continue
        summary = (case["peers"].get(peer) or {}).get("summary") or {}
        if metric in summary:
            return float(summary[metric]["median"])
    return None


def project(results: dict[str, Any]) -> dict[str, Any]:
    assumptions = {
        "connections": CONNECTIONS,
        "deliveries_per_s": DELIVERIES_PER_S,
        "reconnects_per_s": round(RECONNECTS_PER_S),
        "ping_interval_s": PING_INTERVAL_S,
        "core_utilisation": CORE_UTILISATION,
        "room": ROOM,
        "redis_messages_per_shard_s": REDIS_MESSAGES_PER_SHARD_S,
    }
    rows: dict[str, Any] = {}
    for peer in results.get("peers", []):
        name = peer["name"]
        if name == "centrifugo-2":
            continue  # per-core costs come from the pinned GOMAXPROCS=1 row
        memory = _median(results, "idle-", name, "rss_kib_per_conn")
        connect = _median(results, "handshake", name, "cpu_us_per_connect")
        redis = _median(results, "redis-", name, "cpu_us_per_delivery")
        single = None
        for name_case in sorted(results.get("cases", {}), key=lambda n: (len(n), n)):
            if name_case.startswith("fanout-") and name_case.endswith("-single"):
                single = _median(results, name_case, name, "cpu_us_per_delivery")
                break
        delivery = redis if redis is not None else single
        fresh = _median(results, "idle-", name, "rss_mib_fresh") or 0.0
        if memory is None or connect is None or delivery is None:
            continue
        pings_per_s = CONNECTIONS / PING_INTERVAL_S if name != "ws" else 0.0
        cpu_s = ((DELIVERIES_PER_S + pings_per_s) * delivery + RECONNECTS_PER_S * connect) / 1e6
        cores = cpu_s / CORE_UTILISATION
        pods = max(1, math.ceil(cores))
        memory_gib = (CONNECTIONS * memory / 1024 + pods * fresh) / 1024
        publications = DELIVERIES_PER_S / ROOM
        shards = max(1, math.ceil(publications * pods / REDIS_MESSAGES_PER_SHARD_S))
        source = "through Redis" if redis is not None else "one process"
        rows[name] = {
            "title": peer["title"],
            "inputs": {
                "kib_per_connection": memory,
                "cpu_us_per_connect": connect,
                "cpu_us_per_delivery": delivery,
                "delivery_source": source,
                "fresh_mib": fresh,
            },
            "inputs_text": (
                f"{memory:.1f} KiB/conn, {connect:.0f} µs/connect, "
                f"{delivery:.2f} µs/delivery ({source})"
            ),
            "cores": cores,
            "pods": pods,
            "memory_gib": memory_gib,
            "redis_shards": shards,
        }
    return {"assumptions": assumptions, "peers": rows, "published": PUBLISHED}
