"""Operator settings, from ``ROOMCAST_OPERATOR_*`` environment variables.

The only place the operator reads its environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class OperatorSettings:
    resync_interval_seconds: float = 3.0
    """How often every cluster is reconciled even without events (deadlines, observation)."""
    scrape_metrics: bool = True
    """Read new pods' /metrics for the realtime health thresholds and the connection count."""
    scrape_timeout_seconds: float = 1.0
    """Per pod; an unreachable pod only loses its metrics."""
    namespace: str = ""
    """Watch only this namespace; empty watches all namespaces."""
    connections_status_interval_seconds: float = 60.0
    """Least time between two writes of status.connections alone (the live count is each
    pod's roomcast_connections metric); other status changes carry the fresh count."""
    reapply_interval_seconds: float = 600.0
    """Children whose rendered body did not change are applied again after this long, to
    put back edits made by hand; the Deployment at once when its spec was changed."""
    discovery_interval_seconds: float = 60.0
    """How often the optional APIs (KEDA, Prometheus Operator) are looked up again."""
    leader_election: bool = True
    """Act only while holding the Lease (several replicas, or installs sharing a scope)."""
    lease_name: str = "roomcast-operator"
    lease_namespace: str = ""
    """Default: the watched namespace, else the operator pod's own, else "default"."""
    lease_duration_seconds: float = 60.0
    lease_renew_seconds: float = 15.0
    lease_deadline_seconds: float = 40.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Each field from ``ROOMCAST_OPERATOR_<FIELD>``; a bad value is a clear error."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):
            variable = f"ROOMCAST_OPERATOR_{item.name.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            default = item.default
            if isinstance(default, bool):
                values[item.name] = raw.strip().lower() not in ("0", "false", "no", "off")
            elif isinstance(default, float):
                try:
                    values[item.name] = float(raw)
                except ValueError:
                    raise ValueError(f"{variable}={raw!r} is not a number") from None
            else:
                values[item.name] = raw.strip()
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.leader_election and not (
            0
            < settings.lease_renew_seconds
            < settings.lease_deadline_seconds
            < settings.lease_duration_seconds
        ):
            raise ValueError(
                "ROOMCAST_OPERATOR_LEASE_*: need 0 < renew < deadline < duration seconds"
            )
        return settings

    def lease_scope(self) -> str:
        """The namespace of the Lease: explicit, else the watched one, else our pod's own."""
        if self.lease_namespace:
            return self.lease_namespace
        if self.namespace:
            return self.namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"
