"""Who may open a WebSocket: one decision for every upgrade path.

Refusals are HTTP answers before the upgrade, so a load balancer or browser sees a
plain status: 503 while draining or at the connection limit (try another pod), 403
for a foreign Origin.
"""

from __future__ import annotations

from collections.abc import Sized

from .node import Node
from .origins import OriginPolicy


def upgrade_refusal(
    node: Node,
    open_connections: Sized,
    origins: OriginPolicy,
    origin: str | None,
    host: str | None,
    subprotocols: str,
) -> tuple[int, str] | None:
    """``(status, text)`` when the upgrade must be refused, else None."""
    if node.draining:
        return 503, "draining"
    limit = node.settings.client.connection_limit
    if limit and len(open_connections) >= limit:
        return 503, "connection limit"
    if not origins.allows(origin, host):
        return 403, "origin not allowed"
    return None
