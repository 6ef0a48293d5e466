"""What runs on the real node besides Roomcast: a Redis pod; and reaching into containers.

Pods here select and tolerate the real node (:data:`ON_REAL_NODE`); everything else in
the bed goes to the kwok nodes.
"""

from __future__ import annotations

import os
import signal

from e2e import node as real_node
from e2e.kube import Kube, Obj
from e2e.pods.images import REDIS_IMAGE

ON_REAL_NODE: Obj = {
    "nodeSelector": {"roomcast.io/bed-node": real_node.NODE_LABELS["roomcast.io/bed-node"]},
    "tolerations": [{"key": real_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


def redis_objects(name: str) -> list[Obj]:
    """A Redis Deployment on the real node with AOF (fsync always) and a ClusterIP Service.

    The AOF lives in an emptyDir, which survives a container restart (a killed process)
    but not the pod's deletion, as on any node.
    """
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **ON_REAL_NODE,
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "redis",
                                "image": REDIS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "redis-server",
                                    "--protected-mode",
                                    "no",
                                    "--appendonly",
                                    "yes",
                                    "--appendfsync",
                                    "always",
                                    "--save",
                                    "",
                                    "--dir",
                                    "/data",
                                ],
                                "ports": [{"name": "redis", "containerPort": 6379}],
                                "readinessProbe": {
                                    "exec": {"command": ["redis-cli", "ping"]},
                                    "periodSeconds": 1,
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
            },
        },
    ]


def start_redis(kube: Kube, namespace: str, name: str = "redis", timeout: float = 120) -> str:
    """Run Redis on the real node; return its URL by ClusterIP (the bed runs no DNS)."""
    for obj in redis_objects(name):
        kube.apply(obj, namespace)
    kube.run(
        "rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={int(timeout)}s"
    )
    ip = kube.get("service", name, namespace)["spec"]["clusterIP"]
    return f"redis://{ip}:6379/0"


def pods(kube: Kube, namespace: str, selector: str) -> list[Obj]:
    return kube.items("pods", namespace, selector=selector)


def container_pid(layout: real_node.NodeLayout, pod: Obj) -> int:
    """The host pid of a pod's first container's main process."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    for line in real_node.ctr(layout, "tasks", "ls").splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == container_id:
            return int(parts[1])
    raise LookupError(f"no running task for {pod['metadata']['name']}")


def kill_container(layout: real_node.NodeLayout, pod: Obj) -> int:
    """SIGKILL a container's main process, as the kernel's OOM killer would."""
    pid = container_pid(layout, pod)
    os.kill(pid, signal.SIGKILL)
    return pid


def restarts(pod: Obj) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", []))
