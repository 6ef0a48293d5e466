"""The cluster an e2e session runs against: the local bed, or an external one (kind)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from e2e.bed import Bed, ProcessRecord, proc_start_ticks, tools_bin_dir
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


PRIVATE_PREFIX = "roomcast-bed-pytest-"


def _private_parent() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def reap_abandoned_private_beds() -> list[Path]:
    """Stop private beds whose pytest process died without tearing them down."""
    reaped = []
    for state_dir in _private_parent().glob(f"{PRIVATE_PREFIX}*"):
        try:
            pid, ticks = (int(v) for v in (state_dir / "owner").read_text().split())
        except (OSError, ValueError):
            continue
        if ProcessRecord("owner", pid, ticks, "").alive():
            continue
        with contextlib.suppress(Exception):
            Bed(state_dir).down()
        shutil.rmtree(state_dir, ignore_errors=True)
        reaped.append(state_dir)
    return reaped


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def private_bed() -> Iterator[Bed]:
    """A bed of this process's own, stopped on exit, on SIGTERM, or by the next session."""
    reap_abandoned_private_beds()
    state_dir = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=_private_parent()))
    (state_dir / "owner").write_text(f"{os.getpid()} {proc_start_ticks(os.getpid())}\n")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    bed = Bed(state_dir)
    try:
        bed.up()
        yield bed
    finally:
        try:
            bed.down()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous)
