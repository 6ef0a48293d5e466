"""The CRD upgrade command's input checks and its idea of "served"."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomcast_operator import crd, crdapply


def test_reads_the_generated_crd() -> None:
    found = crdapply.read_crd(crd.MANIFEST)
    assert found["metadata"]["name"] == "roomcastclusters.roomcast.io"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "kind: ConfigMap\n",
        "kind: CustomResourceDefinition\n---\nkind: CustomResourceDefinition\n",
    ],
)
def test_anything_but_one_crd_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "crd.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="exactly one CustomResourceDefinition"):
        crdapply.read_crd(path)
    assert crdapply.main([str(path)]) == 2


def test_served_means_established_with_names_accepted() -> None:
    def status(**conditions: str) -> dict:
        return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions.items()]}}

    assert crdapply.established(status(Established="True", NamesAccepted="True"))
    assert not crdapply.established(status(Established="False", NamesAccepted="True"))
    assert not crdapply.established({})
