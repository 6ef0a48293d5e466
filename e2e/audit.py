"""Writes made by one ServiceAccount, read from the bed API server's audit log.

The bed logs every create, update, patch and delete a ServiceAccount makes (metadata
only: who, what, when, the answer's code), so a test can count exactly the API writes
an operator made over a period, apart from everything the controllers and kwok write.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from e2e.bed import AUDIT_LOG, Bed


@dataclass(frozen=True)
class Write:
    at: datetime
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int

    @property
    def what(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {resource} {self.namespace}/{self.name} ({self.code})"


def audit_log(bed: Bed) -> Path:
    state = bed.state()
    if state is None:
        raise RuntimeError("the bed is not running")
    return Path(state.run_dir) / AUDIT_LOG


def writes_by(bed: Bed, namespace: str, service_account: str, since: datetime) -> list[Write]:
    """Every write the ServiceAccount made from ``since`` (timezone-aware) on."""
    user = f"system:serviceaccount:{namespace}:{service_account}"
    found = []
    path = audit_log(bed)
    for line in path.read_text().splitlines() if path.exists() else []:
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != user:
            continue
        at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if at < since:
            continue
        ref = event.get("objectRef") or {}
        found.append(
            Write(
                at,
                event["verb"],
                ref.get("resource", ""),
                ref.get("subresource", ""),
                ref.get("namespace", ""),
                ref.get("name", ""),
                int((event.get("responseStatus") or {}).get("code", 0)),
            )
        )
    return found


def summary(writes: list[Write]) -> str:
    """One line per kind of write, most frequent first."""
    counts = Counter(
        f"{w.verb} {w.resource}{'/' + w.subresource if w.subresource else ''}" for w in writes
    )
    return ", ".join(f"{n}x {what}" for what, n in counts.most_common()) or "none"
