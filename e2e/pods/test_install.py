"""``helm install`` on the real node: the official SDKs talk across three pods on Redis.

The chart is installed with the locally built image; the operator (a host process with
the chart's ServiceAccount) creates three server pods on the real node, which use a Redis
pod through its ClusterIP. centrifuge-python clients and a centrifuge-js client connect
through the Service, land on all three pods, publish and receive each other's messages.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from centrifuge import Client
from tests.jsclient import JsClient, js_sdk_available

from e2e import node as real_node
from e2e.bed import eventually
from e2e.pods.images import IMAGE
from e2e.pods.release import Release, chart_values
from e2e.pods.report import write_report
from e2e.pods.traffic import NAMESPACE, SubLog, connection_token
from e2e.pods.watch import scrape
from e2e.pods.workloads import start_redis

pytestmark = pytest.mark.skipif(
    not js_sdk_available(), reason="node or tests/js/node_modules missing: run `make install`"
)


async def test_python_and_js_clients_across_three_pods(release: Release) -> None:
    started = time.monotonic()
    redis_url = start_redis(release.kube, release.namespace)
    channel = f"{NAMESPACE}:lobby"
    release.install(chart_values(redis_url))
    release.wait_serving(IMAGE, timeout=180)
    installed_s = time.monotonic() - started

    server_pods = release.server_pods()
    assert len(server_pods) == 3
    assert {p["spec"]["nodeName"] for p in server_pods} == {real_node.NODE_NAME}
    assert all(p["status"]["phase"] == "Running" for p in server_pods)
    pod_ips = [p["status"]["podIP"] for p in server_pods]
    assert all(ip.startswith(real_node.POD_SUBNET.rsplit(".", 2)[0]) for ip in pod_ips), pod_ips

    ws_url, _ = release.urls()
    secret = release.secret("token-hmac-secret")
    # 30 connections: the chance that random Service routing leaves a pod out is 1.5e-5.
    inboxes = [SubLog(channel) for _ in range(30)]
    clients = [
        Client(ws_url, token=connection_token(secret, f"py{i}"), max_reconnect_delay=1.0)
        for i in range(len(inboxes))
    ]
    js = await JsClient.start()
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        subscriptions = [
            c.new_subscription(channel, events=inbox)
            for c, inbox in zip(clients, inboxes, strict=True)
        ]
        await asyncio.gather(*(s.subscribe() for s in subscriptions))
        await asyncio.gather(*(s.ready(10) for s in subscriptions))
        await js.call("connect", url=ws_url, token=connection_token(secret, "js"))
        await js.wait(lambda e: e.get("event") == "connected", 20)
        await js.call("subscribe", channel=channel)
        await js.wait(lambda e: e.get("event") == "subscribed" and e.get("channel") == channel, 20)

        # The Service spread the connections over every pod (checked on the pods).
        def spread() -> list[float]:
            counts = [scrape(ip)["roomcast_connections"] for ip in pod_ips]
            assert sum(counts) == len(clients) + 1 and all(counts), counts
            return counts

        # Off the event loop: a blocked loop would miss the server's pings.
        per_pod = await asyncio.to_thread(
            eventually, spread, 30, what="connections on all three pods"
        )

        # Each Python client publishes once, the JS client once: everyone gets all of them.
        for i, sub in enumerate(subscriptions):
            await sub.publish({"from": f"py{i}"})
        await js.call("publish", channel=channel, data={"from": "js"})
        expected = {f"py{i}" for i in range(len(clients))} | {"js"}

        def everyone_has_all() -> bool:
            js_got = {
                e["data"]["from"]
                for e in js.events
                if e.get("event") == "publication" and e.get("channel") == channel
            }
            return js_got == expected and all(
                {d["from"] for _, d in inbox.deliveries} == expected for inbox in inboxes
            )

        await asyncio.to_thread(
            eventually, everyone_has_all, 20, what="every client received every publication"
        )
    finally:
        await js.close()
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    write_report(
        "install",
        {
            "install_to_serving_seconds": round(installed_s, 1),
            "connections_per_pod": per_pod,
            "publications": len(expected),
        },
    )
