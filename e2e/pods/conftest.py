"""Fixtures for the suites on real pods: the bed's real node, its images, a release.

Without a real node these suites skip and say why, unless ``ROOMCAST_REAL_NODE=1``
(what CI sets), where its absence fails the session instead.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import node as real_node
from e2e.bed import tools_bin_dir
from e2e.cluster import Cluster
from e2e.pods.images import build_and_import_images
from e2e.pods.release import Release


@pytest.fixture(scope="session")
def node_layout(cluster: Cluster) -> real_node.NodeLayout:
    state = cluster.bed.state() if cluster.bed is not None else None
    if state is None or state.node is None:
        reason = "this bed has no real node (see e2e/README.md, ROOMCAST_REAL_NODE)"
        if real_node.requested():
            pytest.fail(f"ROOMCAST_REAL_NODE=1 but {reason}")
        pytest.skip(reason)
    return real_node.NodeLayout(Path(state.node["root"]))


@pytest.fixture(scope="session")
def node_images(node_layout: real_node.NodeLayout) -> list[str]:
    """The suites' images, built with the local Docker daemon and imported into the node."""
    problem = "docker is not installed"
    if shutil.which("docker") is not None:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
        problem = (info.stderr.strip()[-200:] or "docker info failed") if info.returncode else ""
    if problem:
        reason = f"no Docker daemon to build the images with ({problem}; see e2e/README.md)"
        if real_node.requested():
            pytest.fail(f"ROOMCAST_REAL_NODE=1 but {reason}")
        pytest.skip(reason)
    return build_and_import_images(node_layout)


@pytest.fixture
def release(
    cluster: Cluster, namespace: str, node_images: list[str], tmp_path: Path
) -> Iterator[Release]:
    """A chart release (installed by the test) in a fresh namespace; its operator stopped
    and its pods gone afterwards, so the next suite has the node to itself."""
    # A name holding "roomcast" is used as is for the chart's objects ("<name>-operator").
    name = f"roomcast-{secrets.token_hex(2)}"
    handle = Release(cluster, str(tools_bin_dir() / "helm"), namespace, name, tmp_path)
    try:
        yield handle
    finally:
        handle.stop()
        cluster.kube.run(
            "delete", "deployments,statefulsets,pods", "--all", "-n", namespace,
            "--grace-period=1", "--wait=true", "--timeout=60s", check=False,
        )  # fmt: skip
