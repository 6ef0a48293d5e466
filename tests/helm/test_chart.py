"""The chart with only the helm binary: lint, render, schema, and agreement with the
operator's own sources (CRD, RBAC, labels, spec parsing). Server-side validation of
every rendered object against the pinned Kubernetes release is in e2e/test_chart.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from roomcast_operator import crd, render, spec, validation
from tests.helm.chart import CHART, PRODUCTION_VALUES, REPO, by_kind, one, render_chart, run_helm

VALUE_SETS = {"default": [], "production": [PRODUCTION_VALUES]}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict(helm: str, values: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in values:
        args += ["--values", str(path)]
    run_helm(helm, *args)


def test_crd_is_the_generated_one() -> None:
    chart_crd = CHART / "crds" / crd.MANIFEST.name
    assert chart_crd.read_text() == crd.render_manifest(), (
        "helm/roomcast/crds is stale: python -m roomcast_operator.crd --output " + str(chart_crd)
    )
    assert chart_crd.read_text() == crd.MANIFEST.read_text()


def operator_objects(objects: list[dict]) -> list[dict]:
    """The operator's objects (the helm test has RBAC of its own)."""
    return [
        o
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]


def test_rbac_matches_the_manifests(helm: str) -> None:
    manifests = list(yaml.safe_load_all((REPO / "manifests" / "rbac.yaml").read_text()))
    expected = next(o for o in manifests if o["kind"] == "ClusterRole")["rules"]
    assert one(operator_objects(render_chart(helm)), "ClusterRole")["rules"] == expected


def test_watch_namespace_narrows_rbac_to_a_role(helm: str) -> None:
    objects = operator_objects(render_chart(helm, sets=["operator.watchNamespace=chat"]))
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    role, binding = one(objects, "Role"), one(objects, "RoleBinding")
    # Leader election in the watched namespace: the Role grants the Lease there.
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "update"]} in role["rules"]  # fmt: skip
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "chat"
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=chat" in args


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_standard_labels_everywhere(helm: str, values: list[Path]) -> None:
    for obj in render_chart(helm, values=values):
        labels = obj["metadata"]["labels"]
        for key in ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance"):
            assert key in labels, f"{obj['kind']} {obj['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def _pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((obj["kind"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append(("Pod", obj["spec"]))
    return specs


@pytest.mark.parametrize(
    "sets", [[], ["redis.dev.enabled=true", "cluster.maxReplicas=3"]], ids=["default", "dev-redis"]
)
def test_pods_meet_the_restricted_pod_security_standard(helm: str, sets: list[str]) -> None:
    specs = _pod_specs(render_chart(helm, sets=sets))
    assert len(specs) == (5 if sets else 4)
    for kind, pod in specs:
        assert pod["securityContext"]["runAsNonRoot"] is True, kind
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", kind
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, kind
            assert context["capabilities"]["drop"] == ["ALL"], kind
            assert context["readOnlyRootFilesystem"] is True, kind
            assert "resources" in container, kind


def test_default_is_one_pod_on_the_memory_engine(helm: str) -> None:
    cluster = one(render_chart(helm), "RoomcastCluster")
    assert cluster["metadata"]["name"] == "roomcast", "kind and NOTES expect Service roomcast"
    assert cluster["spec"]["minReplicas"] == cluster["spec"]["maxReplicas"] == 1
    assert "redis" not in cluster["spec"]
    assert cluster["spec"]["autoscaling"]["metricSource"] == "none"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["cluster.maxReplicas=3"], "needs a Redis backplane"),
        (["autoscaling.metricSource=keda", "redis.dev.enabled=true"], "prometheusServerAddress"),
        (["cluster.minReplicas=4", "cluster.maxReplicas=2", "redis.urls={redis://r:6379}"], "at"),
        (["redis.dev.enabled=true", "redis.urls={redis://r:6379}"], "leave redis.urls"),
    ],
)
def test_settings_that_cannot_work_fail_the_render(
    helm: str, sets: list[str], message: str
) -> None:
    from tests.helm.chart import template_args

    result = run_helm(helm, *template_args(sets=sets), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    "item",
    [
        "cluster.minReplica=2",  # typo
        "operator.enable=false",  # typo
        "ingres.enabled=true",  # typo at the top
        "autoscaling.metricSource=cpu",  # not an enum member
        "image.pullPolicy=Sometimes",
        "redis.urls={http://redis:6379}",  # wrong scheme
        "cluster.service.port=0",
    ],
)
def test_schema_rejects_typos_and_bad_values(helm: str, item: str) -> None:
    from tests.helm.chart import template_args

    result = run_helm(helm, *template_args(sets=[item]), check=False)
    assert result.returncode != 0, f"--set {item} was accepted"
    assert "schema" in result.stderr.lower() or "values don't meet" in result.stderr.lower()


def _commented_paths(text: str) -> dict[str, bool]:
    """Dotted path of each key in values.yaml -> whether a comment sits right above it."""
    result: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "-")) and ":" in stripped:
            indent = len(line) - len(line.lstrip())
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, stripped.split(":", 1)[0]))
            result[".".join(k for _, k in stack)] = previous.startswith("#")
        if stripped:
            previous = stripped
    return result


def test_every_value_has_a_schema_and_a_comment() -> None:
    """Each key of values.yaml is in the strict schema with a description, and each key the
    schema spells out has a comment right above it or inside a commented group."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    commented = _commented_paths((CHART / "values.yaml").read_text())

    def walk(value: object, node: dict, path: str, documented: bool = False) -> None:
        assert node.get("description"), f"{path} has no description in the schema"
        documented = documented or bool(commented.get(path))
        strict = isinstance(value, dict) and node.get("additionalProperties") is False
        if not strict or not value:
            assert documented, f"values.yaml: {path} has no comment above it"
            return
        assert isinstance(value, dict)
        for key, sub in value.items():
            assert key in node["properties"], f"{path}.{key} is not in the schema"
            walk(sub, node["properties"][key], f"{path}.{key}", documented)

    for key, value in values.items():
        walk(value, schema["properties"][key], key)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_cluster_spec_is_one_the_operator_accepts(helm: str, values: list[Path]) -> None:
    """The rendered RoomcastCluster parses, and its server config passes the server's model."""
    cluster = one(render_chart(helm, values=values), "RoomcastCluster")
    parsed = spec.parse(cluster["spec"])
    assert validation.problems(parsed, render.release_of(parsed)) == []


def test_selector_labels_follow_the_operator(helm: str) -> None:
    objects = render_chart(helm, values=[PRODUCTION_VALUES], sets=["redis.dev.enabled=false"])
    name = one(objects, "RoomcastCluster")["metadata"]["name"]
    expected = render.selector_labels(name)
    monitor = next(m for m in by_kind(objects, "PodMonitor") if m["metadata"]["name"] == name)
    assert monitor["spec"]["selector"]["matchLabels"] == expected
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == name)
    assert policy["spec"]["podSelector"]["matchLabels"] == expected
    backend = one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"] == {"name": name, "port": {"name": "http"}}


def test_production_wires_autoscaling_through_the_cluster(helm: str) -> None:
    objects = render_chart(helm, values=[PRODUCTION_VALUES])
    cluster = one(objects, "RoomcastCluster")["spec"]
    assert cluster["autoscaling"]["metricSource"] == "prometheus-adapter"
    # The operator renders the HPA from the spec; the chart must not add a second one.
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    adapter = next(c for c in by_kind(objects, "ConfigMap") if "rules.yaml" in c["data"])
    rules = yaml.safe_load(adapter["data"]["rules.yaml"])
    assert rules[0]["name"]["as"] == "roomcast_connections"
    hpa = render.horizontal_pod_autoscaler(render.Owner("x", "ns", "uid"), spec.parse(cluster))
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == rules[0]["name"]["as"]


def test_keda_alternative(helm: str) -> None:
    objects = render_chart(
        helm,
        sets=[
            "autoscaling.metricSource=keda",
            "autoscaling.prometheusServerAddress=http://prometheus:9090",
            "redis.dev.enabled=true",
            "cluster.maxReplicas=5",
        ],
    )
    scaling = one(objects, "RoomcastCluster")["spec"]["autoscaling"]
    assert scaling == {
        "metricSource": "keda",
        "targetConnectionsPerPod": 5000,
        "prometheusServerAddress": "http://prometheus:9090",
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 300,
    }


def test_dev_redis_is_the_backplane(helm: str) -> None:
    objects = render_chart(helm, namespace="chat", sets=["redis.dev.enabled=true"])
    statefulset = one(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    urls = one(objects, "RoomcastCluster")["spec"]["redis"]["urls"]
    assert urls == ["redis://roomcast-redis.chat.svc:6379/0"]


def test_chart_made_secret_rolls_pods_when_it_changes(helm: str) -> None:
    """Its checksum is a pod annotation, which is part of a release."""
    first, second = (one(render_chart(helm), "RoomcastCluster") for _ in range(2))
    # helm template cannot look the Secret up, so each render draws new random values.
    a = first["spec"]["podAnnotations"]["checksum/auth"]
    b = second["spec"]["podAnnotations"]["checksum/auth"]
    assert a != b
    existing = one(render_chart(helm, sets=["auth.existingSecret=mine"]), "RoomcastCluster")
    assert "podAnnotations" not in existing["spec"]


def test_helm_test_pod_runs_the_client_script(helm: str) -> None:
    pod = next(p for p in by_kind(render_chart(helm), "Pod") if "connect" in p["metadata"]["name"])
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    assert command[2] == (CHART / "files" / "connect_and_publish.py").read_text()
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["ROOMCAST_URL"]["value"] == "http://roomcast.roomcast.svc:80"


def test_notes_tell_how_to_connect_get_a_token_and_publish(helm: str, tmp_path: Path) -> None:
    # helm renders NOTES.txt only on install; render it offline through tpl in a copy.
    chart = tmp_path / "roomcast"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "files/notes.txt") . | quote }}}\n'
    )
    args = ["template", "roomcast", str(chart), "--show-only", "templates/notes-check.yaml"]
    notes = yaml.safe_load(run_helm(helm, *args).stdout)["data"]["notes"]
    assert "roomcast gentoken --user alice" in notes
    assert "curl -s -X POST http://localhost:8000/api/publish" in notes
    assert "port-forward svc/roomcast 8000:80" in notes
    assert "ws://localhost:8000/connection/websocket" in notes


def test_placement_values_become_the_clusters_placement(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "placement.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "cluster": {
                    "placement": {
                        "nodeSelector": {"pool": "realtime"},
                        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                    }
                }
            }
        )
    )
    cluster = one(render_chart(helm, values=[values]), "RoomcastCluster")
    assert cluster["spec"]["placement"] == {
        "nodeSelector": {"pool": "realtime"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    }
    assert "placement" not in one(render_chart(helm), "RoomcastCluster")["spec"]


def test_image_pull_secrets_reach_the_cluster(helm: str) -> None:
    cluster = one(render_chart(helm, sets=["imagePullSecrets[0].name=registry"]), "RoomcastCluster")
    assert cluster["spec"]["imagePullSecrets"] == [{"name": "registry"}]


def test_operator_elects_a_leader_in_the_release_namespace(helm: str) -> None:
    objects = render_chart(helm, namespace="chat", sets=["operator.replicas=2"])
    deployment = next(d for d in by_kind(objects, "Deployment"))
    assert deployment["spec"]["replicas"] == 2 and "strategy" not in deployment["spec"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROOMCAST_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["ROOMCAST_OPERATOR_LEASE_NAMESPACE"] == "chat"
    assert env["ROOMCAST_OPERATOR_LEASE_DURATION_SECONDS"] == "60"
    role = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-election"))
    assert role["metadata"]["namespace"] == "chat"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]}
    ]  # fmt: skip
    single = render_chart(helm, sets=["operator.leaderElection.enabled=false"])
    deployment = next(d for d in by_kind(single, "Deployment"))
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [r for r in by_kind(single, "Role") if r["metadata"]["name"].endswith("-election")]


def test_network_policy_admits_the_operator_wherever_it_runs(helm: str) -> None:
    objects = render_chart(helm, values=[PRODUCTION_VALUES], sets=["redis.dev.enabled=false"])
    name = one(objects, "RoomcastCluster")["metadata"]["name"]
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == name)
    peers = policy["spec"]["ingress"][0]["from"]
    anywhere = {"matchLabels": {"roomcast.io/operator": "true"}}
    assert {"namespaceSelector": {}, "podSelector": anywhere} in peers
    operator_pod = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert operator_pod["roomcast.io/operator"] == "true"
    manifests = list(yaml.safe_load_all((REPO / "manifests" / "operator.yaml").read_text()))
    assert manifests[0]["spec"]["template"]["metadata"]["labels"]["roomcast.io/operator"] == "true"


def test_helm_test_checks_the_release_with_read_only_rights(helm: str) -> None:
    objects = render_chart(helm, namespace="chat")
    pod = next(p for p in by_kind(objects, "Pod") if p["metadata"]["name"].endswith("-release"))
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][2] == (
        (CHART / "files" / "check_release.py").read_text()
    )
    role = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-release"))
    assert role["rules"] == [
        {"apiGroups": ["roomcast.io"], "resources": ["roomcastclusters"],
         "resourceNames": ["roomcast"], "verbs": ["get"]}
    ]  # fmt: skip
    assert pod["spec"]["serviceAccountName"] == role["metadata"]["name"]
    assert not [
        o for o in render_chart(helm, sets=["tests.enabled=false"])
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "test"
    ]  # fmt: skip


def test_crd_upgrade_hook_applies_the_charts_crd_with_rights_to_it_only(helm: str) -> None:
    objects = by_component(render_chart(helm, namespace="chat"), "crd-upgrade")
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Job", "ServiceAccount",
    ]  # fmt: skip
    for obj in objects:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in objects}
    assert weights["Job"] > max(w for kind, w in weights.items() if kind != "Job")
    config = one(objects, "ConfigMap")["data"]["crd.yaml"]
    assert config == (CHART / "crds" / crd.MANIFEST.name).read_text()
    assert one(objects, "ClusterRole")["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "resourceNames": ["roomcastclusters.roomcast.io"], "verbs": ["get", "patch"]}
    ]  # fmt: skip
    pod = one(objects, "Job")["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][:3] == ["python", "-m", "roomcast_operator.crdapply"]
    assert not by_component(render_chart(helm, sets=["crds.upgrade=false"]), "crd-upgrade")


def by_component(objects: list[dict], component: str) -> list[dict]:
    return [
        o
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
