"""The Helm chart against a real API server.

* Every object the chart renders, for the default and the production values, passes a
  server-side dry run: the pinned release's OpenAPI schemas, defaulting, admission and the
  RoomcastCluster CRD's structural schema and CEL rules; the PodMonitors and the
  PrometheusRule against the Prometheus Operator's CRDs, generated from its API types by
  tests/tools/monitoring-crds.sh.
* On the bed: ``helm install`` creates the operator's ServiceAccount and RBAC; the operator,
  run as a process with that ServiceAccount's token, creates the workload; ``helm upgrade``
  with a new image rolls it; ``helm rollback`` rolls it back; ``helm uninstall`` leaves
  nothing of the release behind.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from tests.helm.chart import CHART, PRODUCTION_VALUES, run_helm, template_args

from e2e.bed import FAIL_ANNOTATION, eventually, tools_bin_dir
from e2e.cluster import Cluster
from e2e.kube import Obj
from e2e.operator.harness import (
    RUNNING,
    OperatorProcess,
    install,
    service_account_kubeconfig,
    serving,
)

# Kinds whose APIs need the Prometheus Operator's CRDs, which the bed serves only while
# the monitoring_crds fixture has them installed.
THIRD_PARTY = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
RELEASE = "roomcast"
KWOK_DRAIN = [
    "--set",
    "cluster.drain.preStopSeconds=0",
    "--set",
    "cluster.drain.drainWindowSeconds=0",
]
"""Pods on kwok nodes drain nothing; a rollout step waits a drain (see the harness's)."""
OLD_IMAGE, NEW_IMAGE = "ghcr.io/roomcast/roomcast:1.0.0", "ghcr.io/roomcast/roomcast:1.1.0"


@pytest.fixture(scope="module")
def helm(cluster: Cluster) -> str:
    return str(tools_bin_dir() / "helm")


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster) -> None:
    """The chart's crds/ directory, applied as helm install would."""
    cluster.kube.run("apply", "--server-side", "-f", str(CHART / "crds"))
    cluster.kube.run(
        "wait", "--for=condition=Established", "crd/roomcastclusters.roomcast.io", "--timeout=30s"
    )


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> Iterator[bool]:
    """The PodMonitor and PrometheusRule CRDs from tests/tools/monitoring-crds.sh, removed
    again afterwards; False (their objects unchecked) when they were not generated."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    found = sorted(glob.glob(f"{cache}/roomcast/monitoring-crds/*/crds"))
    if not found:
        if os.environ.get("ROOMCAST_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("run tests/tools/monitoring-crds.sh (make test-deps)")
        yield False
        return
    names = ["crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com"]
    cluster.kube.run("apply", "--server-side", "-f", found[-1])
    try:
        cluster.kube.run("wait", "--for=condition=Established", *names, "--timeout=30s")
        yield True
    finally:
        cluster.kube.run("delete", "--wait=false", "--ignore-not-found", *names)


def _helm(helm: str, cluster: Cluster, *args: str) -> str:
    return run_helm(helm, *args, f"--kubeconfig={cluster.kube.kubeconfig}").stdout


@pytest.mark.usefixtures("crd_installed")
@pytest.mark.parametrize(
    "values", [[], [PRODUCTION_VALUES]], ids=["default-values", "production-values"]
)
def test_rendered_objects_pass_server_side_dry_run(
    cluster: Cluster, helm: str, namespace: str, values: list[Path], monitoring_crds: bool
) -> None:
    # Unique names for cluster-scoped objects, so parallel runs do not collide.
    rendered = run_helm(helm, *template_args(release=namespace, namespace=namespace, values=values))
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    unchecked = set() if monitoring_crds else THIRD_PARTY
    checked = [o for o in objects if (o["apiVersion"], o["kind"]) not in unchecked]
    assert len(checked) >= 7
    # A dry run stores nothing, and a Pod's ServiceAccount must exist: they are created
    # for real first, as helm's install order does.
    accounts = [o for o in checked if o["kind"] == "ServiceAccount"]
    cluster.kube.run(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": accounts}),
    )  # fmt: skip
    stdin = json.dumps({"apiVersion": "v1", "kind": "List", "items": checked})
    result = cluster.kube.run(
        "apply", "--dry-run=server", "--server-side", "-n", namespace, "-f", "-", stdin=stdin
    )
    assert result.stdout.count("(server dry run)") == len(checked), result.stdout


def _release_objects(cluster: Cluster, namespace: str, release: str) -> list[str]:
    """Everything in the namespace that came from the release or from its cluster."""
    kinds = (
        "pods,deployments,statefulsets,services,configmaps,secrets,serviceaccounts,"
        "poddisruptionbudgets,horizontalpodautoscalers,controllerrevisions,"
        "roomcastclusters,roles,rolebindings,networkpolicies,ingresses"
    )
    found = cluster.kube.run(
        "get", kinds, "-n", namespace, "-o", "name", "-l", "app.kubernetes.io/name=roomcast"
    ).stdout.split()
    cluster_scoped = cluster.kube.run(
        "get", "clusterroles,clusterrolebindings", "-o", "name",
        "-l", f"app.kubernetes.io/instance={release}",
    ).stdout.split()  # fmt: skip
    return found + cluster_scoped


StartOperator = Callable[[str], OperatorProcess]


@pytest.fixture
def operator_for_release(
    cluster: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StartOperator]:
    """The operator as a process holding the chart's ServiceAccount token, watching only
    this namespace (other suites run their own operator on the same bed)."""
    monkeypatch.setenv("ROOMCAST_OPERATOR_NAMESPACE", namespace)
    process: OperatorProcess | None = None

    def start(service_account: str) -> OperatorProcess:
        nonlocal process
        path = service_account_kubeconfig(
            cluster.kube, namespace, service_account, tmp_path / "operator.kubeconfig", "1h"
        )
        for other in list(RUNNING):  # the operator suite's cluster-wide one, if still up
            other.stop()
        process = OperatorProcess(path, tmp_path / "operator.log", scrape_metrics=False)
        process.start()
        return process

    yield start
    if process is not None:
        process.stop()


@pytest.mark.bed_only
@pytest.mark.usefixtures("crd_installed")
def test_install_upgrade_rollback_uninstall(
    cluster: Cluster, helm: str, namespace: str, operator_for_release: StartOperator
) -> None:
    # The release name carries the namespace's suffix so its ClusterRole is unique on the bed.
    release = f"{RELEASE}-{namespace.rsplit('-', 1)[-1]}"
    timeout = cluster.timeout_seconds
    common = ["-n", namespace, "--set", "cluster.name=chat", "--set", "image.pullPolicy=Never"]
    # An operator for this namespace: the bed may already have a cluster-wide one (the
    # operator suite's), beside which the chart refuses to install a second.
    common += ["--set", f"operator.watchNamespace={namespace}", *KWOK_DRAIN]
    image = ["--set", "image.repository=ghcr.io/roomcast/roomcast"]
    # Three pods on the dev Redis, as a user would start.
    dev = ["--set", "redis.dev.enabled=true", "--set", "cluster.minReplicas=3"]
    dev += ["--set", "cluster.maxReplicas=3"]
    _helm(
        helm, cluster, "install", release, str(CHART), *common, *image, *dev,
        "--set", "image.tag=1.0.0", "--wait", f"--timeout={int(timeout)}s",
    )  # fmt: skip
    operator = f"{release}-operator"
    assert cluster.kube.get("deployment", operator, namespace)["status"]["readyReplicas"] == 1
    process = operator_for_release(operator)

    def rolled_to(image_ref: str) -> bool:
        return serving(cluster.kube, "chat", namespace, image_ref)

    try:
        eventually(lambda: rolled_to(OLD_IMAGE), timeout, what="workload from helm install")
        deployment: Obj = cluster.kube.get("deployment", "chat", namespace)
        assert deployment["spec"]["replicas"] == 3
        env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert {"ROOMCAST_TOKEN_HMAC_SECRET", "ROOMCAST_API_KEY"} <= env
        secret_before = cluster.kube.get("secret", f"{release}-auth", namespace)["data"]

        _helm(
            helm, cluster, "upgrade", release, str(CHART), *common, *image, *dev,
            "--set", "image.tag=1.1.0", "--wait", f"--timeout={int(timeout)}s",
        )  # fmt: skip
        eventually(lambda: rolled_to(NEW_IMAGE), timeout, what="upgrade rolled to 1.1.0")
        # The chart-made secret survives the upgrade, so issued tokens stay valid.
        assert cluster.kube.get("secret", f"{release}-auth", namespace)["data"] == secret_before

        _helm(helm, cluster, "rollback", release, "1", "-n", namespace, "--wait")
        eventually(lambda: rolled_to(OLD_IMAGE), timeout, what="rollback to 1.0.0")
        history = json.loads(
            _helm(helm, cluster, "history", release, "-n", namespace, "-o", "json")
        )
        assert [h["revision"] for h in history] == [1, 2, 3]
    except Exception:
        print(process.tail())
        raise
    finally:
        process.stop()

    _helm(helm, cluster, "uninstall", release, "-n", namespace, "--wait")

    # The RoomcastCluster's children go with it (owner references, garbage collector).
    def nothing_left() -> bool:
        left = _release_objects(cluster, namespace, release)
        assert not left, f"still there: {' '.join(left)}"
        return True

    eventually(nothing_left, timeout, what="nothing left after helm uninstall")


@pytest.mark.bed_only
@pytest.mark.usefixtures("crd_installed")
def test_a_second_cluster_wide_operator_is_refused(
    cluster: Cluster, helm: str, namespace: str, tmp_path: Path
) -> None:
    """With a cluster-wide operator installed (here the one from manifests/), the chart's
    default (a cluster-wide operator of its own) fails to install and says what to do
    instead; an operator for one namespace, or none, installs."""
    install(cluster.kube, tmp_path)
    release = f"{RELEASE}-{namespace.rsplit('-', 1)[-1]}"
    dry = ["install", release, str(CHART), "-n", namespace, "--dry-run=server"]
    dry.append(f"--kubeconfig={cluster.kube.kubeconfig}")
    refused = run_helm(helm, *dry, check=False)
    assert refused.returncode != 0
    assert "a cluster-wide roomcast operator is already installed" in refused.stderr
    assert "kubectl apply -k manifests/" in refused.stderr
    run_helm(helm, *dry, "--set", f"operator.watchNamespace={namespace}")
    run_helm(helm, *dry, "--set", "operator.enabled=false")


@pytest.mark.bed_only
@pytest.mark.usefixtures("crd_installed")
def test_release_check_fails_when_the_operator_rolled_back(
    cluster: Cluster, helm: str, namespace: str, tmp_path: Path, operator_for_release: StartOperator
) -> None:
    """The `helm test` release check (files/check_release.py, run here as a process with
    its ServiceAccount's token, since pods on kwok nodes do not run) passes
    on a good release and fails once the operator rolled a bad one back."""
    release = f"{RELEASE}-{namespace.rsplit('-', 1)[-1]}"
    values = [
        "-n", namespace, "--set", "cluster.name=chat", "--set", "image.pullPolicy=Never",
        "--set", f"operator.watchNamespace={namespace}",
        "--set", "cluster.rollout.healthThresholds.observationSeconds=2",
        "--set", "cluster.rollout.healthThresholds.readyTimeoutSeconds=10", *KWOK_DRAIN,
    ]  # fmt: skip
    _helm(helm, cluster, "install", release, str(CHART), *values, "--wait", "--timeout=120s")
    process = operator_for_release(f"{release}-operator")
    kubeconfig = service_account_kubeconfig(
        cluster.kube, namespace, f"{release}-test-release", tmp_path / "check.kubeconfig", "1h"
    )

    def check() -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "ROOMCAST_CLUSTER": "chat",
            "ROOMCAST_NAMESPACE": namespace,
            "ROOMCAST_TEST_TIMEOUT_SECONDS": "150",
        }
        script = str(CHART / "files" / "check_release.py")
        return subprocess.run(
            [sys.executable, script], env=env, capture_output=True, text=True, timeout=200
        )

    try:
        good = check()
        assert good.returncode == 0, good.stdout + good.stderr
        assert "revision 1 runs the spec and is Ready" in good.stdout
        escaped = FAIL_ANNOTATION.replace(".", "\\.")  # helm --set splits keys at dots
        bad = ["--set-string", f"cluster.podAnnotations.{escaped}=true"]
        _helm(helm, cluster, "upgrade", release, str(CHART), *values, *bad)
        failed = check()
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "RolledBack: AutoRollback" in failed.stdout
    except Exception:
        print(process.tail())
        raise
    finally:
        process.stop()
        _helm(helm, cluster, "uninstall", release, "-n", namespace, "--wait")


@pytest.mark.bed_only
@pytest.mark.usefixtures("crd_installed")
def test_install_and_upgrade_bring_the_crd_up_to_date(
    cluster: Cluster, helm: str, namespace: str, tmp_path: Path
) -> None:
    """An older CRD (without spec.imagePullSecrets) in the cluster, as a previous chart
    version left it: the chart's pre-install/pre-upgrade hook applies this chart's CRD.

    ``helm install`` and ``helm upgrade`` run the hook's objects through the API server
    (on kwok the Job's pod completes without running; ``e2e/pods/test_api_access.py``
    runs it as a real pod on the real node); the hook's command then runs here as a process
    with a token of the hook's ServiceAccount, bound to the hook's ClusterRole, exactly as
    rendered."""
    kube = cluster.kube
    name = "roomcastclusters.roomcast.io"
    current = yaml.safe_load((CHART / "crds" / f"{name}.yaml").read_text())

    def spec_fields() -> set[str]:
        crd = kube.get("crd", name)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        return set(schema["properties"]["spec"]["properties"])

    old = copy.deepcopy(current)
    del old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "imagePullSecrets"
    ]
    release = f"{RELEASE}-{namespace.rsplit('-', 1)[-1]}"
    values = ["-n", namespace, "--set", f"operator.watchNamespace={namespace}"]
    values += ["--set", "cluster.enabled=false"]
    hook = [o for o in yaml.safe_load_all(
        run_helm(helm, *template_args(release=release, namespace=namespace),
                 "--show-only", "templates/crd-upgrade.yaml").stdout) if o]  # fmt: skip
    rbac = [o for o in hook if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    try:
        kube.run("apply", "--server-side", "-f", "-", stdin=json.dumps(old))
        assert "imagePullSecrets" not in spec_fields()
        _helm(helm, cluster, "install", release, str(CHART), *values, "--wait", "--timeout=120s")
        _helm(helm, cluster, "upgrade", release, str(CHART), *values, "--wait", "--timeout=120s")
        # The hook's objects are gone once it succeeded.
        assert not kube.items("jobs", namespace, "app.kubernetes.io/component=crd-upgrade")

        stdin = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
        kube.run("apply", "-n", namespace, "-f", "-", stdin=stdin)
        account = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
        kubeconfig = service_account_kubeconfig(
            kube, namespace, account, tmp_path / "hook.kubeconfig", "1h"
        )
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        command = [sys.executable, "-m", "roomcast_operator.crdapply"]
        command.append(str(CHART / "crds" / f"{name}.yaml"))
        applied = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert applied.returncode == 0, applied.stderr
        assert f"{name} applied and served (v1alpha1)" in applied.stdout
        assert "imagePullSecrets" in spec_fields()
        # The hook's rights end at that one CRD.
        other = kube.as_token(
            kube.run("create", "token", account, "-n", namespace).stdout.strip()
        ).run("get", "crd", "scaledobjects.keda.sh", check=False)
        assert "forbidden" in other.stderr.lower()
    finally:
        kube.run(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(current)
        )
        for obj in rbac:
            if obj["kind"] != "ServiceAccount":
                kube.run("delete", obj["kind"].lower(), obj["metadata"]["name"], check=False)
        uninstall = ["uninstall", release, "-n", namespace, "--wait"]
        run_helm(helm, *uninstall, f"--kubeconfig={kube.kubeconfig}", check=False)
