"""Which optional APIs the cluster serves (KEDA, the Prometheus Operator), kept current.

A KEDA or Prometheus Operator installed after the operator started is seen within one
refresh interval. A failed probe (API server overloaded, an aggregated API briefly
down) keeps what was known before instead of switching the feature off: turning KEDA
"off" by mistake would make the operator take the replica count back from the
autoscaler. Until a first probe has succeeded nothing is known, and passes that need
the answer wait for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .render import Capabilities

log = logging.getLogger("roomcast_operator")

Probe = Callable[[str, str], Awaitable[bool]]
"""(apiVersion, plural) -> served; raises when the API server cannot tell."""

SERVICE_MONITORS = ("monitoring.coreos.com/v1", "servicemonitors")
SCALED_OBJECTS = ("keda.sh/v1alpha1", "scaledobjects")


class CapabilitiesUnknown(Exception):
    """No discovery has succeeded yet."""


class Discovery:
    def __init__(self, probe: Probe, refresh_seconds: float, clock: Callable[[], float]) -> None:
        self._probe = probe
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._known: Capabilities | None = None
        self._checked_at = 0.0

    async def capabilities(self) -> Capabilities:
        """The current answer, probing again once ``refresh_seconds`` have passed."""
        if self._known is None or self._clock() - self._checked_at >= self.refresh_seconds:
            await self.refresh()
        if self._known is None:
            raise CapabilitiesUnknown("API discovery has not succeeded yet")
        return self._known

    async def refresh(self) -> None:
        try:
            found = Capabilities(
                service_monitors=await self._probe(*SERVICE_MONITORS),
                scaled_objects=await self._probe(*SCALED_OBJECTS),
            )
        except Exception as error:  # any failure: keep the last answer, retry next time
            log.warning("API discovery failed, keeping %s: %s", self._known, error)
            if self._known is not None:
                self._checked_at = self._clock()
            return
        if found != self._known:
            log.info("optional APIs: %s", found)
        self._known = found
        self._checked_at = self._clock()
