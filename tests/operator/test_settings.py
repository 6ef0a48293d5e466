"""Operator settings from the environment, and the Lease's namespace."""

from __future__ import annotations

import pytest

from roomcast_operator.settings import OperatorSettings


def test_defaults_and_overrides() -> None:
    default = OperatorSettings.from_environ({})
    assert default == OperatorSettings()
    assert default.leader_election and default.lease_duration_seconds == 60
    settings = OperatorSettings.from_environ(
        {
            "ROOMCAST_OPERATOR_LEADER_ELECTION": "false",
            "ROOMCAST_OPERATOR_CONNECTIONS_STATUS_INTERVAL_SECONDS": "5",
            "ROOMCAST_OPERATOR_NAMESPACE": "chat",
            "ROOMCAST_OPERATOR_SCRAPE_METRICS": "0",
        }
    )
    assert not settings.leader_election and not settings.scrape_metrics
    assert settings.connections_status_interval_seconds == 5.0
    assert settings.lease_scope() == "chat"
    explicit = OperatorSettings.from_environ({"ROOMCAST_OPERATOR_LEASE_NAMESPACE": "ops"})
    assert explicit.lease_scope() == "ops"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROOMCAST_OPERATOR_RESYNC_INTERVAL_SECONDS", "fast", "is not a number"),
        ("ROOMCAST_OPERATOR_LEASE_RENEW_SECONDS", "50", "renew < deadline < duration"),
    ],
)
def test_bad_values_are_clear_errors(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OperatorSettings.from_environ({variable: value})
