"""Releases, revisions and rollback: the operator's state machine, as a pure function.

Every distinct release (everything that reaches the pod template, see
:class:`render.Release`) gets a revision number the first time it is rolled out; going
back to identical content reuses the number. The revisions live in ControllerRevisions,
the rollout history in the status, so a restarted operator picks up exactly where the
last one stopped.

The spec is acted on when its release changes (``status.specHash``); a rollback, manual
or automatic, makes the Deployment run an older revision without touching the spec, and
the operator does not roll the spec's release out again until the spec changes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import conditions, windows
from .conditions import Condition
from .health import DeploymentState, Phase, PodState, Verdict, judge_rollout
from .render import Release, progress_deadline_seconds
from .spec import ClusterSpec
from .windows import Samples

Obj = dict[str, Any]

IN_PROGRESS = "Progressing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUPERSEDED = "Superseded"
INCONCLUSIVE_REASON = "ReleaseInconclusive"
"""The Progressing condition's reason (and the event's) while the release waits on a
cause outside it."""


@dataclass(frozen=True)
class Revision:
    number: int
    release: Release


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Observed:
    """What the cluster looks like now (read by the caller)."""

    revisions: list[Revision]
    deployment: DeploymentState | None
    deployment_revision: int | None
    pods: list[PodState]
    rollback_request: int | None
    invalid_spec: str | None = None
    samples: Samples = field(default_factory=dict)
    """Recent scrapes of the pods (see :mod:`windows`); empty without scraping."""


@dataclass
class Plan:
    """What to do: the status to write, the revision to run, what to record and say.

    ``paused``: the release is inconclusive, its rollout is held (Deployment paused)
    until the cause outside it goes away.
    """

    status: Obj
    run: Revision | None
    new_revision: Revision | None = None
    events: list[Event] = field(default_factory=list)
    clear_rollback_request: bool = False
    paused: bool = False


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _seconds_since(text: str | None, now: datetime) -> float | None:
    then = _parse_time(text)
    return None if then is None else (now - then).total_seconds()


def _record(revision: Revision, cause: str, now: str) -> Obj:
    return {
        "revision": revision.number,
        "image": revision.release.image,
        "configHash": revision.release.config_hash,
        "started": now,
        "outcome": IN_PROGRESS,
        "cause": cause,
    }


def _finish(record: Obj, outcome: str, reason: str, now: str) -> None:
    record["outcome"] = outcome
    record["reason"] = reason
    record["finished"] = now


def decide(
    spec: ClusterSpec,
    generation: int,
    status: Obj,
    spec_release: Release,
    observed: Observed,
    now: datetime,
) -> Plan:
    """The next status and actions for one RoomcastCluster."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    new = copy.deepcopy(status)
    new.pop("conditions", None)
    records: list[Obj] = new.setdefault("releases", [])
    by_number = {r.number: r for r in observed.revisions}
    by_hash = {r.release.hash: r for r in observed.revisions}
    plan = Plan(status=new, run=by_number.get(new.get("currentRevision", 0)))
    wanted: list[Condition] = []

    def start(revision: Revision, cause: str) -> None:
        if records and records[-1]["outcome"] == IN_PROGRESS:
            previous = records[-1]
            _finish(previous, SUPERSEDED, "NewRelease", stamp)
            if "available" in previous:
                # It served every pod without breaking a threshold: good enough to return to.
                new["lastGoodRevision"] = previous["revision"]
        records.append(_record(revision, cause, stamp))
        new["currentRevision"] = revision.number
        plan.run = revision

    # 1. A manual rollback request wins over everything else.
    if observed.rollback_request is not None:
        plan.clear_rollback_request = True
        target = by_number.get(observed.rollback_request)
        if target is None:
            plan.events.append(
                Event(
                    "Warning",
                    "RollbackFailed",
                    f"revision {observed.rollback_request} is not in the history "
                    f"({sorted(by_number)})",
                ),
            )
        elif target.number != new.get("currentRevision"):
            start(target, "Rollback")
            new.setdefault("specHash", spec_release.hash)
            plan.events.append(
                Event(
                    "Normal",
                    "RollingBack",
                    f"rolling back to revision {target.number} ({target.release.image}) on request",
                ),
            )
    # 2. A new release in the spec (unless its config is invalid).
    elif observed.invalid_spec is None and new.get("specHash") != spec_release.hash:
        revision = by_hash.get(spec_release.hash)
        if revision is None:
            number = max([*by_number, new.get("currentRevision", 0)]) + 1
            revision = Revision(number, spec_release)
            plan.new_revision = revision
        new["specHash"] = spec_release.hash
        new["specRevision"] = revision.number
        if revision.number != new.get("currentRevision") or not records:
            start(revision, "Spec")
            plan.events.append(
                Event(
                    "Normal",
                    "RolloutStarted",
                    f"rolling out revision {revision.number} ({spec_release.image})",
                ),
            )

    # 3. Judge the release in progress.
    current = new.get("currentRevision")
    record = records[-1] if records else None
    verdict: Verdict | None = None
    if record is not None and record["outcome"] == IN_PROGRESS and plan.run is not None:
        was_inconclusive = _was_inconclusive(status)
        resumed = 0.0 if was_inconclusive else _seconds_since(record.get("resumed"), now)
        verdict = _judge(spec, observed, record, now, resumed)
        if was_inconclusive and verdict.phase is not Phase.INCONCLUSIVE:
            record["resumed"] = stamp
        if verdict.phase is Phase.OBSERVING and "available" not in record:
            record["available"] = stamp
        elif verdict.phase is Phase.SUCCEEDED:
            _finish(record, SUCCEEDED, verdict.reason, stamp)
            new["lastGoodRevision"] = record["revision"]
            plan.events.append(Event("Normal", "ReleaseSucceeded", verdict.message))
        elif verdict.phase is Phase.INCONCLUSIVE:
            plan.paused = True
            if not _was_inconclusive(status):
                plan.events.append(
                    Event("Warning", INCONCLUSIVE_REASON, f"{verdict.reason}: {verdict.message}")
                )
        elif verdict.phase is Phase.FAILED:
            _finish(record, FAILED, verdict.reason, stamp)
            plan.events.append(Event("Warning", "ReleaseFailed", verdict.message))
            good = by_number.get(new.get("lastGoodRevision", 0))
            if spec.rollout.auto_rollback and good is not None and good.number != current:
                start(good, "AutoRollback")
                plan.events.append(
                    Event(
                        "Warning",
                        "AutoRollback",
                        f"rolling back to revision {good.number} ({good.release.image}): "
                        f"{verdict.message}",
                    ),
                )

    going_on = (Phase.PROGRESSING, Phase.OBSERVING, Phase.SUCCEEDED)
    if _was_inconclusive(status) and verdict is not None and verdict.phase in going_on:
        # A release that fails or is superseded instead says so in its own event.
        plan.events.append(Event("Normal", "ReleaseResumed", verdict.message))
    del records[: max(0, len(records) - spec.revision_history_limit)]
    wanted.extend(_conditions(spec, new, observed, verdict))
    new["conditions"] = conditions.merge(status.get("conditions") or [], wanted, generation, stamp)
    new["observedGeneration"] = generation
    if observed.deployment is not None:
        new["readyReplicas"] = observed.deployment.ready_replicas
        new["replicas"] = observed.deployment.replicas
    return plan


def _was_inconclusive(status: Obj) -> bool:
    """The previous pass found the release inconclusive (its Progressing condition says)."""
    progressing = conditions.find(status.get("conditions") or [], conditions.PROGRESSING)
    return progressing is not None and progressing.get("reason") == INCONCLUSIVE_REASON


def _judge(
    spec: ClusterSpec, observed: Observed, record: Obj, now: datetime, resumed: float | None
) -> Verdict:
    revision = record["revision"]
    if observed.deployment is None or observed.deployment_revision != revision:
        return Verdict(Phase.PROGRESSING, "Applying", f"applying revision {revision}")
    # The deadline runs from the rollout's last progress, not its start: a long rollout
    # that keeps moving is not stalled. A progress report older than the rollout is not its.
    started = _parse_time(record.get("started"))
    progress = observed.deployment.last_progress
    since = max(started, progress) if started and progress else started or progress
    return judge_rollout(
        observed.deployment,
        observed.pods,
        revision,
        spec.rollout.health,
        progress_deadline_seconds(spec),
        0.0 if since is None else (now - since).total_seconds(),
        _seconds_since(record.get("available"), now),
        windows.windows(observed.samples, revision, now, spec.rollout.health),
        resumed,
    )


def _conditions(
    spec: ClusterSpec, status: Obj, observed: Observed, verdict: Verdict | None
) -> list[Condition]:
    records: list[Obj] = status.get("releases") or []
    record = records[-1] if records else None
    current = status.get("currentRevision")
    result = []

    deployment = observed.deployment
    if deployment is None:
        result.append(Condition(conditions.READY, False, "Creating", "no Deployment yet"))
    elif deployment.available_replicas >= deployment.desired_replicas > 0:
        result.append(
            Condition(
                conditions.READY,
                True,
                "PodsAvailable",
                f"{deployment.available_replicas} pods available",
            )
        )
    else:
        result.append(
            Condition(
                conditions.READY,
                False,
                "PodsUnavailable",
                f"{deployment.available_replicas}/{deployment.desired_replicas} pods available",
            )
        )

    if record is not None and record["outcome"] == IN_PROGRESS:
        reason = "RollingBack" if record["cause"] != "Spec" else "RollingUpdate"
        message = verdict.message if verdict else f"rolling out revision {current}"
        if verdict is not None and verdict.phase is Phase.OBSERVING:
            reason = "ObservingRelease"
        if verdict is not None and verdict.phase is Phase.INCONCLUSIVE:
            # Why the rollout waits: the verdict's own reason leads the message.
            reason, message = INCONCLUSIVE_REASON, f"{verdict.reason}: {verdict.message}"
        result.append(Condition(conditions.PROGRESSING, True, reason, message))
    elif record is not None:
        result.append(
            Condition(
                conditions.PROGRESSING,
                False,
                "RolloutFinished",
                f"revision {record['revision']}: {record['outcome']}",
            )
        )

    failed = [r for r in records if r["outcome"] == FAILED]
    if observed.invalid_spec is not None:
        result.append(Condition(conditions.DEGRADED, True, "InvalidSpec", observed.invalid_spec))
    elif failed and status.get("specRevision") == failed[-1]["revision"] != current:
        result.append(
            Condition(
                conditions.DEGRADED,
                True,
                "ReleaseFailed",
                f"revision {failed[-1]['revision']} failed ({failed[-1].get('reason')}); "
                f"running revision {current}",
            )
        )
    elif record is not None and record["outcome"] == FAILED:
        result.append(
            Condition(
                conditions.DEGRADED,
                True,
                "ReleaseFailed",
                f"revision {record['revision']} failed ({record.get('reason')}) and "
                "autoRollback is off or no good revision exists",
            )
        )
    else:
        result.append(Condition(conditions.DEGRADED, False, "AsExpected", "no failed release"))

    spec_revision = status.get("specRevision")
    rollback = next((r for r in reversed(records) if r["cause"] != "Spec"), None)
    if current is not None and spec_revision is not None and current != spec_revision:
        cause = rollback["cause"] if rollback else "Rollback"
        reason = "AutoRollback" if cause == "AutoRollback" else "ManualRollback"
        result.append(
            Condition(
                conditions.ROLLED_BACK,
                True,
                reason,
                f"running revision {current}; the spec's revision {spec_revision} is not "
                "rolled out until the spec changes",
            )
        )
    elif current is not None:
        result.append(
            Condition(
                conditions.ROLLED_BACK,
                False,
                "RunningSpec",
                f"running revision {current} from the spec",
            )
        )
    return result
