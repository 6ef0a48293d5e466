"""Paced drains: how many pods may start draining, on each path pods terminate by."""

from __future__ import annotations

from roomcast_operator import drains, render
from roomcast_operator.health import PodState

from .helpers import OWNER, make_spec


def _pod(name: str, revision: int, terminating: bool = False) -> PodState:
    return PodState(name, revision, True, 0, 60.0, terminating=terminating)


def test_draining_counts_the_terminating_pods() -> None:
    pods = [_pod("o1", 1), _pod("o0", 1, terminating=True), _pod("n1", 2)]
    assert drains.draining(pods) == 1
    assert drains.draining([*pods, _pod("n0", 2, terminating=True)]) == 2


def test_max_surge_is_capped_at_the_limit() -> None:
    assert drains.max_surge(1, 3, 1) == 1
    assert drains.max_surge(3, 3, 1) == 1
    assert drains.max_surge(3, 3, 2) == 2
    assert drains.max_surge("25%", 3, 1) == "25%"  # one pod: ceil(0.75)
    assert drains.max_surge("25%", 12, 1) == 1  # three pods
    assert drains.max_surge("25%", 12, 3) == "25%"
    assert drains.max_surge("2", 12, 1) == 1
    spec = make_spec(rollout={"maxSurge": "50%"}, drain={"maxDrainingPods": 2})
    deployment = render.deployment(OWNER, spec, render.release_of(spec), 1, replicas=10)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 2}


def test_a_new_pod_is_available_only_a_drain_after_it_is_ready() -> None:
    """minReadySeconds is what a drain takes, so the old pod removed when a new pod was
    created is gone before that pod lets the next one go, the rollout's last step too."""
    spec = make_spec(drain={"preStopSeconds": 5, "drainWindowSeconds": 30})
    deployment = render.deployment(OWNER, spec, render.release_of(spec), 1)["spec"]
    assert deployment["minReadySeconds"] == 5 + 30 + render.DRAIN_EXIT_SECONDS
    # Never longer than the kubelet lets a drain last, so a drain is what it waits.
    assert deployment["minReadySeconds"] < render.termination_grace_seconds(spec)
    # No drain to wait for (preStop and window 0): the exit alone.
    quick = make_spec(drain={"preStopSeconds": 0, "drainWindowSeconds": 0})
    assert render.min_ready_seconds(quick) == render.DRAIN_EXIT_SECONDS


def test_the_progress_deadline_outlasts_the_wait_for_availability() -> None:
    """Between Ready and available a new pod reports no progress: a deadline shorter than
    minReadySeconds would fail every rollout, so the rendered one is raised above it."""
    kept = make_spec(drain={"preStopSeconds": 5, "drainWindowSeconds": 30})
    assert render.progress_deadline_seconds(kept) == 180  # the default, above twice 40
    long_drain = make_spec(
        drain={"preStopSeconds": 10, "drainWindowSeconds": 300},
        rollout={"progressDeadlineSeconds": 120},
    )
    raised = render.PROGRESS_DEADLINE_FACTOR * (10 + 300 + render.DRAIN_EXIT_SECONDS)
    assert render.progress_deadline_seconds(long_drain) == raised
    deployment = render.deployment(OWNER, long_drain, render.release_of(long_drain), 1)["spec"]
    assert deployment["progressDeadlineSeconds"] == raised
    assert deployment["progressDeadlineSeconds"] > deployment["minReadySeconds"]
    # No drain: the schema's shortest deadline (10 s) is already twice the exit margin.
    short = make_spec(
        drain={"preStopSeconds": 0, "drainWindowSeconds": 0},
        rollout={"progressDeadlineSeconds": 10},
    )
    assert render.progress_deadline_seconds(short) == 10


def test_scale_in_steps_down_by_the_pods_that_may_still_drain() -> None:
    assert drains.replicas_step(2, 6, 0, 1) == 5
    assert drains.replicas_step(2, 5, 1, 1) == 5  # one drains: hold
    assert drains.replicas_step(2, 5, 0, 2) == 3
    assert drains.replicas_step(2, 5, 1, 2) == 4
    assert drains.replicas_step(2, 3, 0, 5) == 2  # never below the target
    assert drains.replicas_step(6, 2, 1, 1) == 6  # scaling out is never held
    assert drains.replicas_step(3, None, 0, 1) == 3  # a new Deployment


def test_evictions_are_bounded_by_the_disruption_budget() -> None:
    assert render.pod_disruption_budget(OWNER, make_spec())["spec"]["maxUnavailable"] == 1
    spec = make_spec(drain={"maxDrainingPods": 3})
    assert spec.max_draining_pods == 3
    budget = render.pod_disruption_budget(OWNER, spec)["spec"]
    assert budget == {
        "maxUnavailable": 3,
        "selector": {"matchLabels": render.selector_labels("chat")},
    }


def _live(rendered: dict, *, generation: int = 2, observed: int = 2, **status: int) -> dict:
    """The Deployment as the API server would return it after ``rendered`` was applied."""
    live = {**rendered, "metadata": {**rendered["metadata"], "generation": generation}}
    live["status"] = {"observedGeneration": observed, **status}
    return live


def test_only_a_rollout_waits_a_drain_for_availability() -> None:
    """A first install and a scale-out have no old pod to remove: their pods count as
    available when Ready. The write that changes the pod template keeps the drain, and
    so does every pass while old ReplicaSets still have pods."""
    spec = make_spec(drain={"preStopSeconds": 5, "drainWindowSeconds": 30})
    drain = 5 + 30 + render.DRAIN_EXIT_SECONDS

    def paced(live: dict | None, revision: int = 1) -> int:
        children = [render.deployment(OWNER, spec, render.release_of(spec), revision)]
        drains.pace(children, live)
        return int(children[0]["spec"]["minReadySeconds"])

    first = render.deployment(OWNER, spec, render.release_of(spec), 1)
    assert paced(None) == 0  # installed: nothing to replace
    settled = _live(first, replicas=3, updatedReplicas=3)
    assert paced(settled) == 0  # scaled, or any other pass without a new template
    assert paced(settled, revision=2) == drain  # a new release: this write starts a rollout
    second = render.deployment(OWNER, spec, render.release_of(spec), 2)
    assert paced(_live(second, replicas=4, updatedReplicas=2), revision=2) == drain
    assert paced(_live(second, replicas=3, updatedReplicas=3), revision=2) == 0  # done
    # Not yet seen by the controller: what it was last given stays.
    assert paced(_live(second, generation=3, replicas=3, updatedReplicas=3), revision=2) == drain
    second["spec"]["minReadySeconds"] = 0
    assert paced(_live(second, generation=3, replicas=3, updatedReplicas=3), revision=2) == 0
    # A Deployment from before the digest was kept: treated as rolling, once.
    del first["metadata"]["annotations"][drains.TEMPLATE_DIGEST_ANNOTATION]
    assert paced(_live(first, replicas=3, updatedReplicas=3)) == drain


def test_the_template_digest_follows_the_pod_template_only() -> None:
    spec = make_spec()
    one = render.deployment(OWNER, spec, render.release_of(spec), 1, replicas=3)
    more = render.deployment(OWNER, spec, render.release_of(spec), 1, replicas=9)
    other = render.deployment(OWNER, spec, render.release_of(spec), 2, replicas=3)
    digest = drains.TEMPLATE_DIGEST_ANNOTATION
    assert one["metadata"]["annotations"][digest] == more["metadata"]["annotations"][digest]
    assert one["metadata"]["annotations"][digest] != other["metadata"]["annotations"][digest]
