"""Operator settings, from ``ROOMCAST_OPERATOR_*`` environment variables.

The only place the operator reads its environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        default = cls()
        resync = env.get("ROOMCAST_OPERATOR_RESYNC_INTERVAL_SECONDS")
        timeout = env.get("ROOMCAST_OPERATOR_SCRAPE_TIMEOUT_SECONDS")
        return cls(
            resync_interval_seconds=float(resync or default.resync_interval_seconds),
            scrape_metrics=env.get("ROOMCAST_OPERATOR_SCRAPE_METRICS", "true").lower()
            not in ("0", "false", "no"),
            scrape_timeout_seconds=float(timeout or default.scrape_timeout_seconds),
            namespace=env.get("ROOMCAST_OPERATOR_NAMESPACE", ""),
        )
