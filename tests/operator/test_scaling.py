"""Who writes the replica count: the operator, or the autoscaler it renders."""

from __future__ import annotations

from roomcast_operator import render, scaling
from roomcast_operator.render import Capabilities

from .helpers import OWNER, make_spec

KEDA = {"metricSource": "keda", "prometheusServerAddress": "http://prom:9090"}


def test_autoscaled_only_when_the_autoscaler_is_rendered() -> None:
    assert not scaling.autoscaled(make_spec(), Capabilities(True, True))
    adapter = make_spec(autoscaling={"metricSource": "prometheus-adapter"})
    assert scaling.autoscaled(adapter, Capabilities())
    # Without the KEDA API no ScaledObject exists: the operator keeps the count.
    assert not scaling.autoscaled(make_spec(autoscaling=KEDA), Capabilities())
    assert scaling.autoscaled(make_spec(autoscaling=KEDA), Capabilities(scaled_objects=True))


def _deployment(*entries: dict) -> dict:
    return {"metadata": {"name": "chat", "namespace": "prod", "managedFields": list(entries)}}


def test_owns_replicas_reads_the_applied_field_set() -> None:
    applied = {
        "manager": "roomcast-operator",
        "operation": "Apply",
        "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
    }
    without = {**applied, "fieldsV1": {"f:spec": {"f:template": {}}}}
    scaled = {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "subresource": "scale",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    assert scaling.owns_replicas(_deployment(applied))
    assert not scaling.owns_replicas(_deployment(without, scaled))
    assert scaling.owns_replicas(_deployment(scaled), "kube-controller-manager") is False
    assert not scaling.owns_replicas(_deployment())


def test_handover_body_holds_only_the_count() -> None:
    body = scaling.handover(_deployment(), 4)
    assert body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {"replicas": 4},
    }


def test_set_replicas_puts_or_leaves_out_the_field() -> None:
    spec = make_spec(minReplicas=3, autoscaling={"metricSource": "prometheus-adapter"})
    children = render.children(OWNER, spec, render.release_of(spec), 1, Capabilities())
    scaling.set_replicas(children, None)
    deployment = next(c for c in children if c["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    scaling.set_replicas(children, 3)
    assert deployment["spec"]["replicas"] == 3
