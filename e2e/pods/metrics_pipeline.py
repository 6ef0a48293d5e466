"""The metrics pipeline an HPA on connections needs: Prometheus and prometheus-adapter.

Both run as host processes next to the bed, built from source (``tests/tools/
prometheus.sh``, ``tests/tools/prometheus-adapter.sh``):

* Prometheus scrapes every server pod's ``/metrics`` on the real node by pod IP. Its
  targets come from a file-based discovery file that :meth:`MetricsPipeline.track` keeps
  current from the pods the API server lists, labelled ``namespace`` and ``pod`` as a
  cluster's pod discovery would label them.
* prometheus-adapter serves ``custom.metrics.k8s.io`` with the chart's own adapter rule,
  rendered by ``helm template`` (``autoscaling.prometheusAdapter.rulesConfigMap``). It
  listens on the node's address only, behind a Service whose EndpointSlice points there,
  registered as an APIService; it authenticates the API server's front-proxy requests with
  the requestheader CA the API server publishes, and reaches the API server with the token
  of a ServiceAccount bound to the delegated-auth roles only.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.prometheus import PrometheusServer

from e2e import node as real_node
from e2e.bed import eventually, free_port, tools_bin_dir
from e2e.kube import Kube, Obj, condition
from e2e.operator.harness import service_account_kubeconfig
from e2e.pods.images import REPO

CHART = REPO / "helm" / "roomcast"
ADAPTER_NAME = "custom-metrics-apiserver"
API_GROUP = "custom.metrics.k8s.io"
API_VERSIONS = ("v1beta1", "v1beta2")
SERVER_PORT = 8000


def adapter_binary() -> str:
    """prometheus-adapter from the build cache; skip (fail under CI) when it is not built."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    built = sorted(glob.glob(f"{cache}/roomcast/prometheus-adapter/*/bin/prometheus-adapter"))
    if built:
        return built[-1]
    message = "prometheus-adapter not built: run tests/tools/prometheus-adapter.sh (make test-deps)"
    if os.environ.get("ROOMCAST_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + " -- ROOMCAST_REQUIRE_PROMETHEUS=1")
    pytest.skip(message)


def chart_adapter_rules() -> list[Obj]:
    """The chart's prometheus-adapter rule, exactly as ``helm template`` renders it."""
    rendered = subprocess.run(
        [str(tools_bin_dir() / "helm"), "template", "roomcast", str(CHART),
         "--set", "autoscaling.prometheusAdapter.rulesConfigMap=true",
         "--show-only", "templates/prometheus-adapter-rules.yaml"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    config_map = yaml.safe_load(rendered)
    rules: list[Obj] = yaml.safe_load(config_map["data"]["rules.yaml"])
    return rules


def _serving_certificate(workdir: Path, dns_name: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for the adapter's Service name (the APIService's
    caBundle), valid for a day."""
    cert, key = workdir / "adapter.crt", workdir / "adapter.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", f"/CN={ADAPTER_NAME}", "-addext", f"subjectAltName=DNS:{dns_name}",
         "-addext", "extendedKeyUsage=serverAuth"],
        capture_output=True, check=True,
    )  # fmt: skip
    return cert, key


def _rbac(namespace: str) -> list[Obj]:
    """The adapter's ServiceAccount: delegated authentication and authorization (as every
    aggregated API server needs) and reading the objects its rule maps series onto."""
    subject = [{"kind": "ServiceAccount", "name": ADAPTER_NAME, "namespace": namespace}]
    reader = f"{ADAPTER_NAME}-{namespace}"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ADAPTER_NAME, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{reader}-auth-delegator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:auth-delegator"},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": reader, "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": reader},
         "rules": [{"apiGroups": [""], "resources": ["namespaces", "pods", "services"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": reader},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": reader},
         "subjects": subject},
    ]  # fmt: skip


class MetricsPipeline:
    """Prometheus and prometheus-adapter serving ``custom.metrics.k8s.io`` to the bed."""

    def __init__(self, kube: Kube, namespace: str, workdir: Path) -> None:
        """``namespace``: where the adapter's ServiceAccount and Service live."""
        self.kube = kube
        self.namespace = namespace
        self.workdir = workdir
        self.targets_file = workdir / "targets.json"
        self.prometheus: PrometheusServer | None = None
        self.adapter: subprocess.Popen[bytes] | None = None
        self.adapter_log = workdir / "prometheus-adapter.log"
        self._tracking: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- Prometheus and its targets --

    def track(self, namespace: str, selector: str) -> None:
        """Scrape the pods matching ``selector`` in ``namespace``, as they come and go."""
        self._tracking.append((namespace, selector))
        self.refresh_targets()

    def refresh_targets(self) -> None:
        groups = []
        for namespace, selector in self._tracking:
            for pod in self.kube.items("pods", namespace, selector=selector):
                ip = pod["status"].get("podIP")
                if ip and pod["status"].get("phase") == "Running":
                    labels = {"namespace": namespace, "pod": pod["metadata"]["name"]}
                    groups.append({"targets": [f"{ip}:{SERVER_PORT}"], "labels": labels})
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def _keep_targets_current(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.refresh_targets()
            except Exception:  # a failed list is retried next second
                continue

    # -- the adapter --

    def _adapter_objects(self, port: int, ca_bundle: bytes) -> list[Obj]:
        service: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": ADAPTER_NAME, "namespace": self.namespace},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        }
        # No selector: the adapter is a host process on the node's address.
        endpoints: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": ADAPTER_NAME,
                "namespace": self.namespace,
                "labels": {"kubernetes.io/service-name": ADAPTER_NAME},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [real_node.NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        services: list[Obj] = [
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": f"{version}.{API_GROUP}"},
                "spec": {
                    "group": API_GROUP,
                    "version": version,
                    "service": {"name": ADAPTER_NAME, "namespace": self.namespace, "port": 443},
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 200 if version == "v1beta2" else 100,
                },
            }
            for version in API_VERSIONS
        ]
        return [service, endpoints, *services]

    def _start_adapter(self) -> None:
        binary = adapter_binary()
        for obj in _rbac(self.namespace):
            self.kube.apply(obj)
        kubeconfig = service_account_kubeconfig(
            self.kube, self.namespace, ADAPTER_NAME, self.workdir / "adapter.kubeconfig", "2h"
        )
        config = self.workdir / "adapter-rules.yaml"
        config.write_text(yaml.safe_dump({"rules": chart_adapter_rules()}))
        cert, key = _serving_certificate(self.workdir, f"{ADAPTER_NAME}.{self.namespace}.svc")
        port = free_port()
        assert self.prometheus is not None
        argv = [
            binary,
            f"--prometheus-url={self.prometheus.url}",
            f"--config={config}",
            "--metrics-relist-interval=5s",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={real_node.NODE_IP}",
            f"--secure-port={port}",
            f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}",
            "--v=2",
        ]
        with self.adapter_log.open("wb") as log:
            self.adapter = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        for obj in self._adapter_objects(port, cert.read_bytes()):
            self.kube.apply(obj)

        def available() -> bool:
            if self.adapter is not None and self.adapter.poll() is not None:
                raise RuntimeError(f"prometheus-adapter exited:\n{self.log_tail()}")
            for version in API_VERSIONS:
                service = self.kube.get("apiservice", f"{version}.{API_GROUP}")
                found = condition(service, "Available")
                if not found or found["status"] != "True":
                    return False
            return True

        eventually(available, 90, interval_seconds=0.5, what="custom metrics APIService Available")

    # -- the whole --

    def start(self) -> MetricsPipeline:
        self.targets_file.write_text("[]")
        try:
            self.prometheus = PrometheusServer(
                [], self.workdir, file_targets=self.targets_file
            ).start()
            self._thread = threading.Thread(target=self._keep_targets_current, daemon=True)
            self._thread.start()
            self._start_adapter()
        except BaseException:
            self.stop()
            raise
        return self

    def custom_metric(self, namespace: str, metric: str) -> dict[str, float]:
        """Per pod, the metric as the custom metrics API serves it to the HPA."""
        path = f"/apis/{API_GROUP}/v1beta2/namespaces/{namespace}/pods/*/{metric}"
        listed: Any = json.loads(self.kube.run("get", "--raw", path).stdout)
        return {
            item["describedObject"]["name"]: _quantity(item["value"]) for item in listed["items"]
        }

    def log_tail(self, lines: int = 40) -> str:
        if not self.adapter_log.exists():
            return "(no log)"
        return "\n".join(self.adapter_log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Unregister the APIServices first (an unavailable aggregated API slows every
        discovery in the cluster), then stop both processes."""
        self._stop.set()
        for version in API_VERSIONS:
            self.kube.run("delete", "apiservice", f"{version}.{API_GROUP}", "--ignore-not-found",
                          check=False)  # fmt: skip
        reader = f"{ADAPTER_NAME}-{self.namespace}"
        for kind, name in (
            ("clusterrolebinding", f"{reader}-auth-delegator"),
            ("clusterrolebinding", reader),
            ("clusterrole", reader),
        ):
            self.kube.run("delete", kind, name, "--ignore-not-found", check=False)
        self.kube.run("delete", "rolebinding", reader, "-n", "kube-system", "--ignore-not-found",
                      check=False)  # fmt: skip
        if self.adapter is not None and self.adapter.poll() is None:
            self.adapter.terminate()
            try:
                self.adapter.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.adapter.kill()
                self.adapter.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.prometheus is not None:
            self.prometheus.stop()


def _quantity(text: str) -> float:
    """A Kubernetes quantity as the custom metrics API writes it ("12", "1500m")."""
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    if text.endswith("k"):
        return float(text[:-1]) * 1000
    return float(text)
