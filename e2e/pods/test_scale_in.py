"""Scale-in removes the emptiest pod, not the one Kubernetes would pick by itself.

Left alone, the ReplicaSet controller removes the newest of equally ranked pods, whatever
it carries. The operator annotates every pod with ``controller.kubernetes.io/
pod-deletion-cost`` from its scraped connection count (bucketed by powers of two), and the
controller removes the cheapest pod instead.

To make the default choice the worst one, the test loads the *newest* pod: its clients
connect to that pod's address directly. That is set-up only; what is under test (the
operator's annotations and the ReplicaSet's choice) never sees how they got there.
"""

from __future__ import annotations

import asyncio

from centrifuge import Client

from e2e.bed import eventually
from e2e.pods.images import IMAGE
from e2e.pods.release import Release, chart_values
from e2e.pods.report import write_report
from e2e.pods.traffic import ClientLog, connection_token
from e2e.pods.workloads import start_redis
from roomcast_operator.render import DELETION_COST_ANNOTATION, deletion_cost

CLIENTS = 40


async def test_scale_in_removes_the_emptiest_pod(release: Release) -> None:
    redis_url = start_redis(release.kube, release.namespace)
    release.install(chart_values(redis_url))
    release.wait_serving(IMAGE, timeout=180)
    pods = sorted(release.server_pods(), key=lambda p: p["metadata"]["creationTimestamp"])
    newest = pods[-1]
    name, ip = newest["metadata"]["name"], newest["status"]["podIP"]
    secret = release.secret("token-hmac-secret")
    logs = [ClientLog() for _ in range(CLIENTS)]
    clients = [
        Client(f"ws://{ip}:8000/connection/websocket", token=connection_token(secret, f"u{i}"),
               events=logs[i])
        for i in range(CLIENTS)
    ]  # fmt: skip
    try:
        await asyncio.gather(*(c.connect() for c in clients))

        def costs() -> dict[str, str]:
            return {
                p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                    DELETION_COST_ANNOTATION, ""
                )
                for p in release.server_pods()
            }

        def marked() -> dict[str, str] | None:
            found = costs()
            want = {n: str(deletion_cost(CLIENTS if n == name else 0)) for n in found}
            return found if found == want else None

        before = await asyncio.to_thread(eventually, marked, 60, what="deletion costs marked")
        release.patch_spec({"minReplicas": 2, "maxReplicas": 2})

        def scaled_in() -> set[str] | None:
            left = {
                p["metadata"]["name"]
                for p in release.server_pods()
                if not p["metadata"].get("deletionTimestamp")
            }
            return left if len(left) == 2 else None

        left = await asyncio.to_thread(eventually, scaled_in, 60, what="scaled in to two pods")
        await asyncio.sleep(2)
        assert name in left, f"the busiest pod {name} was removed; costs were {before}"
        assert all(log.reconnects == 0 and not log.lost_at for log in logs), (
            "clients on the kept pod were disturbed"
        )
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
    removed = sorted({p["metadata"]["name"] for p in pods} - left)
    write_report("scale-in", {"deletion_costs": before, "kept_busiest": name, "removed": removed})
