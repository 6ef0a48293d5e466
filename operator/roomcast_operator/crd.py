"""The RoomcastCluster CustomResourceDefinition: the one source of truth for its schema.

``manifests/crds/`` is generated from :func:`definition`; run
``python -m roomcast_operator.crd`` after a change (``--check`` fails on drift, which
``tests/operator/test_crd.py`` also enforces). Defaults live here so the API server
applies them; :mod:`roomcast_operator.spec` reads the defaulted object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from . import GROUP, KIND, PLURAL, VERSION

Schema = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "manifests" / "crds" / f"{PLURAL}.{GROUP}.yaml"


def _obj(properties: Schema, description: str, **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _str(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "format": "int32", "description": description, **extra}


def _num(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description, **extra}


def _bool(description: str, default: bool) -> Schema:
    return {"type": "boolean", "description": description, "default": default}


def _secret_key_ref(description: str) -> Schema:
    return _obj(
        {
            "name": _str("Name of a Secret in the cluster's namespace.", minLength=1),
            "key": _str("Key inside the Secret.", minLength=1),
        },
        description,
        required=["name", "key"],
    )


def _quantity_map(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        },
    }


RESOURCES = _obj(
    {
        "limits": _quantity_map("Most compute resources a pod may use."),
        "requests": _quantity_map("Compute resources a pod is scheduled with."),
    },
    "Compute resources of each Roomcast pod (a core ResourceRequirements).",
    default={"requests": {"cpu": "100m", "memory": "128Mi"}},
)

CHANNEL_OPTIONS = {
    "type": "object",
    "description": (
        "Centrifugo channel options with the server's names (presence, history_size, "
        "history_ttl, force_recovery, allow_subscribe_for_client, ...); checked against "
        "the server's settings before rollout."
    ),
    "x-kubernetes-preserve-unknown-fields": True,
}

NAMESPACE = {
    **CHANNEL_OPTIONS,
    "description": "A channel namespace: its name plus channel options.",
    "properties": {"name": _str("Namespace name.", pattern=r"^[-a-zA-Z0-9_]{2,}$")},
    "required": ["name"],
}

REDIS = _obj(
    {
        "urls": {
            "type": "array",
            "description": "Redis URLs, one per shard; channels are spread by consistent hashing.",
            "items": _str("A redis://, rediss:// or unix:// URL.", pattern=r"^(rediss?|unix)://"),
            "maxItems": 64,
        },
        "urlsSecretRef": _secret_key_ref(
            "Secret key holding the comma-separated URLs (for URLs with passwords); overrides urls."
        ),
        "sentinel": _obj(
            {
                "addresses": {
                    "type": "array",
                    "description": "Sentinel host:port addresses.",
                    "items": _str("host:port", pattern=r"^[^:/\s]+:[0-9]+$"),
                    "minItems": 1,
                },
                "masterName": _str("Name of the master the Sentinels watch.", minLength=1),
            },
            "Discover the master through Redis Sentinel.",
            required=["addresses", "masterName"],
        ),
        "prefix": _str("Key and channel prefix in Redis.", default="roomcast", minLength=1),
        "cluster": _bool("Use Redis Cluster.", False),
    },
    "The Redis backplane. Without it every pod runs the memory engine (a single pod).",
    **{
        "x-kubernetes-validations": [
            {
                "rule": "has(self.urls) || has(self.urlsSecretRef) || has(self.sentinel)",
                "message": "set urls, urlsSecretRef or sentinel",
            }
        ]
    },
)

AUTH = _obj(
    {
        "hmacSecretRef": _secret_key_ref("Secret key holding the HMAC secret (32 bytes or more)."),
        "publicKeySecretRef": _obj(
            {
                "name": _str("Secret name.", minLength=1),
                "key": _str("Key holding the PEM public key.", minLength=1),
                "algorithm": _str("Key type.", enum=["RSA", "ECDSA"], default="RSA"),
            },
            "Secret key holding a PEM public key for RS*/ES* tokens.",
            required=["name", "key"],
        ),
        "jwksURL": _str("JWKS endpoint; keys picked by kid.", pattern=r"^https?://"),
        "audience": _str("Expected aud claim."),
        "issuer": _str("Expected iss claim."),
    },
    "How connection tokens are verified.",
)

AUTOSCALING = _obj(
    {
        "metricSource": _str(
            "Where the connections metric comes from: an HPA on the custom metrics API "
            "(prometheus-adapter), a KEDA ScaledObject, or none (minReplicas pods).",
            enum=["prometheus-adapter", "keda", "none"],
            default="none",
        ),
        "targetConnectionsPerPod": _int(
            "Average open connections per pod to scale at.", minimum=1, default=5000
        ),
        "prometheusServerAddress": _str(
            "Prometheus URL KEDA queries (keda only).", pattern=r"^https?://"
        ),
        "scaleUpStabilizationSeconds": _int(
            "Seconds of recommendations the autoscaler looks back over before adding pods "
            "(the lowest wins).",
            minimum=0,
            maximum=3600,
            default=0,
        ),
        "scaleDownStabilizationSeconds": _int(
            "Seconds of recommendations the autoscaler looks back over before removing pods "
            "(the highest wins; at least one drain period); then one pod goes per drain "
            "period.",
            minimum=0,
            maximum=3600,
            default=300,
        ),
    },
    "Horizontal scaling on open connections.",
    default={},
    **{
        "x-kubernetes-validations": [
            {
                "rule": (
                    "!has(self.metricSource) || self.metricSource != 'keda' "
                    "|| has(self.prometheusServerAddress)"
                ),
                "message": "keda needs prometheusServerAddress",
            }
        ]
    },
)

DRAIN = _obj(
    {
        "preStopSeconds": _int(
            "Seconds the pod keeps serving after it is marked terminating, so endpoints "
            "and load balancers stop routing to it first.",
            minimum=0,
            maximum=300,
            default=5,
        ),
        "drainWindowSeconds": _int(
            "Seconds over which the server spreads its shutdown disconnects, so clients "
            "reconnect gradually instead of all at once.",
            minimum=0,
            maximum=3600,
            default=30,
        ),
        "maxDrainingPods": _int(
            "Most pods draining (terminating) at once, in rollouts, scale-in and evictions: "
            "the operator caps maxSurge at it, renders minReadySeconds as a drain "
            "(preStopSeconds + drainWindowSeconds + 5) while a rollout replaces pods, so "
            "a new pod lets the next old pod go only once the previous one is gone (a "
            "rollout takes a drain per step), steps a lower replica count down while "
            "this many drain, and sets it as the PodDisruptionBudget's maxUnavailable.",
            minimum=1,
            maximum=100,
            default=1,
        ),
    },
    "Graceful shutdown; terminationGracePeriodSeconds and minReadySeconds are sized from these.",
    default={},
)

HEALTH = _obj(
    {
        "maxContainerRestarts": _int(
            "Restarts of a new pod's container that fail the release.", minimum=0, default=2
        ),
        "readyTimeoutSeconds": _int(
            "Seconds a new pod may stay unready before the release fails.",
            minimum=1,
            default=60,
        ),
        "observationSeconds": _int(
            "Seconds the completed release is watched before it counts as good.",
            minimum=0,
            default=30,
        ),
        "maxConnectErrorRatio": _num(
            "Rejected / all connect attempts on new pods in a window, not counting "
            "rejects the client caused (expired token, permission denied, bad request).",
            minimum=0,
            maximum=1,
            default=0.2,
        ),
        "maxTerminalDisconnectsPerSecond": _num(
            "Terminal disconnects per second per new pod in a window, not counting those "
            "the client caused (invalid token, forced disconnect, permission denied).",
            minimum=0,
            default=5,
        ),
        "maxFailedRecoveryRatio": _num(
            "Failed / all recoveries on new pods in a window.", minimum=0, maximum=1, default=0.2
        ),
        "maxPublishLatencySeconds": _num(
            "99th percentile publish-to-write latency on new pods in a window.",
            minimum=0,
            default=1,
        ),
        "maxEngineErrorsPerSecond": _num(
            "Backplane errors per second per new pod in a window.", minimum=0, default=1
        ),
        "minSamples": _int(
            "Connect attempts, recoveries or publications a window needs before its ratio "
            "or latency is judged.",
            minimum=1,
            default=50,
        ),
        "windowSeconds": _int(
            "Length of one metrics window: rates and ratios come from the counters' "
            "deltas between scrapes within it.",
            minimum=1,
            maximum=3600,
            default=20,
        ),
        "consecutiveBadWindows": _int(
            "Bad windows in a row that fail a release on metrics; fewer only hold its "
            "success back.",
            minimum=1,
            maximum=100,
            default=3,
        ),
    },
    "When a new release counts as failed. Readiness and restarts come from the pods; "
    "the ratios and rates from the new pods' /metrics over windows, beside the old "
    "release's pods: what both show does not fail the new release but pauses it.",
    default={},
)

ROLLOUT = _obj(
    {
        "maxSurge": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "description": "Extra pods during an update (maxUnavailable is always 0).",
            "default": "25%",
        },
        "progressDeadlineSeconds": _int(
            "Seconds a rollout may go without progress before the release fails. "
            "Rendered at least twice minReadySeconds (a drain: drain.preStopSeconds + "
            "drain.drainWindowSeconds + 5), since a new pod waits that long between Ready "
            "and available; a lower value is raised to it.",
            minimum=10,
            default=180,
        ),
        "autoRollback": _bool("Roll back to the last good revision when a release fails.", True),
        "drainToNewRelease": _bool(
            "Once a pod of the new release is Ready, take the old release's pods out of the "
            "Service (label roomcast.io/serving=false), so the clients they drain reconnect "
            "to the new release and move once. Off: every pod serves until it terminates, "
            "and a drained client may land on another old pod and move again.",
            True,
        ),
        "healthThresholds": HEALTH,
    },
    "How releases roll out and when they are rolled back.",
    default={},
)

REBALANCE = _obj(
    {
        "enabled": _bool(
            "Move clients from the hottest pods to the emptiest while the fleet is steady "
            "(after a scale-out). Off by default: it closes working connections on purpose.",
            False,
        ),
        "tolerancePercent": _int(
            "Rebalance when a pod's connections are further than this from the average, "
            "until every pod is within it.",
            minimum=1,
            maximum=100,
            default=10,
        ),
        "maxSharePercent": _int(
            "Most of one pod's clients asked to move in one step.",
            minimum=1,
            maximum=100,
            default=25,
        ),
        "windowSeconds": _int(
            "Seconds over which a pod spreads one step's closes (3020, reconnect).",
            minimum=1,
            maximum=300,
            default=10,
        ),
        "intervalSeconds": _int(
            "Seconds between the end of one step and the next.",
            minimum=0,
            maximum=3600,
            default=30,
        ),
    },
    "Connection rebalancing across the pods; needs apiKeySecretRef (the operator calls "
    "each pod's server API).",
    default={},
)

SERVICE = _obj(
    {
        "type": _str(
            "Service type.", enum=["ClusterIP", "NodePort", "LoadBalancer"], default="ClusterIP"
        ),
        "port": _int("Service port.", minimum=1, maximum=65535, default=80),
    },
    "The Service in front of the pods.",
    default={},
)

TOLERATION = _obj(
    {
        "key": _str("Taint key the toleration matches; empty with Exists matches every taint."),
        "operator": _str("How the value is compared.", enum=["Exists", "Equal"]),
        "value": _str("Taint value to match with Equal."),
        "effect": _str(
            "Taint effect to match; empty matches all.",
            enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
        ),
        "tolerationSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "For NoExecute: seconds the pod stays bound after the taint appears.",
        },
    },
    "A core Toleration.",
)

PLACEMENT = _obj(
    {
        "nodeSelector": {
            "type": "object",
            "description": "Node labels the server pods must match.",
            "additionalProperties": {"type": "string"},
        },
        "tolerations": {
            "type": "array",
            "description": "Taints the server pods tolerate.",
            "items": TOLERATION,
        },
        "affinity": {
            "type": "object",
            "description": "A core Affinity for the server pods, used as written.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "priorityClassName": _str("PriorityClass of the server pods."),
    },
    "Where the server pods may run. Part of the release: a change is a new release, "
    "health-gated, and a rollback restores it.",
)

SPEC = _obj(
    {
        "image": _str("Container image of the Roomcast server.", minLength=1),
        "version": _str("Release version shown in labels; defaults to the image tag."),
        "imagePullPolicy": _str(
            "Image pull policy.", enum=["Always", "IfNotPresent", "Never"], default="IfNotPresent"
        ),
        "minReplicas": _int("Fewest pods.", minimum=1, default=2),
        "maxReplicas": _int("Most pods when autoscaling.", minimum=1, default=10),
        "autoscaling": AUTOSCALING,
        "resources": RESOURCES,
        "redis": REDIS,
        "auth": AUTH,
        "apiKeySecretRef": _secret_key_ref("Secret key holding the server API key."),
        "allowedOrigins": {
            "type": "array",
            "description": (
                "Origins allowed to open WebSockets, HTTP streams and SSE (browser Origin "
                "header); '*' allows all."
            ),
            "items": {"type": "string"},
        },
        "channel": _obj(
            {
                "withoutNamespace": CHANNEL_OPTIONS,
                "namespaces": {
                    "type": "array",
                    "description": "Channel namespaces.",
                    "items": NAMESPACE,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                },
            },
            "Channel options (the server's channel section).",
        ),
        "serverConfig": {
            "type": "object",
            "description": "Further server settings, merged last into the rendered config.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "drain": DRAIN,
        "rollout": ROLLOUT,
        "rebalance": REBALANCE,
        "service": SERVICE,
        "podAnnotations": {
            "type": "object",
            "description": "Annotations on the pods; part of the release.",
            "additionalProperties": {"type": "string"},
        },
        "placement": PLACEMENT,
        "imagePullSecrets": {
            "type": "array",
            "description": "Secrets for pulling the server image (core LocalObjectReferences).",
            "items": _obj(
                {"name": _str("Name of a docker-registry Secret.", minLength=1)},
                "A Secret in the cluster's namespace.",
                required=["name"],
            ),
        },
        "revisionHistoryLimit": _int("Releases kept for rollback.", minimum=1, default=10),
        "rollbackTo": _int(
            "Roll back to this revision; the operator clears the field once done.", minimum=1
        ),
    },
    "Desired state of a Roomcast cluster.",
    required=["image"],
    **{
        "x-kubernetes-validations": [
            {
                "rule": (
                    "!has(self.minReplicas) || !has(self.maxReplicas) "
                    "|| self.maxReplicas >= self.minReplicas"
                ),
                "message": "maxReplicas must be at least minReplicas",
            },
            {
                "rule": (
                    "!has(self.rebalance) || !has(self.rebalance.enabled) "
                    "|| !self.rebalance.enabled || has(self.apiKeySecretRef)"
                ),
                "message": "rebalance.enabled needs apiKeySecretRef",
            },
        ]
    },
)

CONDITION = _obj(
    {
        "type": _str("Condition type."),
        "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "Generation the condition was computed from.",
        },
        "lastTransitionTime": _str("When status last changed.", format="date-time"),
        "reason": _str("CamelCase reason."),
        "message": _str("Human readable detail."),
    },
    "A condition (Kubernetes API conventions).",
    required=["type", "status"],
)

RELEASE = _obj(
    {
        "revision": _int("Revision number."),
        "image": _str("Image of the release."),
        "configHash": _str("Hash of the rendered server config."),
        "started": _str("When the rollout began.", format="date-time"),
        "available": _str("When every pod of the release was first available.", format="date-time"),
        "finished": _str("When the rollout ended.", format="date-time"),
        "resumed": _str(
            "When the release last stopped being inconclusive; a new pod's unready time is "
            "judged from then at the earliest.",
            format="date-time",
        ),
        "outcome": _str(
            "Progressing, Succeeded, Failed, RolledBack or Superseded.",
            enum=["Progressing", "Succeeded", "Failed", "RolledBack", "Superseded"],
        ),
        "reason": _str("Why it ended as it did."),
        "cause": _str("Spec, Rollback or AutoRollback."),
    },
    "One rollout of a revision.",
)

STATUS = _obj(
    {
        "observedGeneration": {"type": "integer", "format": "int64", "description": "Spec seen."},
        "conditions": {
            "type": "array",
            "description": "Ready, Progressing, Degraded, RolledBack.",
            "items": CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "currentRevision": _int("Revision the Deployment runs (or is rolling out)."),
        "lastGoodRevision": _int("Newest revision that passed its health checks."),
        "specRevision": _int("Revision the current spec renders to."),
        "specHash": _str("Hash of the release the spec describes, already acted on."),
        "readyReplicas": _int("Ready pods."),
        "replicas": _int("Pods."),
        "connections": {"type": "integer", "format": "int64", "description": "Open connections."},
        "releases": {
            "type": "array",
            "description": "Release history, newest last.",
            "items": RELEASE,
        },
    },
    "Observed state, written by the operator.",
)

PRINTER_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Pods", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Connections", "type": "integer", "jsonPath": ".status.connections"},
    {"name": "Revision", "type": "integer", "jsonPath": ".status.currentRevision"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Image", "type": "string", "priority": 1, "jsonPath": ".spec.image"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def definition() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["rcc"],
                "categories": ["roomcast"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": _obj(
                            {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": SPEC,
                                "status": STATUS,
                            },
                            "A Roomcast realtime cluster run by the Roomcast operator.",
                            required=["spec"],
                        )
                    },
                }
            ],
        },
    }


def render_manifest() -> str:
    header = "# Generated by `python -m roomcast_operator.crd` from roomcast_operator/crd.py.\n"
    body = yaml.safe_dump(definition(), sort_keys=False, width=100)
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the manifest is stale")
    parser.add_argument("--output", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    text = render_manifest()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.output} is stale: run python -m roomcast_operator.crd\n")
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
