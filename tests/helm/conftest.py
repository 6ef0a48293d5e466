from __future__ import annotations

import pytest

from tests.helm.chart import find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    found = find_helm()
    if found is None:
        pytest.skip("helm not found: run `make test-deps` or set ROOMCAST_HELM")
    return found
