"""One reconcile pass for one RoomcastCluster: read the cluster, decide, write.

All decisions are in :mod:`releases` and :mod:`render`; this module only gathers their
inputs and carries out their outputs. A pass is idempotent and reads everything it
needs from the API server, so passes can be triggered freely (watch events, a resync
timer, an operator restart).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import (
    FIELD_MANAGER,
    GROUP,
    KIND,
    VERSION,
    applied,
    drains,
    podapi,
    podmetrics,
    rebalance,
    releases,
    render,
    scaling,
    validation,
)
from .applied import AppliedObjects
from .discovery import CapabilitiesUnknown, Discovery
from .health import DeploymentState, PodMetrics, PodState
from .kube import ApiError, Kube, collection_path, object_path
from .metrics import METRICS, OperatorMetrics
from .pacing import StatusPacer
from .releases import Event, Observed, Revision
from .render import Capabilities, Owner, Release
from .settings import OperatorSettings
from .spec import ClusterSpec, parse
from .windows import ScrapeMemory

Obj = dict[str, Any]
log = logging.getLogger("roomcast_operator")

ROLLBACK_ANNOTATION = "roomcast.io/rollback-to"
RCC_VERSION = f"{GROUP}/{VERSION}"
SERVER_PORT = 8000


def rollback_request(body: Obj) -> int | None:
    """``spec.rollbackTo`` or the ``roomcast.io/rollback-to`` annotation."""
    value = (body.get("spec") or {}).get("rollbackTo")
    if value is None:
        annotation = ((body["metadata"].get("annotations")) or {}).get(ROLLBACK_ANNOTATION)
        if annotation is not None and annotation.strip().isdigit():
            value = int(annotation)
    return int(value) if value is not None else None


def controller_revision(owner: Owner, revision: Revision) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{owner.name}-{revision.release.hash}",
            "namespace": owner.namespace,
            "labels": {
                **render.labels(owner.name),
                render.RELEASE_HASH_LABEL: revision.release.hash,
            },
            "ownerReferences": [owner.reference()],
        },
        "revision": revision.number,
        "data": revision.release.to_data(),
    }


class Conflict(Exception):
    """The RoomcastCluster changed after this pass read it; the pass is run again."""


ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)"""


class Reconciler:
    """Runs reconcile passes, at most one at a time per cluster, coalescing triggers.

    Only writes that change something are made (see :mod:`applied` and :mod:`pacing`),
    and the watch events the operator's own writes cause are recognised by their
    resourceVersion and do not start another pass, so a cluster at rest costs the API
    server reads only.
    """

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        leading: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics or METRICS
        self.leading = leading
        self._clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._pending: set[tuple[str, str]] = set()
        self.discovery = Discovery(kube.serves, settings.discovery_interval_seconds, clock)
        self.applied = AppliedObjects(settings.reapply_interval_seconds, clock)
        self._validated: dict[str, list[str]] = {}
        self._scrapes = ScrapeMemory()
        self._legacy_config_gone: set[tuple[str, str]] = set()
        self._own_versions: dict[ObjectKey, str] = {}
        self.status_pacer = StatusPacer(settings.connections_status_interval_seconds, clock)
        self.rebalancer = rebalance.Rebalancer(clock)

    def own_write(self, kind: str, namespace: str, name: str, resource_version: str) -> bool:
        """True if the object is exactly as this operator's last write left it."""
        return self._own_versions.get((kind, namespace, name)) == resource_version

    def _remember(self, kind: str, obj: Obj | None) -> None:
        meta = (obj or {}).get("metadata") or {}
        if meta.get("resourceVersion") and meta.get("name"):
            if len(self._own_versions) > 10000:
                self._own_versions.clear()
            key = (kind, meta.get("namespace", ""), meta["name"])
            self._own_versions[key] = meta["resourceVersion"]

    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile now, or right after the pass already running for this cluster."""
        if not self.leading():
            return
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            self._pending.add(key)
            return
        async with lock:
            while self.leading():
                self._pending.discard(key)
                try:
                    with self.metrics.reconcile(namespace, name):
                        await self.reconcile(namespace, name)
                except Conflict:
                    log.info("reconcile %s/%s: changed meanwhile, again", namespace, name)
                    self._pending.add(key)
                except (ApiError, CapabilitiesUnknown) as error:
                    log.warning("reconcile %s/%s: %s", namespace, name, error)
                if key not in self._pending:
                    break

    async def resync(self) -> None:
        """Reconcile every RoomcastCluster periodically: deadlines pass without events."""
        while True:
            if self.leading():
                try:
                    path = collection_path(RCC_VERSION, KIND, self.settings.namespace or None)
                    for item in await self.kube.list(path):
                        meta = item["metadata"]
                        await self.trigger(meta["namespace"], meta["name"])
                except Exception:
                    log.exception("resync failed")
            await asyncio.sleep(self.settings.resync_interval_seconds)

    async def capabilities(self) -> Capabilities:
        return await self.discovery.capabilities()

    def problems(self, spec: ClusterSpec, release: Release) -> list[str]:
        key = release.hash + str(spec.redis)
        if key not in self._validated:
            if len(self._validated) > 256:
                self._validated.clear()
            self._validated[key] = validation.problems(spec, release)
        return self._validated[key]

    async def reconcile(self, namespace: str, name: str) -> None:
        kube = self.kube
        path = object_path(RCC_VERSION, KIND, namespace, name)
        body = await kube.get(path)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.metrics.forget(namespace, name)
            self._scrapes.forget((namespace, name))
            self.rebalancer.forget((namespace, name))
            return  # the garbage collector removes the children
        meta = body["metadata"]
        owner = Owner(name, namespace, meta["uid"])
        spec = parse(body.get("spec") or {})
        spec_release = render.release_of(spec)
        problems = self.problems(spec, spec_release)
        now = datetime.now(UTC)

        selector = ",".join(f"{k}={v}" for k, v in render.selector_labels(name).items())
        revisions = [
            Revision(int(item["revision"]), Release.from_data(item["data"]))
            for item in await kube.list(
                collection_path("apps/v1", "ControllerRevision", namespace), selector
            )
        ]
        deployment = await kube.get(object_path("apps/v1", "Deployment", namespace, name))
        pods = await kube.list(collection_path("v1", "Pod", namespace), selector)
        metrics = await self._scrape(pods)
        status: Obj = body.get("status") or {}
        deployment_revision = None
        if deployment is not None:
            annotation = (deployment["metadata"].get("annotations") or {}).get(
                render.REVISION_ANNOTATION, ""
            )
            deployment_revision = int(annotation) if annotation.isdigit() else None
        observed = Observed(
            revisions=revisions,
            deployment=DeploymentState.from_object(deployment) if deployment else None,
            deployment_revision=deployment_revision,
            pods=[
                PodState.from_object(
                    p,
                    now,
                    metrics.get(p["metadata"]["name"]),
                    unscrapable=p["metadata"]["name"] in metrics
                    and metrics[p["metadata"]["name"]] is None,
                )
                for p in pods
            ],
            rollback_request=rollback_request(body),
            invalid_spec="; ".join(problems) if problems else None,
        )
        observed.samples = self._scrapes.record(
            (namespace, name), now, observed.pods, spec.rollout.health
        )
        plan = releases.decide(spec, meta.get("generation", 0), status, spec_release, observed, now)

        if plan.new_revision is not None:
            try:
                await kube.create(controller_revision(owner, plan.new_revision))
            except ApiError as error:
                if error.status != 409:
                    raise
        # The status is the operator's memory and records the decision before it is carried
        # out: a pass that fails halfway is finished by the next one, never re-decided.
        # The write names the resourceVersion the decision was made on: if anything
        # (another operator, a user) changed the cluster since, nothing is written and
        # the pass starts over from what is there now.
        connections = int(sum(m.connections for m in metrics.values() if m is not None))
        if self.status_pacer.to_write((namespace, name), status, plan.status, connections):
            patch = {
                "metadata": {"resourceVersion": meta["resourceVersion"]},
                "status": _with_nulls(status, plan.status),
            }
            try:
                written = await kube.merge_patch(path + "/status", patch)
            except ApiError as error:
                if error.status == 409:
                    raise Conflict() from error
                raise
            self._remember(KIND, written)
            self.status_pacer.written((namespace, name))
        self.metrics.record_pass(
            namespace,
            name,
            status,
            plan.status,
            pods=len(observed.pods),
            pods_draining=sum(p.terminating for p in observed.pods),
        )
        counts = {p.name: p.metrics.connections for p in observed.pods if p.metrics is not None}
        sheds = self.rebalancer.advance(
            (namespace, name), spec.rebalance, counts, _steady(plan, observed)
        )
        # Before the Service: pods made by an operator that had no serving label must
        # carry it before a selector that asks for it is applied.
        await self._mark_pods(
            namespace,
            pods,
            metrics,
            plan.run.number if plan.run else None,
            switch=spec.rollout.drain_to_new_release,
            out_of_service=self.rebalancer.out_of_service((namespace, name)),
        )
        if sheds:
            await self._shed(body, spec, pods, sheds)
        if plan.run is not None:
            await self._apply_children(
                owner,
                spec,
                plan.run,
                deployment,
                paused=plan.paused,
                draining=drains.draining(observed.pods),
            )
        if plan.clear_rollback_request:
            written = await kube.merge_patch(
                path,
                {
                    "metadata": {"annotations": {ROLLBACK_ANNOTATION: None}},
                    "spec": {"rollbackTo": None},
                },
            )
            self._remember(KIND, written)
        for event in plan.events:
            try:
                await self._post_event(body, event)
            except ApiError as error:
                log.warning(
                    "event %s for %s/%s not posted: %s", event.reason, namespace, name, error
                )
        await self._prune_revisions(owner, spec, plan.status, revisions)
        await self._drop_legacy_config(owner, pods)

    async def _apply_children(
        self,
        owner: Owner,
        spec: ClusterSpec,
        run: Revision,
        deployment: Obj | None,
        *,
        paused: bool = False,
        draining: int = 0,
    ) -> None:
        """Apply the children that changed; leave the replica count to an autoscaler.

        A replica count the operator owns comes down in steps of at most the pods that
        may still start draining (see :mod:`drains`)."""
        kube = self.kube
        capabilities = await self.capabilities()
        autoscaled = scaling.autoscaled(spec, capabilities)
        live = (deployment or {}).get("spec", {}).get("replicas")
        replicas = spec.min_replicas
        if not autoscaled:
            replicas = drains.replicas_step(
                spec.min_replicas, live, draining, spec.max_draining_pods
            )
        elif live is not None:
            replicas = live  # the autoscaler's count, which maxSurge is resolved against
        children = render.children(
            owner, spec, run.release, run.number, capabilities, replicas=replicas, paused=paused
        )
        drains.pace(children, deployment)
        handover_after: int | None = None
        if not autoscaled:
            scaling.set_replicas(children, replicas)
        elif deployment is None:
            # Created at minReplicas, then at once shared with the handover manager.
            scaling.set_replicas(children, spec.min_replicas)
            handover_after = spec.min_replicas
        else:
            scaling.set_replicas(children, None)
            if scaling.owns_replicas(deployment):
                await self._handover(deployment, (deployment.get("spec") or {}).get("replicas"))
        live_generation = (deployment or {}).get("metadata", {}).get("generation")
        for child in children:
            key = applied.key_of(child)
            body_digest = applied.digest(child)
            is_deployment = child["kind"] == "Deployment"
            generation = live_generation if is_deployment else None
            if is_deployment and deployment is None:
                generation = -1  # gone (deleted by hand): apply whatever was recorded
            if not self.applied.due(key, body_digest, generation):
                continue
            result = await kube.apply(child)
            self.applied.record(key, body_digest, result)
            if is_deployment:
                self._remember("Deployment", result)
                if handover_after is not None:
                    await self._handover(result, handover_after)
        for api_version, kind in render.obsolete_kinds(spec, capabilities):
            gone: Obj = {"apiVersion": api_version, "kind": kind}
            gone["metadata"] = {"namespace": owner.namespace, "name": owner.name}
            key = applied.key_of(gone)
            if self.applied.due(key, "absent"):
                await kube.delete(object_path(api_version, kind, owner.namespace, owner.name))
                self.applied.record(key, "absent")

    async def _handover(self, deployment: Obj, replicas: int | None) -> None:
        """Let the handover manager share spec.replicas (see :mod:`scaling`)."""
        if replicas is None:
            return
        try:
            await self.kube.apply(
                scaling.handover(deployment, replicas),
                field_manager=scaling.HANDOVER_MANAGER,
                force=False,
            )
        except ApiError as error:
            # 409: the autoscaler changed the count since it was read, and with that took
            # the field from every applier; nothing is left to hand over.
            if error.status != 409:
                raise

    async def _mark_pods(
        self,
        namespace: str,
        pods: list[Obj],
        metrics: dict[str, PodMetrics | None],
        revision: int | None,
        *,
        switch: bool = True,
        out_of_service: frozenset[str] = frozenset(),
    ) -> None:
        """One merge patch per pod that needs it, carrying both marks the operator keeps:

        * the serving label, which takes the old release's pods out of the Service once
          the release being rolled to (``revision``) can serve (unless ``switch`` is off),
          and the pods a rebalancing step keeps ``out_of_service`` (see :mod:`rebalance`);
        * the deletion cost from the pod's scraped connections, which the ReplicaSet
          controller reads to remove the emptiest pod on scale-in.
        """
        serving = render.serving_labels(pods, revision, switch) if revision is not None else {}
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            patch: Obj = {}
            label = "false" if meta["name"] in out_of_service else serving.get(meta["name"])
            if label is not None and (meta.get("labels") or {}).get(render.SERVING_LABEL) != label:
                patch["labels"] = {render.SERVING_LABEL: label}
            scraped = metrics.get(meta["name"])
            if scraped is not None:
                annotations = meta.get("annotations") or {}
                cost = cost_to_write(
                    annotations.get(render.DELETION_COST_ANNOTATION), scraped.connections
                )
                if cost is not None:
                    patch["annotations"] = {render.DELETION_COST_ANNOTATION: cost}
            if not patch:
                continue
            try:
                written = await self.kube.merge_patch(
                    object_path("v1", "Pod", namespace, meta["name"]), {"metadata": patch}
                )
            except ApiError as error:
                if error.status != 404:  # gone meanwhile: nothing to mark
                    raise
            else:
                self._remember("Pod", written)

    async def _shed(
        self, body: Obj, spec: ClusterSpec, pods: list[Obj], moves: dict[str, int]
    ) -> None:
        """Ask each pod in ``moves`` to move that many clients (the server API's ``shed``
        on the pod's own address, with the cluster's API key)."""
        meta = body["metadata"]
        ref = spec.api_key_secret
        if ref is None:  # the CRD refuses rebalance without it; an older object may lack it
            log.warning("%s/%s: rebalance needs apiKeySecretRef", meta["namespace"], meta["name"])
            return
        try:
            secret = await self.kube.get(object_path("v1", "Secret", meta["namespace"], ref.name))
        except ApiError as error:  # 403: an operator installed without the Secret rule
            log.warning("%s/%s: API key not read: %s", meta["namespace"], meta["name"], error)
            return
        encoded = ((secret or {}).get("data") or {}).get(ref.key)
        if encoded is None:
            log.warning("%s/%s: no key %s in Secret %s", meta["namespace"], meta["name"],
                        ref.key, ref.name)  # fmt: skip
            return
        api_key = base64.b64decode(encoded).decode()
        targets = [
            (p["metadata"]["name"], p["status"]["podIP"])
            for p in pods
            if p["metadata"]["name"] in moves and (p.get("status") or {}).get("podIP")
        ]
        window = spec.rebalance.window_seconds
        results = await asyncio.gather(
            *(podapi.shed(ip, SERVER_PORT, api_key, moves[pod], window) for pod, ip in targets)
        )
        moved = {pod: n for (pod, _), n in zip(targets, results, strict=True) if n is not None}
        message = f"moving {sum(moved.values())} clients over {window:.0f}s: " + ", ".join(
            f"{pod} {n}" for pod, n in sorted(moved.items())
        )
        try:
            await self._post_event(body, Event("Normal", "Rebalancing", message))
        except ApiError as error:
            log.warning("event Rebalancing not posted: %s", error)

    async def _scrape(self, pods: list[Obj]) -> dict[str, PodMetrics | None]:
        """Metrics of every pod with an address; None for those that did not answer."""
        if not self.settings.scrape_metrics:
            return {}
        targets = [
            (p["metadata"]["name"], p["status"]["podIP"])
            for p in pods
            if (p.get("status") or {}).get("podIP") and "deletionTimestamp" not in p["metadata"]
        ]
        timeout = self.settings.scrape_timeout_seconds
        results = await asyncio.gather(
            *(podmetrics.scrape(ip, SERVER_PORT, timeout) for _, ip in targets)
        )
        return {name: m for (name, _), m in zip(targets, results, strict=True)}

    async def _prune_revisions(
        self, owner: Owner, spec: ClusterSpec, status: Obj, revisions: list[Revision]
    ) -> None:
        """Delete the revisions beyond the history limit, and with them the ConfigMaps no
        kept revision mounts."""
        keep = {status.get(k) for k in ("currentRevision", "lastGoodRevision", "specRevision")}
        ordered = sorted(revisions, key=lambda r: r.number, reverse=True)
        pruned = [r for r in ordered[spec.revision_history_limit :] if r.number not in keep]
        kept_configs = {r.release.config_hash for r in revisions if r not in pruned}
        for revision in pruned:
            name = f"{owner.name}-{revision.release.hash}"
            await self.kube.delete(
                object_path("apps/v1", "ControllerRevision", owner.namespace, name)
            )
            if revision.release.config_hash not in kept_configs:
                config = render.config_map_name(owner, revision.release.config_hash)
                await self.kube.delete(object_path("v1", "ConfigMap", owner.namespace, config))

    async def _drop_legacy_config(self, owner: Owner, pods: list[Obj]) -> None:
        """Delete the one shared ConfigMap older operators made for the cluster once no
        pod mounts it (looked for once per cluster and operator process; a ConfigMap of
        that name the cluster does not own is left alone)."""
        key = (owner.namespace, owner.name)
        legacy = owner.name + render.LEGACY_CONFIG_MAP_SUFFIX
        if key in self._legacy_config_gone:
            return
        for pod in pods:
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                if (volume.get("configMap") or {}).get("name") == legacy:
                    return
        path = object_path("v1", "ConfigMap", owner.namespace, legacy)
        found = await self.kube.get(path)
        owners = ((found or {}).get("metadata") or {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner.uid for ref in owners):
            await self.kube.delete(path)
        self._legacy_config_gone.add(key)

    async def _post_event(self, body: Obj, event: Event) -> None:
        meta = body["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.info("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        await self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{secrets.token_hex(8)}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": {
                    "apiVersion": RCC_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
                "reportingInstance": FIELD_MANAGER,
            }
        )


def _steady(plan: releases.Plan, observed: Observed) -> bool:
    """Whether clients may be moved for balance: no release in progress or held, the
    Deployment complete, and every pod of the running release, Ready, scraped and not
    terminating."""
    if plan.run is None or plan.paused or observed.deployment is None:
        return False
    records = plan.status.get("releases") or []
    if records and records[-1].get("outcome") == releases.IN_PROGRESS:
        return False
    return observed.deployment.complete and all(
        p.ready and not p.terminating and p.metrics is not None and p.revision == plan.run.number
        for p in observed.pods
    )


def cost_to_write(current: str | None, connections: float) -> str | None:
    """The deletion cost to write on a pod, or None to leave its annotation as it is.

    The cost moves only once the pod's bucket (see :func:`render.deletion_cost`) is two
    or more buckets away from the written one: a pod whose count hovers around a power
    of two would otherwise flip its annotation, a pod write each, on every pass.
    """
    wanted = render.deletion_cost(connections)
    if current is None or not current.strip().lstrip("-").isdigit():
        return str(wanted)
    step = abs(wanted.bit_length() - max(0, int(current)).bit_length())
    return str(wanted) if step >= 2 else None


def _with_nulls(old: Obj, new: Obj) -> Obj:
    """A merge patch turning ``old`` into ``new`` at the top level (absent keys -> null)."""
    patch: Obj = {key: None for key in old if key not in new}
    patch.update(new)
    return patch
