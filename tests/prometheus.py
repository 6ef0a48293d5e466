"""Prometheus and promtool built from source by tests/tools/prometheus.sh.

A missing binary skips the test, unless ``ROOMCAST_REQUIRE_PROMETHEUS=1`` (CI) makes it
a failure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import free_port


def prometheus_tool(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``: ROOMCAST_PROMETHEUS_BIN, else the build cache."""
    explicit = os.environ.get("ROOMCAST_PROMETHEUS_BIN")
    candidates = [Path(explicit, name)] if explicit else []
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    built = sorted(glob.glob(f"{cache}/roomcast/prometheus/*/bin/{name}"), reverse=True)
    candidates += [Path(p) for p in built]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    message = f"{name} not built: run tests/tools/prometheus.sh (make test-deps)"
    if os.environ.get("ROOMCAST_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + " -- ROOMCAST_REQUIRE_PROMETHEUS=1")
    pytest.skip(message)


class PrometheusServer:
    """A real Prometheus on a free loopback port scraping static targets every second.

    ``targets``: (job, address, extra target labels). The labels stand in for what the
    Prometheus Operator's service discovery would attach in a cluster (namespace, pod).
    ``file_targets``: a file-based service discovery file (a JSON list of target groups)
    for targets that come and go, such as the pods of a scaling Deployment; it is scraped
    as the job ``files`` and may be empty at start.
    """

    def __init__(
        self,
        targets: list[tuple[str, str, dict[str, str]]],
        workdir: Path,
        file_targets: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.static_jobs = len({job for job, _, _ in targets})
        jobs: dict[str, list[dict[str, object]]] = {}
        for job, address, labels in targets:
            jobs.setdefault(job, []).append({"targets": [address], "labels": labels})
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": statics} for job, statics in jobs.items()
            ],
        }
        if file_targets is not None:
            config["scrape_configs"].append(
                {
                    "job_name": "files",
                    "file_sd_configs": [{"files": [str(file_targets)], "refresh_interval": "1s"}],
                }
            )
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        """Start, and return once every target has been scraped successfully: Prometheus
        applies its targets a few seconds after it is ready, and a test must not act
        before the first scrape or its counters would appear already counted."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    prometheus_tool("prometheus"),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"prometheus exited:\n{self.log()}")
                with contextlib.suppress(OSError, AssertionError):
                    targets = self.get("/api/v1/targets")["activeTargets"]
                    static = [t for t in targets if t["scrapePool"] != "files"]
                    up = all(t["health"] == "up" for t in static)
                    if (static or not self.static_jobs) and up:
                        return self
                time.sleep(0.2)
            raise RuntimeError(f"prometheus did not become ready:\n{self.log()}")
        except BaseException:
            self.stop()  # never leave it running behind a failed start
            raise

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; the ``data`` of a successful answer, else AssertionError."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:  # "Service Unavailable" while it starts
                raise AssertionError(f"{path}: HTTP {error.code} {raw[:200]!r}") from None
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (vector or scalar results alike)."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
