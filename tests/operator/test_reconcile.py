"""The reconciler's readers: pods, rollback requests, ControllerRevisions."""

from __future__ import annotations

from datetime import UTC, datetime

from roomcast_operator import render
from roomcast_operator.reconcile import controller_revision, pod_state, rollback_request
from roomcast_operator.releases import Revision

from .helpers import OWNER, make_spec

NOW = datetime(2026, 1, 1, 12, 1, 0, tzinfo=UTC)


def test_pod_state_reads_revision_readiness_and_restarts() -> None:
    pod = {
        "metadata": {
            "name": "chat-abc",
            "creationTimestamp": "2026-01-01T12:00:00Z",
            "annotations": {"roomcast.io/revision": "4"},
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"restartCount": 3}],
        },
    }
    state = pod_state(pod, NOW)
    assert (state.name, state.revision, state.ready, state.restarts) == ("chat-abc", 4, False, 3)
    assert state.age_seconds == 60
    assert not state.terminating


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
