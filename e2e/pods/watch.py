"""Reading the server pods' /metrics while something happens to them.

The same numbers the operator reads: open connections and disconnects by code, per pod,
sampled often enough to time each pod's drain.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from dataclasses import dataclass, field

from e2e.kube import Obj
from e2e.pods.release import Release

_SAMPLE = re.compile(r"^(roomcast_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$")


def scrape(pod_ip: str, timeout: float = 0.5) -> dict[str, float]:
    """A pod's Roomcast samples by name plus labels (what the operator reads too)."""
    with urllib.request.urlopen(f"http://{pod_ip}:8000/metrics", timeout=timeout) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def busiest(release: Release) -> tuple[Obj, float]:
    """The serving pod with the most open connections, and that number."""
    live = [p for p in release.server_pods() if not p["metadata"].get("deletionTimestamp")]
    counts = [(p, scrape(p["status"]["podIP"])["roomcast_connections"]) for p in live]
    return max(counts, key=lambda item: item[1])


@dataclass
class DrainTimeline:
    """One pod's connections over time, as its /metrics reported them."""

    pod: str
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(time, open connections, 3001 disconnects so far)."""

    def shutdown_closes(self) -> tuple[float, float] | None:
        """(first, last) time the pod's 3001 count rose, relative to the first sample."""
        rises = [
            t
            for (t, _, n), (_, _, before) in zip(self.samples[1:], self.samples, strict=False)
            if n > before
        ]
        return (rises[0], rises[-1]) if rises else None


class MetricsWatch:
    """Samples every server pod's /metrics in the background while something happens."""

    def __init__(self, release: Release, interval: float = 0.25) -> None:
        self.release = release
        self.interval = interval
        self.timelines: dict[str, DrainTimeline] = {}
        self._start = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        found: list[Obj] = []
        listed_at = 0.0
        while not stop.is_set():
            # Listing pods costs a kubectl call; scraping them is cheap.
            if time.monotonic() - listed_at > 2.0:
                found = await asyncio.to_thread(self.release.server_pods)
                listed_at = time.monotonic()
            for pod in found:
                ip = pod.get("status", {}).get("podIP")
                if not ip:
                    continue
                try:
                    samples = await asyncio.to_thread(scrape, ip)
                except OSError:
                    continue
                line = self.timelines.setdefault(
                    pod["metadata"]["name"], DrainTimeline(pod["metadata"]["name"])
                )
                shutdown = sum(
                    v
                    for k, v in samples.items()
                    if k.startswith("roomcast_disconnects_total") and 'code="3001"' in k
                )
                line.samples.append(
                    (
                        time.monotonic() - self._start,
                        samples.get("roomcast_connections", 0.0),
                        shutdown,
                    )
                )
            await asyncio.sleep(self.interval)

    def drains(self) -> dict[str, dict[str, float]]:
        """Per drained pod: when its shutdown closes began and how long they took."""
        result = {}
        for name, line in self.timelines.items():
            window = line.shutdown_closes()
            if window is None:
                continue
            peak = max(c for _, c, _ in line.samples)
            result[name] = {
                "first_close_s": round(window[0], 2),
                "spread_s": round(window[1] - window[0], 2),
                "closed": max(n for _, _, n in line.samples),
                "peak_connections": peak,
            }
        return result
