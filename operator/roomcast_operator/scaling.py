"""Who writes a Deployment's replica count: the operator, or the autoscaler it renders.

Under server-side apply a field belongs to the managers that last set it. When an HPA
(ours, or the one KEDA makes from a ScaledObject) scales the Deployment, the operator
must leave ``spec.replicas`` out of its applies, or a pass that read the count just
before the autoscaler changed it would put the old count back. Leaving a field out is
not enough on its own: a field the applier owns alone is *removed* when it drops out of
the applied configuration, and the API server then defaults it to one pod. So, as the
Kubernetes documentation advises, ownership is first handed to a second manager that
sets the same value and never applies again; the autoscaler takes the field from it on
its first decision.
"""

from __future__ import annotations

from typing import Any

from . import FIELD_MANAGER
from .render import Capabilities
from .spec import ClusterSpec

Obj = dict[str, Any]

HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"
"""Holds ``spec.replicas`` between the operator's last apply of it and the autoscaler's
first decision; it only ever applies the value already there."""


def autoscaled(spec: ClusterSpec, capabilities: Capabilities) -> bool:
    """True when an autoscaler the operator renders owns the replica count."""
    if spec.metric_source == "prometheus-adapter":
        return True
    return spec.metric_source == "keda" and capabilities.scaled_objects


def owns_replicas(deployment: Obj, manager: str = FIELD_MANAGER) -> bool:
    """Whether ``manager``'s applied configuration of the Deployment holds spec.replicas."""
    for entry in deployment["metadata"].get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        if entry.get("subresource"):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in spec:
            return True
    return False


def handover(deployment: Obj, replicas: int) -> Obj:
    """The apply body with which :data:`HANDOVER_MANAGER` takes a share of spec.replicas."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas},
    }


def set_replicas(children: list[Obj], replicas: int | None) -> None:
    """Put ``replicas`` into the rendered Deployment, or leave the field out (None)."""
    for child in children:
        if child["kind"] == "Deployment":
            if replicas is None:
                child["spec"].pop("replicas", None)
            else:
                child["spec"]["replicas"] = replicas
