"""Leader election over a ``coordination.k8s.io`` Lease: of all operator processes
sharing a Lease, one acts and the others wait.

The algorithm is client-go's. The holder renews the Lease every ``renew_seconds``; a
candidate takes it over only once it has seen the same Lease record, unchanged, for
``duration_seconds`` on its own clock (so clocks of different machines never have to
agree), or at once when the holder released it on shutdown. Every write carries the
``resourceVersion`` it was decided on, so of two candidates racing for an expired
Lease exactly one wins. A leader that cannot renew for ``deadline_seconds`` (less than
the duration, so it stops before anyone else may start) gives up: the process exits
and its replacement starts as a candidate with no state from the old term.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .kube import ApiError, Kube, object_path

Obj = dict[str, Any]
log = logging.getLogger("roomcast_operator")

LEASE_API = "coordination.k8s.io/v1"


def default_identity() -> str:
    """The pod's name (HOSTNAME) plus a random suffix: unique even across restarts."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{secrets.token_hex(4)}"


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    duration_seconds: float = 60.0
    renew_seconds: float = 15.0
    deadline_seconds: float = 40.0
    retry_seconds: float = 5.0


class LeaderElector:
    """Campaigns for the Lease and keeps it; ``leading`` is set while this process leads."""

    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        clock: Callable[[], float],
    ) -> None:
        self.kube = kube
        self.config = config
        self._clock = clock
        self.leading = asyncio.Event()
        self._renewed_at = 0.0
        self._observed: tuple[str, float] | None = None  # (resourceVersion, seen at)
        self._path = object_path(LEASE_API, "Lease", config.namespace, config.name)
        self._taken = False

    def is_leader(self) -> bool:
        """Leading, and the last renewal is recent enough that nobody else may lead yet."""
        recent = self._clock() - self._renewed_at < self.config.deadline_seconds
        return self.leading.is_set() and recent

    async def run(self, on_lost: Callable[[], None]) -> None:
        """Campaign until elected, then renew; call ``on_lost`` and return if the Lease is lost."""
        cfg = self.config
        log.info("leader election: %s/%s as %s", cfg.namespace, cfg.name, cfg.identity)
        while True:
            attempt = self._clock()  # the Lease's validity runs from before the request
            try:
                held = await self._acquire_or_renew()
            except (ApiError, OSError) as error:
                log.warning("leader election: %s", error)
                held = False
            if held:
                self._renewed_at = attempt
                if not self.leading.is_set():
                    log.info("leader election: %s leads", cfg.identity)
                    self.leading.set()
            elif self.leading.is_set() and (self._taken or not self.is_leader()):
                log.error("leader election: lease lost to another holder or not renewed")
                self.leading.clear()
                on_lost()
                return
            # A leader whose renewal failed retries sooner, as a candidate does.
            renewed = held and self.leading.is_set()
            await asyncio.sleep(cfg.renew_seconds if renewed else cfg.retry_seconds)

    async def _acquire_or_renew(self) -> bool:
        cfg = self.config
        now = datetime.now(UTC)
        lease = await self.kube.get(self._path)
        if lease is None:
            body = {
                "apiVersion": LEASE_API,
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": self._spec(now, None),
            }
            try:
                created = await self.kube.create(body)
            except ApiError as error:
                if error.status == 409:  # another candidate created it first
                    return False
                raise
            self._observe(created)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(lease)
        if holder and holder != cfg.identity:
            self._taken = self.leading.is_set()
            duration = float(spec.get("leaseDurationSeconds") or cfg.duration_seconds)
            assert self._observed is not None
            if self._clock() - self._observed[1] < duration:
                return False  # held by someone who renewed within the duration
        body = {**lease, "spec": self._spec(now, spec)}
        try:
            updated = await self.kube.request("PUT", self._path, body=body)
        except ApiError as error:
            if error.status == 409:  # changed since read: someone else renewed or took it
                return False
            raise
        self._observe(updated or {})
        return True

    def _spec(self, now: datetime, old: Obj | None) -> Obj:
        cfg = self.config
        ours = old is not None and old.get("holderIdentity") == cfg.identity
        transitions = int((old or {}).get("leaseTransitions") or 0)
        return {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": int(cfg.duration_seconds),
            "acquireTime": (old or {}).get("acquireTime") if ours else _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions if ours or old is None else transitions + 1,
        }

    def _observe(self, lease: Obj) -> None:
        version = (lease.get("metadata") or {}).get("resourceVersion", "")
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, self._clock())

    async def release(self) -> None:
        """On shutdown: hand the Lease back so a standby takes over at once."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = await self.kube.get(self._path)
            if (
                lease is None
                or (lease.get("spec") or {}).get("holderIdentity") != self.config.identity
            ):
                return
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
            spec["renewTime"] = _micro_time(datetime.now(UTC))
            await self.kube.request("PUT", self._path, body={**lease, "spec": spec})
            log.info("leader election: lease released")
        except (ApiError, OSError) as error:
            log.warning("leader election: lease not released: %s", error)
