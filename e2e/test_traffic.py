"""Real WebSocket traffic through the Roomcast Service of an installed release (kind).

A client Pod, running the Roomcast image itself (it carries Python and aiohttp), opens
several connections to the Service's DNS name, so they go through cluster DNS and the
Service's load balancing to the server pods, and each sends a Centrifugo-protocol
connect command and waits for the reply to it.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from e2e.bed import eventually
from e2e.cluster import Cluster
from e2e.kube import Obj

pytestmark = pytest.mark.release

CONNECTIONS = 20

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    import aiohttp

    URL, COUNT = sys.argv[1], int(sys.argv[2])

    async def one(session, n):
        async with session.ws_connect(URL, timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
            await ws.send_str(json.dumps({"id": 1, "connect": {"name": f"e2e-{n}"}}))
            message = await ws.receive(timeout=20)
            for line in str(message.data).splitlines():
                reply = json.loads(line)
                if reply.get("id") == 1:
                    return "connect" in reply or "error" in reply
            return False

    async def main():
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(one(session, n) for n in range(COUNT)))
        print(json.dumps({"replies": sum(results), "connections": COUNT}))
        return 0 if all(results) else 1

    sys.exit(asyncio.run(main()))
    """
)


def service_url(cluster: Cluster) -> str:
    release = os.environ["ROOMCAST_E2E_RELEASE"]
    namespace = os.environ.get("ROOMCAST_E2E_RELEASE_NAMESPACE", "roomcast")
    name = os.environ.get("ROOMCAST_E2E_SERVICE", release)
    path = os.environ.get("ROOMCAST_E2E_WS_PATH", "/connection/websocket")
    service = cluster.kube.get("service", name, namespace)
    ports = service["spec"]["ports"]
    port = next((p for p in ports if p.get("name") in ("http", "ws")), ports[0])["port"]
    return f"ws://{name}.{namespace}.svc.cluster.local:{port}{path}"


def test_websocket_connections_through_the_service(cluster: Cluster, namespace: str) -> None:
    image = os.environ.get("ROOMCAST_E2E_IMAGE", "roomcast:e2e")
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ws-client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", CLIENT, service_url(cluster), str(CONNECTIONS)],
                }
            ],
        },
    }
    cluster.kube.create(pod, namespace)

    def finished() -> str | None:
        phase: str | None = cluster.kube.get("pod", "ws-client", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = eventually(finished, cluster.timeout_seconds, interval_seconds=1, what="client done")
    logs = cluster.kube.run("logs", "ws-client", "-n", namespace).stdout
    assert phase == "Succeeded", logs
    summary = json.loads(logs.strip().splitlines()[-1])
    assert summary == {"replies": CONNECTIONS, "connections": CONNECTIONS}
