"""``python -m roomcast_operator.crdapply FILE``: bring a CRD up to date, then wait until
the API server serves it.

Helm installs a chart's ``crds/`` on the first install only and never upgrades them, so
the chart runs this in a pre-install/pre-upgrade hook Job with the CRD of the chart
being installed: the schema is current before any RoomcastCluster of the new chart
version is written (fields the old schema lacks would otherwise be pruned). Server-side
apply by its own field manager, taking over fields set by whoever created the CRD.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .kube import ApiError, Kube

Obj = dict[str, Any]
FIELD_MANAGER = "roomcast-crd-upgrade"
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def read_crd(path: Path) -> Obj:
    """The one CustomResourceDefinition in ``path``; ValueError when it is not that."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if len(documents) != 1 or documents[0].get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: expected exactly one CustomResourceDefinition")
    crd: Obj = documents[0]
    return crd


def established(crd: Obj) -> bool:
    conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
    return conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"


async def apply_crd(kube: Kube, crd: Obj, timeout_seconds: float = 60.0) -> Obj:
    """Apply ``crd`` and return it once Established with its names accepted."""
    path = f"{CRD_API}/{crd['metadata']['name']}"
    await kube.request(
        "PATCH",
        path,
        body=crd,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        content_type="application/apply-patch+yaml",
    )
    deadline = time.monotonic() + timeout_seconds
    while True:
        current = await kube.get(path)
        if current is not None and established(current):
            return current
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{crd['metadata']['name']} not Established in {timeout_seconds}s")
        await asyncio.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m roomcast_operator.crdapply", description=__doc__
    )
    parser.add_argument("file", type=Path, help="YAML file holding one CRD")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    args = parser.parse_args(argv)
    try:
        crd = read_crd(args.file)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"crdapply: {error}", file=sys.stderr)
        return 2
    try:
        served = asyncio.run(apply_crd(Kube(), crd, args.timeout))
    except (ApiError, TimeoutError) as error:
        print(f"crdapply: {crd['metadata']['name']}: {error}", file=sys.stderr)
        return 1
    versions = ", ".join(v["name"] for v in served["spec"]["versions"] if v.get("served"))
    print(f"{served['metadata']['name']} applied and served ({versions})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
