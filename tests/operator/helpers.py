"""Shared builders for the operator's unit tests."""

from __future__ import annotations

from typing import Any

from roomcast_operator.health import DeploymentState, PodState
from roomcast_operator.releases import Observed, Revision
from roomcast_operator.render import Owner
from roomcast_operator.spec import ClusterSpec, parse

OWNER = Owner(name="chat", namespace="prod", uid="1234-abcd")


def make_spec(**fields: Any) -> ClusterSpec:
    return parse({"image": "ghcr.io/roomcast/roomcast:1.0.0", **fields})


def complete_deployment(replicas: int = 3) -> DeploymentState:
    """A Deployment whose newest template serves every desired pod."""
    return DeploymentState(
        generation=2,
        observed_generation=2,
        replicas=replicas,
        desired_replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        deadline_exceeded=False,
    )


def two_pod_deployment(complete: bool = True) -> DeploymentState:
    """Two desired pods: all updated, or mid-rollout with one updated and a surge pod."""
    return DeploymentState(
        generation=1,
        observed_generation=1,
        replicas=2 if complete else 3,
        desired_replicas=2,
        updated_replicas=2 if complete else 1,
        ready_replicas=2,
        available_replicas=2,
        deadline_exceeded=False,
    )


def observed_pass(
    revisions: list[Revision],
    status: dict[str, Any],
    *,
    running: int | None = None,
    complete: bool = True,
    pods: list[PodState] | None = None,
    rollback_to: int | None = None,
    invalid: str | None = None,
) -> Observed:
    """What the reconciler observes in one pass over the two-pod Deployment: ``running``
    is the revision its template carries (the status's currentRevision when None)."""
    return Observed(
        revisions=list(revisions),
        deployment=two_pod_deployment(complete),
        deployment_revision=running if running is not None else status.get("currentRevision"),
        pods=pods or [],
        rollback_request=rollback_to,
        invalid_spec=invalid,
    )
