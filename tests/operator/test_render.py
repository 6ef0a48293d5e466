"""Spec to desired objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from roomcast_operator import render
from roomcast_operator.render import Capabilities
from roomcast_operator.spec import parse

from .helpers import OWNER, make_spec

OWNER_REF = {
    "apiVersion": "roomcast.io/v1alpha1",
    "kind": "RoomcastCluster",
    "name": "chat",
    "uid": "1234-abcd",
    "controller": True,
    "blockOwnerDeletion": True,
}


def test_server_config_follows_the_centrifugo_layout() -> None:
    spec = make_spec(
        redis={"urls": ["redis://r0:6379/0", "redis://r1:6379/0"]},
        channel={"namespaces": [{"name": "rooms", "history_size": 10, "history_ttl": "60s"}]},
        allowedOrigins=["https://example.com"],
        drain={"drainWindowSeconds": 20},
        serverConfig={"client": {"ping_interval": "20s"}},
    )
    assert render.server_config(spec) == {
        "http_server": {"address": "0.0.0.0", "port": 8000},
        "client": {"allowed_origins": ["https://example.com"], "ping_interval": "20s"},
        "channel": {
            "without_namespace": {},
            "namespaces": [{"name": "rooms", "history_size": 10, "history_ttl": "60s"}],
        },
        "engine": {
            "type": "redis",
            "redis": {"prefix": "roomcast", "address": ["redis://r0:6379/0", "redis://r1:6379/0"]},
        },
        "shutdown": {"drain_window": "20s", "timeout": "30s"},
        "log": {"format": "json"},
    }


def test_sentinel_settings_reach_the_engine_section() -> None:
    spec = make_spec(redis={"sentinel": {"addresses": ["s0:26379"], "masterName": "main"}})
    assert render.server_config(spec)["engine"] == {
        "type": "redis",
        "redis": {
            "prefix": "roomcast",
            "sentinel_addresses": ["s0:26379"],
            "sentinel_master_name": "main",
        },
    }


def test_release_hash_changes_with_what_reaches_the_pods_only() -> None:
    base = render.release_of(make_spec())
    for unrelated in (
        {"minReplicas": 5},
        {"rollout": {"maxSurge": 2}},
        {"service": {"type": "NodePort"}},
        {"autoscaling": {"targetConnectionsPerPod": 100}},
    ):
        assert render.release_of(make_spec(**unrelated)).hash == base.hash, unrelated
    assert render.release_of(make_spec(image="ghcr.io/roomcast/roomcast:1.0.1")).hash != base.hash
    other_config = render.release_of(make_spec(allowedOrigins=["*"]))
    assert other_config.hash != base.hash
    assert other_config.config_hash != base.config_hash
    for pod_change in (
        {"resources": {"requests": {"cpu": "64"}}},
        {"apiKeySecretRef": {"name": "other", "key": "api"}},
        {"auth": {"hmacSecretRef": {"name": "other", "key": "hmac"}}},
        {"drain": {"preStopSeconds": 9}},
        {"placement": {"nodeSelector": {"pool": "rt"}}},
        {"imagePullSecrets": [{"name": "registry"}]},
        {"imagePullPolicy": "Always"},
    ):
        changed = render.release_of(make_spec(**pod_change))
        assert changed.hash != base.hash, pod_change
        assert changed.config_hash == base.config_hash or "auth" in pod_change


def test_pods_render_from_their_release_not_the_current_spec() -> None:
    """Rolling back restores resources, Secret references, preStop and placement too."""
    old_spec = make_spec(
        resources={"requests": {"cpu": "250m"}},
        apiKeySecretRef={"name": "old", "key": "api"},
        drain={"preStopSeconds": 3, "drainWindowSeconds": 7},
        placement={"nodeSelector": {"pool": "old"}},
    )
    new_spec = make_spec(
        resources={"requests": {"cpu": "64"}},
        apiKeySecretRef={"name": "new", "key": "api"},
        drain={"preStopSeconds": 20, "drainWindowSeconds": 60},
        placement={"nodeSelector": {"pool": "new"}},
    )
    old = render.release_of(old_spec)
    template = render.pod_template(OWNER, new_spec, old, 1)["spec"]
    container = template["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "250m"}}
    env = {e["name"]: e for e in container["env"]}
    assert env["ROOMCAST_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "old"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 3
    assert template["terminationGracePeriodSeconds"] == render.termination_grace_seconds(old_spec)
    assert template["nodeSelector"] == {"pool": "old"}
    assert template == render.pod_template(OWNER, old_spec, old, 1)["spec"]


def test_revisions_recorded_before_pod_fields_render_with_the_current_spec() -> None:
    spec = make_spec(resources={"requests": {"cpu": "1"}})
    data = render.release_of(spec).to_data()
    del data["pod"]
    legacy = render.Release.from_data(data)
    assert legacy.pod is None
    # Named as it was when recorded: the hash of the fields it had.
    assert (
        legacy.hash
        == render.Release(legacy.image, legacy.version, legacy.config, legacy.pod_annotations).hash
    )
    template = render.pod_template(OWNER, spec, legacy, 1)["spec"]
    assert template["containers"][0]["resources"] == {"requests": {"cpu": "1"}}


def test_release_round_trips_through_a_controller_revision() -> None:
    release = render.release_of(make_spec(podAnnotations={"team": "rt"}))
    data = release.to_data()
    assert data["configHash"] == release.config_hash
    assert render.Release.from_data(data) == release


def test_config_map_per_config_immutable_and_mounted_by_its_pods() -> None:
    release = render.release_of(make_spec())
    config_map = render.config_map(OWNER, release)
    name = f"chat-config-{release.config_hash}"
    assert config_map["metadata"]["name"] == name
    assert config_map["immutable"] is True
    assert config_map["metadata"]["ownerReferences"] == [OWNER_REF]
    assert config_map["metadata"]["labels"]["roomcast.io/config-hash"] == release.config_hash
    assert config_map["metadata"]["annotations"] == {"roomcast.io/config-hash": release.config_hash}
    assert yaml.safe_load(config_map["data"]["config.yaml"])["engine"] == {"type": "memory"}
    volumes = render.pod_template(OWNER, make_spec(), release, 1)["spec"]["volumes"]
    assert volumes == [{"name": "config", "configMap": {"name": name}}]
    other = render.release_of(make_spec(allowedOrigins=["*"]))
    assert render.config_map(OWNER, other)["metadata"]["name"] != name


def test_a_paused_release_pauses_its_deployment() -> None:
    spec = make_spec()
    release = render.release_of(spec)
    assert render.deployment(OWNER, spec, release, 1)["spec"]["paused"] is False
    assert render.deployment(OWNER, spec, release, 1, paused=True)["spec"]["paused"] is True


def test_deployment_drains_without_losing_capacity() -> None:
    spec = make_spec(
        drain={"preStopSeconds": 5, "drainWindowSeconds": 30},
        rollout={"maxSurge": 1, "progressDeadlineSeconds": 120},
        auth={"hmacSecretRef": {"name": "s", "key": "hmac"}},
        redis={"urlsSecretRef": {"name": "s", "key": "redis"}},
    )
    release = render.release_of(spec)
    deployment = render.deployment(OWNER, spec, release, revision=3)
    body = deployment["spec"]
    pod = body["template"]["spec"]
    container = pod["containers"][0]

    assert deployment["metadata"]["ownerReferences"] == [OWNER_REF]
    assert body["replicas"] == 2
    assert body["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert body["progressDeadlineSeconds"] == 120
    # preStop 5 + drain 30 + server margin 10 + slack 5
    assert pod["terminationGracePeriodSeconds"] == 50
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert body["template"]["metadata"]["annotations"] == {
        "roomcast.io/config-hash": release.config_hash,
        "roomcast.io/revision": "3",
    }
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["ROOMCAST_CONFIG"] == "/etc/roomcast/config.yaml"
    assert env["ROOMCAST_HOST"] == "0.0.0.0"
    assert env["ROOMCAST_TOKEN_HMAC_SECRET"] == {"secretKeyRef": {"name": "s", "key": "hmac"}}
    assert env["ROOMCAST_REDIS_URL"] == {"secretKeyRef": {"name": "s", "key": "redis"}}
    assert "ROOMCAST_API_KEY" not in env


def test_config_change_changes_the_pod_template() -> None:
    spec_a, spec_b = make_spec(), make_spec(allowedOrigins=["*"])
    template_a = render.pod_template(OWNER, spec_a, render.release_of(spec_a), 1)
    template_b = render.pod_template(OWNER, spec_b, render.release_of(spec_b), 1)
    assert template_a["metadata"]["annotations"] != template_b["metadata"]["annotations"]


def test_autoscaled_deployment_keeps_the_autoscalers_replicas() -> None:
    spec = make_spec(
        minReplicas=3,
        maxReplicas=9,
        autoscaling={"metricSource": "prometheus-adapter", "targetConnectionsPerPod": 2000},
    )
    kinds = [
        o["kind"] for o in render.children(OWNER, spec, render.release_of(spec), 1, Capabilities())
    ]
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    release = render.release_of(spec)
    # A new Deployment starts at minReplicas; later the autoscaler's count is rendered.
    assert render.deployment(OWNER, spec, release, 1)["spec"]["replicas"] == 3
    assert render.deployment(OWNER, spec, release, 1, replicas=7)["spec"]["replicas"] == 7
    hpa = render.horizontal_pod_autoscaler(OWNER, spec)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["metrics"][0]["pods"] == {
        "metric": {"name": "roomcast_connections"},
        "target": {"type": "AverageValue", "averageValue": "2000"},
    }


def test_keda_and_service_monitor_only_when_served() -> None:
    spec = make_spec(
        autoscaling={"metricSource": "keda", "prometheusServerAddress": "http://prom:9090"}
    )
    release = render.release_of(spec)
    plain = [o["kind"] for o in render.children(OWNER, spec, release, 1, Capabilities())]
    full = [o["kind"] for o in render.children(OWNER, spec, release, 1, Capabilities(True, True))]
    assert "ScaledObject" not in plain and "ServiceMonitor" not in plain
    assert full[-2:] == ["ScaledObject", "ServiceMonitor"]
    trigger = render.scaled_object(OWNER, spec)["spec"]["triggers"][0]
    assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert render.obsolete_kinds(spec, Capabilities(True, True)) == [
        ("autoscaling/v2", "HorizontalPodAutoscaler")
    ]


def test_every_child_is_owned() -> None:
    spec = make_spec(autoscaling={"metricSource": "prometheus-adapter"})
    for child in render.children(OWNER, spec, render.release_of(spec), 1, Capabilities(True)):
        assert child["metadata"]["ownerReferences"] == [OWNER_REF], child["kind"]
        assert child["metadata"]["namespace"] == "prod"


def test_scale_down_waits_for_each_drain_in_both_autoscalers() -> None:
    spec = make_spec(drain={"preStopSeconds": 5, "drainWindowSeconds": 120})
    grace = render.termination_grace_seconds(spec)
    assert grace >= 125
    expected = {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": grace}],
        },
    }
    assert render.horizontal_pod_autoscaler(OWNER, spec)["spec"]["behavior"] == expected
    keda = render.scaled_object(OWNER, spec)["spec"]["advanced"]
    assert keda == {"horizontalPodAutoscalerConfig": {"behavior": expected}}


def test_stabilization_windows_are_the_specs_and_a_short_drain_a_short_period() -> None:
    spec = make_spec(
        autoscaling={
            "metricSource": "prometheus-adapter",
            "scaleUpStabilizationSeconds": 10,
            "scaleDownStabilizationSeconds": 20,
        },
        drain={"preStopSeconds": 2, "drainWindowSeconds": 3},
    )
    behavior = render.horizontal_pod_autoscaler(OWNER, spec)["spec"]["behavior"]
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 10}
    period = behavior["scaleDown"]["policies"][0]["periodSeconds"]
    assert period == render.termination_grace_seconds(spec) < 60
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == max(20, period)


def test_scale_down_window_is_at_least_one_drain_period() -> None:
    """A shorter window would let the HPA undo a scale-up of the same period at once."""
    spec = make_spec(
        autoscaling={"metricSource": "prometheus-adapter", "scaleDownStabilizationSeconds": 0},
        drain={"preStopSeconds": 5, "drainWindowSeconds": 30},
    )
    scale_down = render.horizontal_pod_autoscaler(OWNER, spec)["spec"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] == render.termination_grace_seconds(spec)


def test_server_pods_spread_over_zones_and_nodes() -> None:
    spec = make_spec()
    template = render.pod_template(OWNER, spec, render.release_of(spec), 1)["spec"]
    spread = template["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread)
    assert spread[0]["labelSelector"] == {"matchLabels": render.selector_labels("chat")}


def test_placement_reaches_the_pods_as_part_of_the_release() -> None:
    placement = {
        "nodeSelector": {"pool": "realtime"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "rt", "effect": "NoSchedule"}
        ],
        "priorityClassName": "realtime",
    }
    spec = make_spec(placement=placement)
    template = render.pod_template(OWNER, spec, render.release_of(spec), 1)["spec"]
    assert template["nodeSelector"] == {"pool": "realtime"}
    assert template["tolerations"] == placement["tolerations"]
    assert template["priorityClassName"] == "realtime"
    assert "affinity" not in template
    # Where pods run is part of what a rollback restores.
    assert render.release_of(spec).hash != render.release_of(make_spec()).hash


def test_no_placement_renders_no_scheduling_fields() -> None:
    spec = make_spec()
    template = render.pod_template(OWNER, spec, render.release_of(spec), 1)["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(template)


def test_image_pull_secrets_reach_the_pods() -> None:
    spec = make_spec(imagePullSecrets=[{"name": "registry"}])
    template = render.pod_template(OWNER, spec, render.release_of(spec), 1)["spec"]
    assert template["imagePullSecrets"] == [{"name": "registry"}]
    assert (
        "imagePullSecrets"
        not in render.pod_template(OWNER, make_spec(), render.release_of(make_spec()), 1)["spec"]
    )


def test_deletion_cost_buckets_connections_by_powers_of_two() -> None:
    costs = {n: render.deletion_cost(n) for n in (0, 1, 2, 3, 4, 7, 8, 150, 255, 256, 5000)}
    assert costs == {
        0: 0, 1: 1, 2: 2, 3: 2, 4: 4, 7: 4, 8: 8, 150: 128, 255: 128, 256: 256, 5000: 4096,
    }  # fmt: skip
    # Order is kept between buckets: a busier pod never costs less to delete.
    values = [render.deletion_cost(n) for n in range(2000)]
    assert values == sorted(values)


def _pod(name: str, revision: int, ready: bool, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "annotations": {render.REVISION_ANNOTATION: str(revision)},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {"metadata": meta, "status": status}


def test_service_selects_only_serving_pods_which_new_pods_are() -> None:
    spec = make_spec()
    selector = render.service(OWNER, spec)["spec"]["selector"]
    assert selector == {**render.selector_labels("chat"), render.SERVING_LABEL: "true"}
    labels = render.pod_template(OWNER, spec, render.release_of(spec), 1)["metadata"]["labels"]
    assert labels[render.SERVING_LABEL] == "true"
    # The Deployment's selector does not include it: relabelling never orphans a pod.
    assert render.SERVING_LABEL not in render.selector_labels("chat")


def test_old_release_stops_serving_once_a_new_pod_is_ready() -> None:
    old = [_pod("o1", 1, True), _pod("o2", 1, True), _pod("gone", 1, True, terminating=True)]
    assert render.serving_labels([*old, _pod("n1", 2, False)], 2) == {
        "o1": "true",
        "o2": "true",
        "n1": "true",
    }  # nothing new can serve yet: everyone keeps serving
    assert render.serving_labels([*old, _pod("n1", 2, True), _pod("n2", 2, False)], 2) == {
        "o1": "false",
        "o2": "false",
        "n1": "true",
        "n2": "true",
    }


def test_a_rollback_hands_the_service_back_to_the_good_release() -> None:
    pods = [_pod("good", 1, True), _pod("bad", 2, True)]
    assert render.serving_labels(pods, 2) == {"good": "false", "bad": "true"}
    assert render.serving_labels(pods, 1) == {"good": "true", "bad": "false"}


def test_example_manifest_autoscales_on_connections() -> None:
    examples = Path(__file__).resolve().parents[2] / "manifests" / "examples"
    example = examples / "roomcastcluster.yaml"
    spec = parse(yaml.safe_load(example.read_text())["spec"])
    hpa = render.horizontal_pod_autoscaler(OWNER, spec)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "roomcast_connections"
    assert hpa["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": render.termination_grace_seconds(spec)}
    ]
    children = render.children(OWNER, spec, render.release_of(spec), 1, Capabilities())
    kinds = [c["kind"] for c in children]
    assert "HorizontalPodAutoscaler" in kinds


def test_without_the_switch_every_live_pod_serves_again() -> None:
    pods = [_pod("o1", 1, True), _pod("n1", 2, True), _pod("gone", 1, True, terminating=True)]
    assert render.serving_labels(pods, 2, switch=False) == {"o1": "true", "n1": "true"}
    spec = make_spec(rollout={"drainToNewRelease": False})
    assert spec.rollout.drain_to_new_release is False
    assert make_spec().rollout.drain_to_new_release is True
