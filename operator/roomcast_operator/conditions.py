"""Status conditions per the Kubernetes API conventions.

Like cert-manager's ``SetCertificateCondition``: a condition carries the generation it
was computed from, and its ``lastTransitionTime`` moves only when its status changes,
never when just the reason or message do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
ROLLED_BACK = "RolledBack"
TYPES = (READY, PROGRESSING, DEGRADED, ROLLED_BACK)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(existing: list[Obj], wanted: list[Condition], generation: int, now: str) -> list[Obj]:
    """The new condition list: ``wanted`` applied over ``existing``, in TYPES order.

    Conditions not in ``wanted`` are kept unchanged.
    """
    by_type = {c["type"]: c for c in existing}
    for cond in wanted:
        old = by_type.get(cond.type)
        transition = now
        if old is not None and old.get("status") == cond.status_text:
            transition = old.get("lastTransitionTime") or now
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status_text,
            "observedGeneration": generation,
            "lastTransitionTime": transition,
            "reason": cond.reason,
            "message": cond.message,
        }
    order = {t: i for i, t in enumerate(TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def find(conditions: list[Obj], kind: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == kind), None)
