"""`helm test` check: the release the chart asked for is what runs.

`helm upgrade --wait` returns once the objects exist; the operator judges the release
afterwards and may roll it back. This waits until the RoomcastCluster has acted on its
current spec and finished rolling out, and fails when the cluster reports RolledBack
(the spec's release failed and an older one runs) or Degraded, printing the operator's
reason. Runs in the Roomcast image (the Kubernetes client is there for the operator),
with a ServiceAccount that may only read RoomcastClusters in its namespace.
"""

import os
import sys
import time

from kubernetes import client, config

NAME = os.environ["ROOMCAST_CLUSTER"]
NAMESPACE = os.environ["ROOMCAST_NAMESPACE"]
TIMEOUT = float(os.environ.get("ROOMCAST_TEST_TIMEOUT_SECONDS", "600"))


def conditions(cluster: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (cluster.get("status") or {}).get("conditions") or []}


def verdict(cluster: dict) -> tuple[bool | None, str]:
    """(True: passed, False: failed, None: not decided yet), and why."""
    found = conditions(cluster)
    for kind in ("RolledBack", "Degraded"):
        cond = found.get(kind, {})
        if cond.get("status") == "True":
            return False, f"{kind}: {cond.get('reason')}: {cond.get('message')}"
    status = cluster.get("status") or {}
    if status.get("observedGeneration") != cluster["metadata"].get("generation"):
        return None, "the operator has not acted on the current spec yet"
    progressing = found.get("Progressing", {})
    if progressing.get("status") == "True":
        return None, f"rolling out: {progressing.get('reason')}: {progressing.get('message')}"
    ready = found.get("Ready", {})
    if ready.get("status") != "True":
        return None, f"not Ready: {ready.get('reason')}: {ready.get('message')}"
    return True, f"revision {status.get('currentRevision')} runs the spec and is Ready"


def main() -> int:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    deadline = time.monotonic() + TIMEOUT
    last = ""
    while True:
        cluster = api.get_namespaced_custom_object(
            "roomcast.io", "v1alpha1", NAMESPACE, "roomcastclusters", NAME
        )
        passed, why = verdict(cluster)
        if why != last:
            print(f"{NAMESPACE}/{NAME}: {why}", flush=True)
            last = why
        if passed is not None:
            return 0 if passed else 1
        if time.monotonic() >= deadline:
            print(f"undecided after {TIMEOUT:.0f}s", file=sys.stderr)
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
