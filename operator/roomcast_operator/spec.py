"""A typed view of a RoomcastCluster spec.

The API server applies the schema defaults from :mod:`roomcast_operator.crd`;
:func:`apply_defaults` applies the same ones here, so the operator and the unit tests see
what the server would store even for objects it never defaulted (older CRD versions).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from . import crd, rebalance

Obj = dict[str, Any]


def apply_defaults(schema: crd.Schema, value: Any) -> Any:
    """Structural defaulting as the API server does it: absent fields with a default."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        if isinstance(value, list) and "items" in schema:
            return [apply_defaults(schema["items"], item) for item in value]
        return value
    result = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(sub, result[name])
    return result


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str

    @classmethod
    def parse(cls, raw: Obj | None) -> SecretKeyRef | None:
        return cls(raw["name"], raw["key"]) if raw else None


@dataclass(frozen=True)
class Redis:
    urls: tuple[str, ...]
    urls_secret: SecretKeyRef | None
    sentinel_addresses: tuple[str, ...]
    sentinel_master_name: str
    prefix: str
    cluster: bool


@dataclass(frozen=True)
class HealthThresholds:
    max_container_restarts: int
    ready_timeout_seconds: int
    observation_seconds: int
    max_connect_error_ratio: float
    max_terminal_disconnects_per_second: float
    max_failed_recovery_ratio: float
    max_publish_latency_seconds: float
    max_engine_errors_per_second: float
    min_samples: int
    window_seconds: int
    consecutive_bad_windows: int


@dataclass(frozen=True)
class Rollout:
    max_surge: int | str
    progress_deadline_seconds: int
    auto_rollback: bool
    drain_to_new_release: bool
    health: HealthThresholds


@dataclass(frozen=True)
class ClusterSpec:
    """The parts of the spec the operator acts on, defaults applied."""

    image: str
    version: str
    image_pull_policy: str
    min_replicas: int
    max_replicas: int
    metric_source: str
    target_connections_per_pod: int
    prometheus_server_address: str
    scale_up_stabilization_seconds: int
    scale_down_stabilization_seconds: int
    resources: Obj
    redis: Redis | None
    hmac_secret: SecretKeyRef | None
    public_key_secret: SecretKeyRef | None
    public_key_algorithm: str
    jwks_url: str
    audience: str
    issuer: str
    api_key_secret: SecretKeyRef | None
    allowed_origins: tuple[str, ...]
    channel: Obj
    server_config: Obj
    pre_stop_seconds: int
    drain_window_seconds: int
    max_draining_pods: int
    rollout: Rollout
    rebalance: rebalance.Settings
    service_type: str
    service_port: int
    pod_annotations: dict[str, str]
    placement: Obj
    image_pull_secrets: tuple[str, ...]
    revision_history_limit: int
    rollback_to: int | None
    raw: Obj = field(repr=False, compare=False)

    @property
    def container_port(self) -> int:
        return 8000


def parse(raw_spec: Obj) -> ClusterSpec:
    """Read a spec (as stored, or as written by a user) into a ClusterSpec."""
    spec: Obj = apply_defaults(crd.SPEC, raw_spec)
    redis_raw = spec.get("redis")
    redis = None
    if redis_raw:
        sentinel = redis_raw.get("sentinel") or {}
        redis = Redis(
            urls=tuple(redis_raw.get("urls") or ()),
            urls_secret=SecretKeyRef.parse(redis_raw.get("urlsSecretRef")),
            sentinel_addresses=tuple(sentinel.get("addresses") or ()),
            sentinel_master_name=sentinel.get("masterName", ""),
            prefix=redis_raw["prefix"],
            cluster=redis_raw["cluster"],
        )
    auth = spec.get("auth") or {}
    public_key = auth.get("publicKeySecretRef") or {}
    scaling = spec["autoscaling"]
    rollout = spec["rollout"]
    health = rollout["healthThresholds"]
    image: str = spec["image"]
    return ClusterSpec(
        image=image,
        version=spec.get("version") or image_tag(image),
        image_pull_policy=spec["imagePullPolicy"],
        min_replicas=spec["minReplicas"],
        max_replicas=spec["maxReplicas"],
        metric_source=scaling["metricSource"],
        target_connections_per_pod=scaling["targetConnectionsPerPod"],
        prometheus_server_address=scaling.get("prometheusServerAddress", ""),
        scale_up_stabilization_seconds=scaling["scaleUpStabilizationSeconds"],
        scale_down_stabilization_seconds=scaling["scaleDownStabilizationSeconds"],
        resources=spec["resources"],
        redis=redis,
        hmac_secret=SecretKeyRef.parse(auth.get("hmacSecretRef")),
        public_key_secret=SecretKeyRef.parse(public_key),
        public_key_algorithm=public_key.get("algorithm", "RSA"),
        jwks_url=auth.get("jwksURL", ""),
        audience=auth.get("audience", ""),
        issuer=auth.get("issuer", ""),
        api_key_secret=SecretKeyRef.parse(spec.get("apiKeySecretRef")),
        allowed_origins=tuple(spec.get("allowedOrigins") or ()),
        channel=spec.get("channel") or {},
        server_config=spec.get("serverConfig") or {},
        pre_stop_seconds=spec["drain"]["preStopSeconds"],
        drain_window_seconds=spec["drain"]["drainWindowSeconds"],
        max_draining_pods=spec["drain"]["maxDrainingPods"],
        rollout=Rollout(
            max_surge=rollout["maxSurge"],
            progress_deadline_seconds=rollout["progressDeadlineSeconds"],
            auto_rollback=rollout["autoRollback"],
            drain_to_new_release=rollout["drainToNewRelease"],
            health=HealthThresholds(
                max_container_restarts=health["maxContainerRestarts"],
                ready_timeout_seconds=health["readyTimeoutSeconds"],
                observation_seconds=health["observationSeconds"],
                max_connect_error_ratio=float(health["maxConnectErrorRatio"]),
                max_terminal_disconnects_per_second=float(
                    health["maxTerminalDisconnectsPerSecond"]
                ),
                max_failed_recovery_ratio=float(health["maxFailedRecoveryRatio"]),
                max_publish_latency_seconds=float(health["maxPublishLatencySeconds"]),
                max_engine_errors_per_second=float(health["maxEngineErrorsPerSecond"]),
                min_samples=health["minSamples"],
                window_seconds=health["windowSeconds"],
                consecutive_bad_windows=health["consecutiveBadWindows"],
            ),
        ),
        rebalance=rebalance.Settings(
            enabled=spec["rebalance"]["enabled"],
            tolerance_percent=float(spec["rebalance"]["tolerancePercent"]),
            max_share_percent=float(spec["rebalance"]["maxSharePercent"]),
            window_seconds=float(spec["rebalance"]["windowSeconds"]),
            interval_seconds=float(spec["rebalance"]["intervalSeconds"]),
        ),
        service_type=spec["service"]["type"],
        service_port=spec["service"]["port"],
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        placement=dict(spec.get("placement") or {}),
        image_pull_secrets=tuple(ref["name"] for ref in spec.get("imagePullSecrets") or ()),
        revision_history_limit=spec["revisionHistoryLimit"],
        rollback_to=spec.get("rollbackTo"),
        raw=spec,
    )


def image_tag(image: str) -> str:
    """The tag (or digest prefix) of an image reference; "latest" when it has none."""
    if "@" in image:
        return image.split("@", 1)[1].split(":", 1)[-1][:12]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
