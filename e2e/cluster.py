"""The cluster an e2e session runs against: the local bed, or an external one (kind)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from e2e.bed import Bed, tools_bin_dir
from e2e.kube import Kube, find_kubectl

Flavour = Literal["bed", "external"]


@dataclass(frozen=True)
class Cluster:
    """Where the tests talk to, and what that cluster can do.

    ``bed`` is set for the local kwok bed; ``external`` clusters (kind) run real pods,
    so they get longer timeouts and skip the bed-only checks.
    """

    kube: Kube
    flavour: Flavour
    bed: Bed | None
    timeout_seconds: float

    @property
    def is_bed(self) -> bool:
        return self.flavour == "bed"


def bed_cluster(bed: Bed) -> Cluster:
    state = bed.state()
    tools = Path(state.tools_bin) if state else None
    return Cluster(Kube(find_kubectl(tools), bed.kubeconfig), "bed", bed, 90.0)


def external_cluster(kubeconfig: Path) -> Cluster:
    tools: Path | None = None
    if not os.environ.get("ROOMCAST_KUBECTL"):
        tools = tools_bin_dir()
    return Cluster(Kube(find_kubectl(tools), kubeconfig), "external", None, 240.0)


def running_bed_from_kubeconfig() -> Bed | None:
    """The bed KUBECONFIG points at, if it is one of ours and it is up."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return None
    path = Path(kubeconfig)
    if path.name != "kubeconfig" or not (path.parent / "bed.json").is_file():
        return None
    bed = Bed(path.parent)
    return bed if bed.running() else None
