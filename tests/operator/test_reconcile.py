"""The reconciler's readers: rollback requests, ControllerRevisions."""

from __future__ import annotations

import dataclasses

from roomcast_operator import render
from roomcast_operator.health import PodMetrics, PodState
from roomcast_operator.reconcile import (
    _steady,
    controller_revision,
    cost_to_write,
    rollback_request,
)
from roomcast_operator.releases import Observed, Plan, Revision

from .helpers import OWNER, complete_deployment, make_spec


def test_rollback_request_from_field_or_annotation() -> None:
    assert rollback_request({"metadata": {}, "spec": {"rollbackTo": 3}}) == 3
    annotated = {"metadata": {"annotations": {"roomcast.io/rollback-to": " 2 "}}, "spec": {}}
    assert rollback_request(annotated) == 2
    garbage = {"metadata": {"annotations": {"roomcast.io/rollback-to": "last"}}, "spec": {}}
    assert rollback_request(garbage) is None


def test_controller_revision_holds_the_whole_release() -> None:
    release = render.release_of(make_spec())
    obj = controller_revision(OWNER, Revision(5, release))
    assert obj["metadata"]["name"] == f"chat-{release.hash}"
    assert obj["metadata"]["labels"]["roomcast.io/release-hash"] == release.hash
    assert obj["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert obj["revision"] == 5
    assert render.Release.from_data(obj["data"]) == release


def test_deletion_cost_moves_only_two_buckets_away() -> None:
    assert cost_to_write(None, 5) == "4"  # never written
    assert cost_to_write("4", 7) is None  # same bucket
    assert cost_to_write("4", 8) is None  # hovering at a power of two: one bucket
    assert cost_to_write("4", 3) is None
    assert cost_to_write("4", 16) == "16"
    assert cost_to_write("4", 1) == "1"
    assert cost_to_write("0", 1) is None
    assert cost_to_write("0", 2) == "2"
    assert cost_to_write("garbage", 0) == "0"


def test_clients_are_moved_for_balance_only_in_a_steady_fleet() -> None:
    run = Revision(2, render.release_of(make_spec()))
    pod = PodState("a", 2, True, 0, 600.0, metrics=PodMetrics(connections=10))
    pods = [pod, dataclasses.replace(pod, name="b")]
    done = {"releases": [{"revision": 2, "outcome": "Succeeded"}]}

    def steady(status: dict[str, object], pods: list[PodState], **plan: object) -> bool:
        observed = Observed([run], complete_deployment(2), 2, pods, None)
        return _steady(Plan(status=status, run=run, **plan), observed)  # type: ignore[arg-type]

    assert steady(done, pods)
    assert not steady({"releases": [{"revision": 2, "outcome": "Progressing"}]}, pods)
    assert not steady(done, pods, paused=True)
    assert not steady(done, [pod, dataclasses.replace(pod, name="b", terminating=True)])
    assert not steady(done, [pod, dataclasses.replace(pod, name="b", ready=False)])
    assert not steady(done, [pod, dataclasses.replace(pod, name="b", metrics=None)])
    assert not steady(done, [pod, dataclasses.replace(pod, name="b", revision=1)])
