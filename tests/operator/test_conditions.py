"""Conditions: transition times move only on status changes."""

from __future__ import annotations

from roomcast_operator import conditions
from roomcast_operator.conditions import Condition


def test_new_condition_gets_the_current_time() -> None:
    merged = conditions.merge([], [Condition("Ready", True, "PodsAvailable", "3 pods")], 4, "T1")
    assert merged == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 4,
            "lastTransitionTime": "T1",
            "reason": "PodsAvailable",
            "message": "3 pods",
        }
    ]


def test_reason_change_keeps_the_transition_time() -> None:
    first = conditions.merge([], [Condition("Ready", True, "PodsAvailable", "3")], 1, "T1")
    second = conditions.merge(first, [Condition("Ready", True, "Other", "4")], 2, "T2")
    assert second[0]["lastTransitionTime"] == "T1"
    assert second[0]["observedGeneration"] == 2


def test_status_change_moves_the_transition_time() -> None:
    first = conditions.merge([], [Condition("Ready", True, "PodsAvailable", "3")], 1, "T1")
    second = conditions.merge(first, [Condition("Ready", False, "PodsUnavailable", "")], 1, "T2")
    assert second[0]["lastTransitionTime"] == "T2"
    assert second[0]["status"] == "False"


def test_conditions_are_ordered_and_kept() -> None:
    existing = conditions.merge([], [Condition("RolledBack", False, "RunningSpec", "")], 1, "T")
    merged = conditions.merge(existing, [Condition("Ready", None, "Unknown", "")], 1, "T")
    assert [c["type"] for c in merged] == ["Ready", "RolledBack"]
    assert merged[0]["status"] == "Unknown"
