"""Session fixtures for the e2e tier.

Which cluster the suite uses:

* ``ROOMCAST_E2E_KUBECONFIG=<file>``: an external cluster (kind); never torn down.
* ``KUBECONFIG`` pointing at a running bed from ``make cluster-up``: that bed is reused
  and left running.
* otherwise a private bed is started in its own state directory (so concurrent sessions
  on one machine do not collide) and stopped when the session ends, also on SIGTERM;
  one left behind by a killed session is stopped by the next session.

When a test fails, the tail of every bed component log is attached to its report.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from e2e.bed import Bed
from e2e.cluster import (
    Cluster,
    bed_cluster,
    external_cluster,
    private_bed,
    running_bed_from_kubeconfig,
)

BED_KEY = pytest.StashKey[Bed]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bed_only: needs the local kwok bed; skipped elsewhere")
    config.addinivalue_line(
        "markers", "release: needs the Roomcast chart installed (ROOMCAST_E2E_RELEASE)"
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    external = os.environ.get("ROOMCAST_E2E_KUBECONFIG")
    if external:
        yield external_cluster(Path(external))
        return
    reused = running_bed_from_kubeconfig()
    if reused is not None:
        request.config.stash[BED_KEY] = reused
        yield bed_cluster(reused)
        return
    with private_bed() as bed:
        request.config.stash[BED_KEY] = bed
        yield bed_cluster(bed)


@pytest.fixture(autouse=True)
def _skip_by_marker(request: pytest.FixtureRequest) -> None:
    marked = request.node.get_closest_marker
    if marked("bed_only") is not None and os.environ.get("ROOMCAST_E2E_KUBECONFIG"):
        pytest.skip("needs the local kwok bed")
    if marked("release") is not None and not os.environ.get("ROOMCAST_E2E_RELEASE"):
        pytest.skip("no Roomcast release installed (set ROOMCAST_E2E_RELEASE)")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards without waiting."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"e2e-{stem}-{secrets.token_hex(3)}"
    cluster.kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kube.delete("namespace", name, wait=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        bed = item.config.stash.get(BED_KEY, None)
        if bed is not None:
            report.sections.append(("roomcast bed logs (tail)", bed.log_tails()))
    return report
