"""The CRD manifest is generated from roomcast_operator.crd and must not drift."""

from __future__ import annotations

import yaml

from roomcast_operator import crd
from roomcast_operator.spec import apply_defaults


def test_manifest_is_in_sync_with_the_schema() -> None:
    assert crd.MANIFEST.read_text() == crd.render_manifest(), (
        "manifests/crds is stale: run `python -m roomcast_operator.crd`"
    )


def test_check_mode_reports_drift(tmp_path: object) -> None:
    from pathlib import Path

    stale = Path(str(tmp_path)) / "crd.yaml"
    stale.write_text("old")
    assert crd.main(["--check", "--output", str(stale)]) == 1
    assert crd.main(["--output", str(stale)]) == 0
    assert crd.main(["--check", "--output", str(stale)]) == 0


def test_definition_serves_status_and_short_name() -> None:
    definition = yaml.safe_load(crd.render_manifest())
    version = definition["spec"]["versions"][0]
    assert definition["spec"]["names"]["shortNames"] == ["rcc"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:4] == ["Ready", "Pods", "Connections", "Revision"]
    assert columns[-1] == "Age"


def test_defaults_fill_nested_objects_like_the_api_server() -> None:
    spec = apply_defaults(crd.SPEC, {"image": "roomcast:1"})
    assert spec["minReplicas"] == 2
    assert spec["rollout"]["maxSurge"] == "25%"
    assert spec["rollout"]["autoRollback"] is True
    assert spec["rollout"]["healthThresholds"]["maxContainerRestarts"] == 2
    assert spec["drain"] == {"preStopSeconds": 5, "drainWindowSeconds": 30, "maxDrainingPods": 1}
    assert "redis" not in spec
