"""What the operator last wrote, so a pass writes only what changed.

A server-side apply that changes nothing still costs the API server a request, and a
resync every few seconds times half a dozen children is hundreds of writes a minute for
an idle cluster. The operator remembers the digest of each body it applied; an object is
applied again only when its rendered body changes, when someone else changed its spec
(a Deployment's generation moved past the one our apply produced), or after
``refresh_seconds``, which puts back whatever was edited by hand on the other children.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str, str]


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


def digest(obj: Obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass
class _Written:
    digest: str
    at: float
    generation: int | None


class AppliedObjects:
    """Digests of the bodies applied (or deletions done), per object."""

    def __init__(self, refresh_seconds: float, clock: Callable[[], float]) -> None:
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._written: dict[Key, _Written] = {}

    def due(self, key: Key, body_digest: str, live_generation: int | None = None) -> bool:
        """Whether the object needs writing: new content, drifted, or not checked for long."""
        last = self._written.get(key)
        if last is None or last.digest != body_digest:
            return True
        if live_generation is not None and last.generation not in (None, live_generation):
            return True
        return self._clock() - last.at >= self.refresh_seconds

    def record(self, key: Key, body_digest: str, result: Obj | None = None) -> None:
        generation = ((result or {}).get("metadata") or {}).get("generation")
        self._written[key] = _Written(body_digest, self._clock(), generation)
