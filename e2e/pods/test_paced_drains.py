"""At most ``drain.maxDrainingPods`` pods drain at once, in a rollout and in a scale-in.

Three loaded pods on the real node, ``maxSurge: 2``, 3 s + 3 s drains. A watch on the server
pods counts the terminating ones at every change (not by polling, so a brief overlap is not
missed):

1. a rollout with ``maxDrainingPods: 2``: maxSurge stays 2, and each new pod counts as
   available only a drain after it is Ready (``minReadySeconds``), so each of the two
   chains of steps has one old pod draining at a time: never more than two;
2. the same rollout back with ``maxDrainingPods: 1`` (maxSurge capped at 1): one pod
   terminating at a time, in every step, the Deployment controller's last one (scaling
   the old ReplicaSet to zero once the new one is available, which no pause holds)
   included;
3. ``minReplicas`` from 3 to 1 (autoscaling off): the operator steps the replica count
   down one pod per drain: never more than one terminating.

Afterwards every acknowledged publication is checked against every subscriber.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from e2e.bed import eventually
from e2e.pods.images import IMAGE, NEXT_IMAGE
from e2e.pods.release import CLUSTER_NAME, Release, loaded
from e2e.pods.report import write_report

CLIENTS = 100

# Two rollouts and a scale-in, each paced one drain at a time, on top of the install; the first
# suite of a session also builds the images within its setup.
pytestmark = pytest.mark.timeout(600)


@dataclass
class TerminatingWatch:
    """The server pods' terminating count, updated on every watch event."""

    release: Release
    terminating: set[str] = field(default_factory=set)
    timeline: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    """(time, the pods terminating from then on), one entry per watch event."""
    _process: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _start: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        kube = self.release.kube
        selector = f"app.kubernetes.io/instance={CLUSTER_NAME},app.kubernetes.io/component=server"
        self._process = subprocess.Popen(
            [
                kube.kubectl, f"--kubeconfig={kube.kubeconfig}", "get", "pods",
                "-n", self.release.namespace, "-l", selector, "--watch", "--output-watch-events",
                "-o", 'jsonpath={.type} {.object.metadata.name} '
                '{.object.metadata.deletionTimestamp}{"\\n"}',
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            parts = line.split()
            if len(parts) < 2:
                continue
            kind, name, deleting = parts[0], parts[1], len(parts) > 2
            with self._lock:
                if kind == "DELETED":
                    self.terminating.discard(name)
                elif deleting:
                    self.terminating.add(name)
                self.timeline.append((time.monotonic() - self._start, frozenset(self.terminating)))

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def mark(self) -> float:
        return time.monotonic() - self._start

    def since(self, mark: float) -> list[tuple[float, frozenset[str]]]:
        """The timeline from ``mark`` (a :meth:`mark`) on, starting with the state then."""
        with self._lock:
            before = [(mark, names) for t, names in self.timeline if t < mark][-1:]
            return before + [(t, names) for t, names in self.timeline if t >= mark]

    def peak(self, mark: float) -> int:
        """The most pods terminating at once since ``mark``."""
        return max((len(names) for _, names in self.since(mark)), default=0)

    def overlaps(self, mark: float) -> list[dict[str, Any]]:
        """Each stretch since ``mark`` with more than one pod terminating: when, how long,
        which pods."""
        timeline = self.since(mark)
        found = []
        ends = [t for t, _ in timeline[1:]] + [self.mark()]
        for (t, names), end in zip(timeline, ends, strict=True):
            if len(names) > 1:
                found.append({"at": round(t, 2), "seconds": round(end - t, 2),
                              "pods": sorted(names)})  # fmt: skip
        return found


def _live(release: Release) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in release.server_pods()
        if not p["metadata"].get("deletionTimestamp")
    ]


async def _settled(release: Release, watch: TerminatingWatch, pods: int) -> None:
    """Wait until ``pods`` live pods serve and none is terminating."""

    def done() -> bool:
        return len(_live(release)) == pods and not watch.terminating

    await asyncio.to_thread(eventually, done, 180, what=f"{pods} pods, none draining")


async def test_drains_are_paced_in_rollouts_and_scale_in(release: Release) -> None:
    watch = TerminatingWatch(release)
    figures: dict[str, Any] = {}
    rollout = {"maxSurge": 2, "progressDeadlineSeconds": 120}
    async with loaded(
        release, clients=CLIENTS, drain={"preStopSeconds": 3, "drainWindowSeconds": 3,
                                         "maxDrainingPods": 2}, rollout=rollout
    ) as traffic:  # fmt: skip
        watch.start()
        try:
            # 1. Two drains at a time: two chains of steps.
            since, started = watch.mark(), time.monotonic()
            release.patch_spec({"image": NEXT_IMAGE})
            await asyncio.to_thread(release.wait_serving, NEXT_IMAGE, 180)
            await _settled(release, watch, 3)
            figures["rollout_limit_2"] = {
                "max_draining": watch.peak(since),
                "seconds": round(time.monotonic() - started, 1),
                "overlaps": watch.overlaps(since),
            }

            # 2. The same rollout with at most one pod draining.
            since, started = watch.mark(), time.monotonic()
            release.patch_spec({"image": IMAGE, "drain": {"maxDrainingPods": 1}})
            await asyncio.to_thread(release.wait_serving, IMAGE, 180)
            await _settled(release, watch, 3)
            figures["rollout_limit_1"] = {
                "max_draining": watch.peak(since),
                "seconds": round(time.monotonic() - started, 1),
                "overlaps": watch.overlaps(since),
            }

            # 3. Scale-in by two pods with autoscaling off.
            since, started = watch.mark(), time.monotonic()
            release.patch_spec({"minReplicas": 1})
            await _settled(release, watch, 1)
            figures["scale_in_paced"] = {
                "from": 3,
                "to": 1,
                "max_draining": watch.peak(since),
                "seconds": round(time.monotonic() - started, 1),
            }
            await asyncio.to_thread(eventually, traffic.all_connected, 60, what="clients back")
            await traffic.stop_publishing()
            await traffic.settle(timeout=60)
        finally:
            watch.stop()

    report = traffic.verify()
    write_report("paced-drains", {**report.to_dict(), **figures})
    assert report.lost == 0
    # Never more than the limit, in any step of a rollout, the last one included.
    assert figures["rollout_limit_2"]["max_draining"] <= 2, figures
    assert figures["rollout_limit_1"]["max_draining"] == 1, figures
    assert figures["scale_in_paced"]["max_draining"] == 1, figures
