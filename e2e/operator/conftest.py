"""Fixtures for the operator suite: manifests installed, the operator running as a process."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from e2e.cluster import Cluster
from e2e.operator.harness import OPERATOR_NAMESPACE, OperatorProcess, install

OPERATOR_KEY = pytest.StashKey[OperatorProcess]()


@pytest.fixture(scope="session")
def roomcast_operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = install(cluster.kube, workdir)
    process = OperatorProcess(
        kubeconfig,
        workdir / "operator.log",
        scrape_metrics=False,
        lease_namespace=OPERATOR_NAMESPACE,
    )
    request.config.stash[OPERATOR_KEY] = process
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def operator_running(roomcast_operator: OperatorProcess) -> OperatorProcess:
    """The operator, (re)started if an earlier test left it stopped."""
    roomcast_operator.start()
    return roomcast_operator


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        process = item.config.stash.get(OPERATOR_KEY, None)
        if process is not None:
            report.sections.append(("roomcast-operator log (tail)", process.tail()))
    return report
