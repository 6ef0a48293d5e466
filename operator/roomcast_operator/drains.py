"""Paced drains across the fleet: at most ``drain.maxDrainingPods`` pods terminating at once.

A terminating pod drains its clients (preStop, then closes paced over
``drainWindowSeconds``) and they reconnect to the others: each pod draining at once adds
its clients to the reconnect storm. Kubernetes bounds none of the ways pods terminate by
how many already are:

* a rolling update: a ReplicaSet does not count its terminating pods, so the Deployment
  removes the next old pod as soon as the next new one is Ready, however many old pods are
  still draining (pods that start faster than they drain pile up), and removes as many at
  once as there are new pods Ready beyond the replica count (up to ``maxSurge``);
* a lower replica count: the ReplicaSet deletes every surplus pod at once;
* evictions: only a PodDisruptionBudget governs them.

What bounds a rollout is time: new pods count as available only
``render.min_ready_seconds`` after they are Ready, which is what a drain takes (preStop,
the drain window, the exit). With ``maxUnavailable: 0`` the Deployment removes an old pod
only for a new one available, and creates a new pod only for an old one removed; so each
old pod's removal waits for a new pod created no earlier than the previous removal, plus
its start and a whole drain, by when that drain is over. Each of ``maxSurge`` such chains
has one pod draining at a time, in every step, the controller's last one (scaling the old
ReplicaSet to zero once the new one is available) included; so the operator caps the
rendered ``maxSurge`` at the limit. The cost is a drain period (plus a pod's start) per
step, where the controller alone would take a start.

Only a rollout needs that wait: a first install or a scale-out has no old pod to remove,
and the wait would only hold back the moment new pods count as available (what
``helm install --wait`` and ``kubectl rollout status`` wait for). So the rendered
``minReadySeconds`` is kept from the write that changes the pod template until the old
ReplicaSets have no pod left to give up, and is 0 otherwise (:func:`pace`).

The operator does not pause a rollout while pods drain: a paused Deployment still scales
its ReplicaSets up to ``replicas + maxSurge`` (the surplus to the largest), so a pause
late in a rollout adds a pod that the resumed rollout removes again, one more drain. A
lower replica count it owns comes down one allowed step at a time
(:func:`replicas_step`), since a ReplicaSet deletes every surplus pod at once; and the
PodDisruptionBudget's ``maxUnavailable`` is the limit for evictions. These are pure
functions over what a pass observed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # health imports render, which renders maxSurge from here
    from .health import PodState


Obj = dict[str, Any]

#: On the Deployment: a digest of the pod template it was last given, so that the write
#: that changes the template, and so starts a rollout, is known to be one.
TEMPLATE_DIGEST_ANNOTATION = "roomcast.io/pod-template-digest"


def template_digest(template: Obj) -> str:
    """A digest of a rendered pod template (the API server's defaults are not in it)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rolling(live: Obj | None, rendered: Obj) -> bool:
    """Whether applying ``rendered`` over the ``live`` Deployment starts a rollout or
    continues one: a new pod template, or old ReplicaSets that still have pods."""
    if live is None:
        return False  # a first install: no old pod to replace
    digest = rendered["metadata"]["annotations"][TEMPLATE_DIGEST_ANNOTATION]
    if (live["metadata"].get("annotations") or {}).get(TEMPLATE_DIGEST_ANNOTATION) != digest:
        return True
    status = live.get("status") or {}
    if status.get("observedGeneration", 0) < live["metadata"].get("generation", 0):
        # the controller has not acted on the last write yet: keep what it was given
        return bool((live.get("spec") or {}).get("minReadySeconds"))
    return int(status.get("replicas", 0)) > int(status.get("updatedReplicas", 0))


def pace(children: list[Obj], live: Obj | None) -> None:
    """Keep the rendered Deployment's ``minReadySeconds`` (a drain) only while it rolls."""
    for child in children:
        if child["kind"] == "Deployment" and not rolling(live, child):
            child["spec"]["minReadySeconds"] = 0


def draining(pods: Sequence[PodState]) -> int:
    """Pods terminating now (from their deletion until they are gone)."""
    return sum(1 for pod in pods if pod.terminating)


def max_surge(configured: int | str, replicas: int, max_draining: int) -> int | str:
    """``maxSurge`` as rendered: the configured value, or ``max_draining`` when that is
    fewer pods. With ``maxUnavailable: 0`` a Deployment removes at most as many old pods
    in one step as it has new ones Ready beyond the replica count, so capping the surge
    caps the drains one step starts; more surge pods would only wait for the drains."""
    wanted = configured if isinstance(configured, int) else _surge_pods(configured, replicas)
    return configured if wanted <= max_draining else max_draining


def _surge_pods(text: str, replicas: int) -> int:
    """A maxSurge string in pods: a percentage of ``replicas`` rounded up, as Kubernetes
    rounds it, or a number."""
    text = text.strip()
    return math.ceil(replicas * float(text[:-1]) / 100) if text.endswith("%") else int(text)


def replicas_step(target: int, current: int | None, draining_now: int, max_draining: int) -> int:
    """The replica count to apply on the way to ``target`` from the Deployment's
    ``current`` one: scaling out at once, scaling in by no more pods than may still start
    draining (none while the limit is reached; the next pass, on the pod's deletion,
    takes the next step)."""
    if current is None or target >= current:
        return target
    room = max(0, max_draining - draining_now)
    return max(target, current - room)
