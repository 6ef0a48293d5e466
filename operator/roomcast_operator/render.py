"""Spec to desired objects: pure functions, no API calls.

A *release* is what a revision pins: everything that reaches the pod template. That is
the image, the rendered server config, the pod annotations and the spec fields the pod
is rendered from (:data:`POD_FIELDS`: resources, Secret references for the environment,
preStop and drain, placement, pull policy and secrets). Changing any of them makes a new
release, with its record, its health gate and its rollback; the rest of the spec
(replicas, autoscaling, rollout settings, Service) applies to whichever release runs.
Each release's config lives in its own immutable ConfigMap, named by the config's hash,
so a pod of an older release that restarts mid-rollout still reads its own config. Every
child carries an owner reference to the RoomcastCluster, so deleting it
garbage-collects them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from . import GROUP, KIND, VERSION, drains
from .spec import ClusterSpec, parse

Obj = dict[str, Any]

CONFIG_FILE = "config.yaml"
CONFIG_DIR = "/etc/roomcast"
CONFIG_HASH_ANNOTATION = "roomcast.io/config-hash"
CONFIG_HASH_LABEL = "roomcast.io/config-hash"
REVISION_ANNOTATION = "roomcast.io/revision"
RELEASE_HASH_LABEL = "roomcast.io/release-hash"
SERVING_LABEL = "roomcast.io/serving"
"""In the Service's selector but not the Deployment's: during a rollout the operator sets it
to "false" on the old release's pods once a new pod is Ready, so clients they drain
reconnect to the new release only and move once (see :func:`serving_labels`;
``rollout.drainToNewRelease`` turns it off)."""
COMPONENT = "server"
SHUTDOWN_MARGIN_SECONDS = 10
"""Slack between the server's hard shutdown timeout and the kubelet's SIGKILL."""
DRAIN_EXIT_SECONDS = 5
"""After preStop and the drain window: the server's last closes, its exit and the pod's
removal from the API."""
PROGRESS_DEADLINE_FACTOR = 2
"""The rendered progress deadline is at least this many times ``minReadySeconds``: a new pod
reports no progress between Ready and available, and that wait may take no more than half
the deadline."""
POD_FIELDS = (
    "imagePullPolicy",
    "resources",
    "auth",
    "apiKeySecretRef",
    "redis",
    "drain",
    "placement",
    "imagePullSecrets",
)
"""The spec's fields that reach the pod template (besides the image, the config and the
pod annotations): a release pins them, a rollback restores them."""


@dataclass(frozen=True)
class Owner:
    """The RoomcastCluster every child belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> Obj:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Release:
    """The versioned content of a revision: rolling back restores exactly this.

    ``pod`` holds the spec's :data:`POD_FIELDS` as written (defaults applied); None only
    for revisions recorded before releases pinned them, which render with the current
    spec's fields.
    """

    image: str
    version: str
    config: str
    pod_annotations: dict[str, str]
    pod: Obj | None = None

    @property
    def config_hash(self) -> str:
        return _digest(self.config)

    @property
    def hash(self) -> str:
        content = asdict(self)
        if self.pod is None:
            del content["pod"]  # as such revisions were named when recorded
        return _digest(json.dumps(content, sort_keys=True))

    def to_data(self) -> Obj:
        return {**asdict(self), "configHash": self.config_hash}

    @classmethod
    def from_data(cls, data: Obj) -> Release:
        return cls(
            image=data["image"],
            version=data["version"],
            config=data["config"],
            pod_annotations=dict(data.get("pod_annotations") or {}),
            pod=copy.deepcopy(data.get("pod")),
        )

    def pod_spec(self, current: ClusterSpec) -> ClusterSpec:
        """The spec the release's pods are rendered from."""
        if self.pod is None:
            return current
        return parse({**copy.deepcopy(self.pod), "image": self.image, "version": self.version})


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# --- server configuration ---------------------------------------------------------------


def server_config(spec: ClusterSpec) -> Obj:
    """The server's config file (Centrifugo v6 layout) for this spec.

    Secrets never land here: they reach the pod as environment variables from their
    Secrets (see :func:`container_env`).
    """
    config: Obj = {
        "http_server": {"address": "0.0.0.0", "port": spec.container_port},
        "client": {"allowed_origins": list(spec.allowed_origins)},
        "channel": {
            "without_namespace": copy.deepcopy(spec.channel.get("withoutNamespace") or {}),
            "namespaces": copy.deepcopy(spec.channel.get("namespaces") or []),
        },
        "engine": {"type": "memory"},
        "shutdown": {
            "drain_window": f"{spec.drain_window_seconds}s",
            "timeout": f"{spec.drain_window_seconds + SHUTDOWN_MARGIN_SECONDS}s",
        },
        "log": {"format": "json"},
    }
    token: Obj = {}
    if spec.jwks_url:
        token["jwks_public_endpoint"] = spec.jwks_url
    if spec.audience:
        token["audience"] = spec.audience
    if spec.issuer:
        token["issuer"] = spec.issuer
    if token:
        config["client"]["token"] = token
    if spec.redis is not None:
        redis: Obj = {"prefix": spec.redis.prefix}
        if spec.redis.urls:
            redis["address"] = list(spec.redis.urls)
        if spec.redis.sentinel_addresses:
            redis["sentinel_addresses"] = list(spec.redis.sentinel_addresses)
            redis["sentinel_master_name"] = spec.redis.sentinel_master_name
        if spec.redis.cluster:
            redis["cluster"] = True
        config["engine"] = {"type": "redis", "redis": redis}
    _deep_merge(config, copy.deepcopy(spec.server_config))
    return config


def _deep_merge(into: Obj, extra: Obj) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def release_of(spec: ClusterSpec) -> Release:
    text = yaml.safe_dump(server_config(spec), sort_keys=True)
    pod = {key: copy.deepcopy(spec.raw[key]) for key in POD_FIELDS if key in spec.raw}
    return Release(spec.image, spec.version, text, dict(spec.pod_annotations), pod)


# --- labels and metadata ------------------------------------------------------------------


def selector_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "roomcast",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": COMPONENT,
    }


def labels(name: str, version: str | None = None) -> dict[str, str]:
    result = {**selector_labels(name), "app.kubernetes.io/managed-by": "roomcast-operator"}
    if version:
        result["app.kubernetes.io/version"] = _label_value(version)
    return result


def _label_value(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:63]
    return cleaned.strip("-_.") or "unknown"


def _meta(owner: Owner, name: str, version: str | None = None) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, version),
        "ownerReferences": [owner.reference()],
    }


def config_map_name(owner: Owner, config_hash: str) -> str:
    """One ConfigMap per distinct config, named by its hash (releases that differ only
    outside the config share it)."""
    return f"{owner.name}-config-{config_hash}"


LEGACY_CONFIG_MAP_SUFFIX = "-config"
"""The one mutable ConfigMap every revision mounted before configs were per release."""


# --- children ------------------------------------------------------------------------------


def config_map(owner: Owner, release: Release) -> Obj:
    """The release's config, immutable: a change is a new ConfigMap, never an edit."""
    meta = _meta(owner, config_map_name(owner, release.config_hash))
    meta["labels"][CONFIG_HASH_LABEL] = release.config_hash
    meta["annotations"] = {CONFIG_HASH_ANNOTATION: release.config_hash}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": {CONFIG_FILE: release.config},
    }


def _secret_env(name: str, ref: Any) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def container_env(spec: ClusterSpec) -> list[Obj]:
    env: list[Obj] = [
        {"name": "ROOMCAST_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
        {"name": "ROOMCAST_HOST", "value": "0.0.0.0"},
        {"name": "ROOMCAST_PORT", "value": str(spec.container_port)},
        {"name": "ROOMCAST_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if spec.hmac_secret:
        env.append(_secret_env("ROOMCAST_TOKEN_HMAC_SECRET", spec.hmac_secret))
    if spec.public_key_secret:
        setting = "RSA" if spec.public_key_algorithm == "RSA" else "ECDSA"
        env.append(
            _secret_env(f"ROOMCAST_CLIENT__TOKEN__{setting}_PUBLIC_KEY", spec.public_key_secret)
        )
    if spec.api_key_secret:
        env.append(_secret_env("ROOMCAST_API_KEY", spec.api_key_secret))
    if spec.redis is not None and spec.redis.urls_secret is not None:
        env.append(_secret_env("ROOMCAST_REDIS_URL", spec.redis.urls_secret))
    return env


def termination_grace_seconds(spec: ClusterSpec) -> int:
    """preStop, then the paced drain, then the server's own margin, then a little slack."""
    return spec.pre_stop_seconds + spec.drain_window_seconds + SHUTDOWN_MARGIN_SECONDS + 5


def min_ready_seconds(spec: ClusterSpec) -> int:
    """The Deployment's ``minReadySeconds``: what a drain takes (preStop, the paced closes
    over the drain window, the process's exit and the pod's removal).

    A new pod counts as available, and lets the Deployment remove the next old pod, only
    this long after it is Ready; it was created when an old pod started draining, so that
    pod is gone by then. This serializes the drains in every step of a rollout, the last
    included (see :mod:`drains`)."""
    return spec.pre_stop_seconds + spec.drain_window_seconds + DRAIN_EXIT_SECONDS


def progress_deadline_seconds(spec: ClusterSpec) -> int:
    """``rollout.progressDeadlineSeconds``, raised to twice ``minReadySeconds`` when lower:
    between Ready and available a new pod reports no progress, and a deadline not well
    above that wait would fail every rollout."""
    floor = PROGRESS_DEADLINE_FACTOR * min_ready_seconds(spec)
    return max(spec.rollout.progress_deadline_seconds, floor)


def pod_template(owner: Owner, spec: ClusterSpec, release: Release, revision: int) -> Obj:
    """The pods of ``release``: rendered from its own pod fields, not the current spec's."""
    spec = release.pod_spec(spec)
    annotations = {
        **release.pod_annotations,
        CONFIG_HASH_ANNOTATION: release.config_hash,
        REVISION_ANNOTATION: str(revision),
    }
    container: Obj = {
        "name": "roomcast",
        "image": release.image,
        "imagePullPolicy": spec.image_pull_policy,
        "ports": [{"name": "http", "containerPort": spec.container_port, "protocol": "TCP"}],
        "env": container_env(spec),
        "resources": copy.deepcopy(spec.resources),
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1,
            "timeoutSeconds": 2,
        },
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.pre_stop_seconds > 0:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": spec.pre_stop_seconds}}}
    pod_spec: Obj = {
        "containers": [container],
        # Spread over zones and nodes, so one lost node or zone drops the fewest clients.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(owner.name)},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [
            {
                "name": "config",
                "configMap": {"name": config_map_name(owner, release.config_hash)},
            }
        ],
    }
    for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if spec.placement.get(field):
            pod_spec[field] = copy.deepcopy(spec.placement[field])
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    return {
        "metadata": {
            "labels": {
                **labels(owner.name, release.version),
                RELEASE_HASH_LABEL: release.hash,
                SERVING_LABEL: "true",
            },
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


def serving_labels(pods: list[Obj], revision: int, switch: bool = True) -> dict[str, str]:
    """The serving label each live pod should carry while ``revision`` is rolled to.

    Once one pod of that revision is Ready, only its pods take new connections: a client
    drained from an old pod lands on the new release and is not moved again. Until then
    (a release that never gets Ready, or the first moments of any rollout) every pod keeps
    serving, so capacity never drops. Terminating pods are left alone: they are out of
    the Service's endpoints anyway. With ``switch`` off (``rollout.drainToNewRelease:
    false``) every pod serves, as a plain Deployment's would: a pod taken out earlier is
    put back.
    """
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if not switch:
        return {p["metadata"]["name"]: "true" for p in live}

    def of_revision(pod: Obj) -> bool:
        annotation = (pod["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "")
        return bool(annotation == str(revision))

    def ready(pod: Obj) -> bool:
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )

    switch = any(of_revision(p) and ready(p) for p in live)
    return {
        p["metadata"]["name"]: "true" if not switch or of_revision(p) else "false" for p in live
    }


DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


def deletion_cost(connections: float) -> int:
    """A pod's deletion cost from its open connections, so scale-in removes the emptiest
    pod first and moves the fewest clients.

    Bucketed by powers of two (0, 1, 2, 4, 8, ...): the annotation changes only when a
    pod's load halves or doubles, not on every connect, so it costs few API writes while
    still telling a busy pod from an idle one.
    """
    count = int(connections)
    return 0 if count <= 0 else 1 << (count.bit_length() - 1)


def deployment(
    owner: Owner,
    spec: ClusterSpec,
    release: Release,
    revision: int,
    replicas: int | None = None,
    paused: bool = False,
) -> Obj:
    """``replicas``: the pod count to render (``minReplicas`` when None); ``maxSurge`` is
    capped for it at ``drain.maxDrainingPods`` (see :func:`drains.max_surge`).

    ``paused`` holds a rollout while the release is inconclusive: no further pod is
    replaced, and the Deployment's progress deadline does not run out meanwhile. Drains
    are paced by ``minReadySeconds`` instead (see :mod:`drains`)."""
    count = spec.min_replicas if replicas is None else replicas
    meta = _meta(owner, owner.name, release.version)
    template = pod_template(owner, spec, release, revision)
    meta["annotations"] = {
        REVISION_ANNOTATION: str(revision),
        drains.TEMPLATE_DIGEST_ANNOTATION: drains.template_digest(template),
    }
    surge = drains.max_surge(spec.rollout.max_surge, count, spec.max_draining_pods)
    body: Obj = {
        "replicas": count,
        "minReadySeconds": min_ready_seconds(spec),
        "selector": {"matchLabels": selector_labels(owner.name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": surge},
        },
        "progressDeadlineSeconds": progress_deadline_seconds(spec),
        "revisionHistoryLimit": spec.revision_history_limit,
        "template": template,
        "paused": paused,
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def service(owner: Owner, spec: ClusterSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.name),
        "spec": {
            "type": spec.service_type,
            "selector": {**selector_labels(owner.name), SERVING_LABEL: "true"},
            "ports": [
                {"name": "http", "port": spec.service_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def pod_disruption_budget(owner: Owner, spec: ClusterSpec) -> Obj:
    """Voluntary evictions take at most ``drain.maxDrainingPods`` pods at a time, so their
    drains never stack up beyond the limit."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, owner.name),
        "spec": {
            "maxUnavailable": spec.max_draining_pods,
            "selector": {"matchLabels": selector_labels(owner.name)},
        },
    }


def horizontal_pod_autoscaler(owner: Owner, spec: ClusterSpec) -> Obj:
    """Scale on open connections; scale down slowly, since each removed pod drains clients."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, owner.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "roomcast_connections"},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(spec.target_connections_per_pod),
                        },
                    },
                }
            ],
            "behavior": scaling_behavior(spec),
        },
    }


def scaling_behavior(spec: ClusterSpec) -> Obj:
    """Add pods as soon as connections call for them; remove at most one per drain period.

    Each removed pod hands its clients to the others, so the next removal waits until that
    pod is gone (its termination grace: preStop, the paced drain, the server's margin).
    Which pod goes is the Deployment's choice, by the pod-deletion-cost the operator sets
    from each pod's connections: the emptiest first. The stabilization windows are the
    spec's knobs: the longer the scale-down one, the fewer drains a passing dip causes.

    The scale-down window is never shorter than the drain period: the HPA limits a
    period's removals against the replicas at its start, scale-ups included, so a
    scale-up less than a period old would let it remove every pod it just added at once.
    """
    period = termination_grace_seconds(spec)
    return {
        "scaleUp": {"stabilizationWindowSeconds": spec.scale_up_stabilization_seconds},
        "scaleDown": {
            "stabilizationWindowSeconds": max(spec.scale_down_stabilization_seconds, period),
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": period}],
        },
    }


def scaled_object(owner: Owner, spec: ClusterSpec) -> Obj:
    # max by pod first: a pod scraped by both the operator's ServiceMonitor and the
    # chart's PodMonitor has two series, which a plain sum would count twice.
    query = (
        f'sum(max by (pod) (roomcast_connections{{namespace="{owner.namespace}",'
        f'pod=~"{owner.name}-[a-z0-9]+-[a-z0-9]+"}}))'
    )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(owner, owner.name),
        "spec": {
            "scaleTargetRef": {"name": owner.name},
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": scaling_behavior(spec)}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": spec.prometheus_server_address,
                        "query": query,
                        "threshold": str(spec.target_connections_per_pod),
                    },
                }
            ],
        },
    }


def service_monitor(owner: Owner) -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(owner, owner.name),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


@dataclass(frozen=True)
class Capabilities:
    """Optional APIs the cluster serves."""

    service_monitors: bool = False
    scaled_objects: bool = False


def children(
    owner: Owner,
    spec: ClusterSpec,
    release: Release,
    revision: int,
    capabilities: Capabilities,
    replicas: int | None = None,
    paused: bool = False,
) -> list[Obj]:
    """Every object the cluster should own right now, the ConfigMap before the Deployment."""
    objects = [
        config_map(owner, release),
        deployment(owner, spec, release, revision, replicas, paused),
        service(owner, spec),
        pod_disruption_budget(owner, spec),
    ]
    if spec.metric_source == "prometheus-adapter":
        objects.append(horizontal_pod_autoscaler(owner, spec))
    elif spec.metric_source == "keda" and capabilities.scaled_objects:
        objects.append(scaled_object(owner, spec))
    if capabilities.service_monitors:
        objects.append(service_monitor(owner))
    return objects


def obsolete_kinds(spec: ClusterSpec, capabilities: Capabilities) -> list[tuple[str, str]]:
    """(apiVersion, kind) of scalers the spec no longer wants, to be deleted if present."""
    stale = []
    if spec.metric_source != "prometheus-adapter":
        stale.append(("autoscaling/v2", "HorizontalPodAutoscaler"))
    if spec.metric_source != "keda" and capabilities.scaled_objects:
        stale.append(("keda.sh/v1alpha1", "ScaledObject"))
    return stale
