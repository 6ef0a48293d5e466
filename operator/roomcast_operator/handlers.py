"""kopf wiring: watch events in, reconcile passes out. No decisions here.

Only ``on.event`` handlers and an operator-wide resync task are used, so kopf keeps no
state on the objects (no finalizers, no progress annotations): everything the operator
knows is in the RoomcastCluster's status and its ControllerRevisions.

With leader election on, every process watches but only the Lease holder reconciles;
events it sees while standing by are not lost, the first resync after it is elected
reads everything afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from . import GROUP, KIND, PLURAL, VERSION
from .kube import Kube
from .leader import LeaderElector, LeaseConfig, default_identity
from .reconcile import Reconciler
from .settings import OperatorSettings

MANAGED = {"app.kubernetes.io/managed-by": "roomcast-operator"}
INSTANCE_LABEL = "app.kubernetes.io/instance"
log = logging.getLogger("roomcast_operator")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.scanning.disabled = True
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    config = OperatorSettings.from_environ()
    kube = Kube()
    elector: LeaderElector | None = None
    if config.leader_election:
        lease = LeaseConfig(
            name=config.lease_name,
            namespace=config.lease_scope(),
            identity=default_identity(),
            duration_seconds=config.lease_duration_seconds,
            renew_seconds=config.lease_renew_seconds,
            deadline_seconds=config.lease_deadline_seconds,
            retry_seconds=min(5.0, config.lease_renew_seconds),
        )
        elector = LeaderElector(kube, lease, time.monotonic)
        memo["elector"] = elector
        memo["election"] = asyncio.create_task(
            elector.run(lambda: _lost_leadership(memo)), name="roomcast-leader-election"
        )
    reconciler = Reconciler(kube, config, elector.is_leader if elector else lambda: True)
    memo["reconciler"] = reconciler
    memo["resync"] = asyncio.create_task(reconciler.resync(), name="roomcast-resync")


def _lost_leadership(memo: kopf.Memo) -> None:
    """Stop the operator: its replacement starts as a candidate with a clean slate."""
    memo["lost_leadership"] = True
    stop = memo.get("stop_flag")
    if isinstance(stop, asyncio.Event):
        stop.set()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("resync", "election"):
        task = memo.get(name)
        if isinstance(task, asyncio.Task):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    elector = memo.get("elector")
    if isinstance(elector, LeaderElector):
        await elector.release()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def cluster_changed(
    type: str, name: str, namespace: str | None, body: Any, memo: Any, **_: Any
) -> None:
    if type == "DELETED" or not namespace:
        return
    reconciler = _reconciler(memo)
    if reconciler.own_write(KIND, namespace, name, _version(body)):
        return  # our own status write coming back
    await reconciler.trigger(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_changed(
    labels: Mapping[str, str], name: str, namespace: str | None, body: Any, memo: Any, **_: Any
) -> None:
    await _child_changed("Deployment", labels, name, namespace, body, memo)


@kopf.on.event("v1", "pods", labels=MANAGED)
async def pod_changed(
    labels: Mapping[str, str], name: str, namespace: str | None, body: Any, memo: Any, **_: Any
) -> None:
    await _child_changed("Pod", labels, name, namespace, body, memo)


async def _child_changed(
    kind: str, labels: Mapping[str, str], name: str, namespace: str | None, body: Any, memo: Any
) -> None:
    owner = labels.get(INSTANCE_LABEL)
    if not owner or not namespace:
        return
    reconciler = _reconciler(memo)
    if reconciler.own_write(kind, namespace, name, _version(body)):
        return  # a mark or apply of ours coming back
    await reconciler.trigger(namespace, owner)


def _version(body: Any) -> str:
    return str(((body or {}).get("metadata") or {}).get("resourceVersion", ""))


def _reconciler(memo: Any) -> Reconciler:
    reconciler = memo["reconciler"]
    assert isinstance(reconciler, Reconciler)
    return reconciler


logging.getLogger("kubernetes").setLevel(logging.WARNING)
