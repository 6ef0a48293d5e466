"""kopf wiring: watch events in, reconcile passes out. No decisions here.

Only ``on.event`` handlers and an operator-wide resync task are used, so kopf keeps no
state on the objects (no finalizers, no progress annotations): everything the operator
knows is in the RoomcastCluster's status and its ControllerRevisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from . import GROUP, PLURAL, VERSION
from .kube import Kube
from .reconcile import Reconciler
from .settings import OperatorSettings

MANAGED = {"app.kubernetes.io/managed-by": "roomcast-operator"}
INSTANCE_LABEL = "app.kubernetes.io/instance"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.scanning.disabled = True
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    config = OperatorSettings.from_environ()
    reconciler = Reconciler(Kube(), config)
    memo["reconciler"] = reconciler
    memo["resync"] = asyncio.create_task(reconciler.resync(), name="roomcast-resync")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if isinstance(task, asyncio.Task):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def cluster_changed(type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if type != "DELETED" and namespace:
        await _reconciler(memo).trigger(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "pods", labels=MANAGED)
async def child_changed(
    labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    owner = labels.get(INSTANCE_LABEL)
    if owner and namespace:
        await _reconciler(memo).trigger(namespace, owner)


def _reconciler(memo: Any) -> Reconciler:
    reconciler = memo["reconciler"]
    assert isinstance(reconciler, Reconciler)
    return reconciler


logging.getLogger("kubernetes").setLevel(logging.WARNING)
