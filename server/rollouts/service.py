"""The operator's side of rollouts: create, list, show, pause, resume, abort, roll back.

Each change is one transaction with one audit row (plus one `rollout.advance`/`complete`/`abort`
row per move the policy makes in it, e.g. when a resume finds a stage already passed).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fedota.server import audit, validation
from fedota.server.cohorts import default_fleet, find_cohort
from fedota.server.errors import InvalidArgument
from fedota.server.registry.refs import find_version
from fedota.server.rollouts import policy, progress
from fedota.server.rollouts.errors import (
    CohortBusy,
    ReleaseNotFound,
    ReleaseNotReady,
    RolloutNotFound,
    RolloutSuperseded,
    RolloutTransitionNotAllowed,
)
from fedota.server.rollouts.policy import Thresholds
from fedota.server.rollouts.views import RolloutView, rollout_views
from fedota.storage.db import Database
from fedota.storage.models import (
    ActorType,
    DeviceUpdate,
    Release,
    ReleaseState,
    Rollout,
    RolloutStage,
    RolloutState,
    StageState,
    UpdateState,
)
from fedota.storage.types import new_id

ROLLOUT_ID_PREFIX = "rol"
STAGE_ID_PREFIX = "rst"
MAX_REASON_CHARS = 500
_MAX_ID_CHARS = 40
_TICK = dt.timedelta(microseconds=1)
_ROLLOUT_ID = re.compile(rf"{ROLLOUT_ID_PREFIX}_[0-9a-f]{{1,32}}")


def rollout_id(field: str, value: str) -> str:
    """Raises:
    InvalidArgument: empty, too long, or not `rol_<hex>`.
    """
    validation.text(field, value, _MAX_ID_CHARS, required=True)
    if not _ROLLOUT_ID.fullmatch(value):
        raise InvalidArgument(field, f"{value!r} is not a rollout id of the form rol_<hex>")
    return value


def _reason(value: str) -> str:
    return validation.text("reason", value, MAX_REASON_CHARS, multiline=True)


def _find_release(session: Session, value: str) -> Release:
    """A release by id, or the newest ready release of `family@vN`.

    Raises:
        InvalidArgument: a malformed `family@vN`.
        NotFound: no such version (see `find_version`).
        ReleaseNotFound: no release of that id, or none of that version.
        ReleaseNotReady: the release (or the version's newest release) is not ready.
    """
    if "@" not in value:
        release = session.get(Release, value)
        if release is None:
            raise ReleaseNotFound(value)
        if release.state != ReleaseState.READY:
            raise ReleaseNotReady(release.id, release.state.value)
        return release
    version = find_version(session, "release", value)
    releases = list(
        session.scalars(
            select(Release)
            .where(Release.version_id == version.id)
            .order_by(Release.created_at.desc(), Release.id.desc())
        )
    )
    if not releases:
        raise ReleaseNotFound(value)
    ready = [release for release in releases if release.state == ReleaseState.READY]
    if not ready:
        raise ReleaseNotReady(releases[0].id, releases[0].state.value)
    return ready[0]


def _active_rollout(session: Session, cohort_id: str) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.active_cohort_id == cohort_id)).first()


def create(
    database: Database,
    actor: audit.Actor,
    *,
    release: str,
    cohort: str,
    stage_percents: Sequence[float],
    thresholds: Thresholds,
    now: dt.datetime,
) -> RolloutView:
    """Start rolling `release` (an id or `family@vN`) out to `cohort`, stage 1 assigned at once.

    Raises:
        InvalidRolloutPolicy: bad stages (see `policy.stage_fractions`).
        InvalidArgument: a malformed release or cohort name.
        NotFound, ReleaseNotFound: no such release, version or cohort.
        ReleaseNotReady: the release is still building, failed, or was withdrawn.
        CohortBusy: the cohort already has a running or paused rollout.
    """
    fractions = policy.stage_fractions(stage_percents)
    validation.text("release", release, 80, required=True)
    cohort_name = validation.cohort_name("cohort", cohort)
    created_by = actor.id if actor.type == ActorType.OPERATOR else None
    try:
        with database.transaction() as session:
            found = _find_release(session, release)
            target = find_cohort(session, default_fleet(session), cohort_name)
            busy = _active_rollout(session, target.id)
            if busy is not None:
                raise CohortBusy(cohort_name, busy.id, busy.state.value)
            # A cohort's devices follow its newest rollout: keep creation times strictly
            # increasing per cohort, even across replicas whose clocks disagree a little.
            latest = session.scalar(
                select(func.max(Rollout.created_at)).where(Rollout.cohort_id == target.id)
            )
            created_at = now if latest is None else max(now, latest + _TICK)
            rollout = Rollout(
                id=new_id(ROLLOUT_ID_PREFIX),
                release_id=found.id,
                cohort_id=target.id,
                active_cohort_id=target.id,
                state=RolloutState.RUNNING,
                success_threshold=thresholds.success,
                max_failure=thresholds.max_failure,
                current_stage=0,
                reason="",
                created_by=created_by,
                created_at=created_at,
                stages=[
                    RolloutStage(
                        id=new_id(STAGE_ID_PREFIX),
                        index=index,
                        fraction=fraction,
                        state=StageState.ACTIVE if index == 0 else StageState.WAITING,
                        started_at=now if index == 0 else None,
                    )
                    for index, fraction in enumerate(fractions)
                ],
            )
            session.add(rollout)
            # The unique active cohort refuses a concurrent create here, before any device row.
            session.flush()
            assigned = progress.assign_members(session, rollout, 0, now)
            audit.record(
                session,
                actor,
                "rollout.create",
                "rollout",
                rollout.id,
                {
                    "release": found.id,
                    "cohort": cohort_name,
                    "stages": [policy.format_percent(f) for f in fractions],
                    "success_threshold": thresholds.success,
                    "max_failure": thresholds.max_failure,
                    "assigned": assigned,
                },
            )
            progress.settle(session, rollout, now, "rollout created")
            return rollout_views(session, [rollout])[0]
    except IntegrityError as exc:
        # Another replica's create for the same cohort committed between our check and insert.
        with database.session() as session:
            rival = _active_rollout(
                session, find_cohort(session, default_fleet(session), cohort_name).id
            )
        if rival is None:
            raise
        raise CohortBusy(cohort_name, rival.id, rival.state.value) from exc


def list_rollouts(database: Database, cohort: str | None = None) -> list[RolloutView]:
    """Every rollout, newest first; only `cohort`'s when given.

    Raises:
        InvalidArgument: a malformed cohort name.
        NotFound: no such cohort.
    """
    with database.session() as session:
        query = (
            select(Rollout)
            .options(selectinload(Rollout.stages))
            .order_by(Rollout.created_at.desc(), Rollout.id.desc())
        )
        if cohort:
            name = validation.cohort_name("cohort", cohort)
            query = query.where(
                Rollout.cohort_id == find_cohort(session, default_fleet(session), name).id
            )
        return rollout_views(session, list(session.scalars(query)))


def get(database: Database, rollout: str) -> RolloutView:
    """One rollout with its per-stage counts and the policy's current reading.

    Raises:
        InvalidArgument: a malformed id.
        RolloutNotFound: no such rollout.
    """
    wanted = rollout_id("id", rollout)
    with database.session() as session:
        found = session.get(Rollout, wanted)
        if found is None:
            raise RolloutNotFound(wanted)
        return rollout_views(session, [found])[0]


@dataclass(frozen=True)
class _Move:
    verb: str
    participle: str
    allowed_from: frozenset[RolloutState]


_PAUSE = _Move("pause", "paused", frozenset({RolloutState.RUNNING}))
_RESUME = _Move("resume", "resumed", frozenset({RolloutState.PAUSED}))
_ABORT = _Move("abort", "aborted", frozenset({RolloutState.RUNNING, RolloutState.PAUSED}))


def _move(
    database: Database, actor: audit.Actor, move: _Move, rollout: str, reason: str, now: dt.datetime
) -> RolloutView:
    wanted = rollout_id("id", rollout)
    why = _reason(reason)
    with database.transaction() as session:
        found = progress.lock(session, wanted)
        previous = found.state
        if previous not in move.allowed_from:
            raise RolloutTransitionNotAllowed(wanted, previous.value, move.participle)
        said = why or f"{move.participle} by an operator"
        if move is _ABORT:
            stage = found.stages[found.current_stage]
            stage.state, stage.finished_at = StageState.FAILED, now
            progress.finish(found, RolloutState.ABORTED, said, now)
        else:
            found.state = RolloutState.PAUSED if move is _PAUSE else RolloutState.RUNNING
            found.reason = said
        audit.record(
            session,
            actor,
            f"rollout.{move.verb}",
            "rollout",
            wanted,
            {"from": previous.value, "to": found.state.value, "reason": why},
        )
        if move is _RESUME:
            progress.settle(session, found, now, "rollout resumed")
        return rollout_views(session, [found])[0]


def pause(
    database: Database, actor: audit.Actor, rollout: str, reason: str, now: dt.datetime
) -> RolloutView:
    """Stop new assignments (devices already under way may finish; failures still abort).

    Raises:
        InvalidArgument: a malformed id or reason.
        RolloutNotFound: no such rollout.
        RolloutTransitionNotAllowed: the rollout is not running.
    """
    return _move(database, actor, _PAUSE, rollout, reason, now)


def resume(
    database: Database, actor: audit.Actor, rollout: str, reason: str, now: dt.datetime
) -> RolloutView:
    """Run a paused rollout again; a stage that passed meanwhile advances at once.

    Raises:
        InvalidArgument: a malformed id or reason.
        RolloutNotFound: no such rollout.
        RolloutTransitionNotAllowed: the rollout is not paused.
    """
    return _move(database, actor, _RESUME, rollout, reason, now)


def abort(
    database: Database, actor: audit.Actor, rollout: str, reason: str, now: dt.datetime
) -> RolloutView:
    """Stop the rollout for good; devices keep what they run (see `rollback`).

    Raises:
        InvalidArgument: a malformed id or reason.
        RolloutNotFound: no such rollout.
        RolloutTransitionNotAllowed: the rollout already completed or aborted.
    """
    return _move(database, actor, _ABORT, rollout, reason, now)


def rollback(
    database: Database, actor: audit.Actor, rollout: str, reason: str, now: dt.datetime
) -> RolloutView:
    """Send every device the rollout updated back to the artifact it ran before (aborting the
    rollout if it still runs). Devices that report healthy later are sent back as they report.

    Raises:
        InvalidArgument: a malformed id or reason.
        RolloutNotFound: no such rollout.
        RolloutTransitionNotAllowed: the rollout was already rolled back.
        RolloutSuperseded: the cohort has a newer rollout.
    """
    wanted = rollout_id("id", rollout)
    why = _reason(reason)
    with database.transaction() as session:
        found = progress.lock(session, wanted)
        if found.rolled_back_at is not None:
            raise RolloutTransitionNotAllowed(wanted, "rolled back", "rolled back again")
        newest = session.scalars(
            select(Rollout.id)
            .where(Rollout.cohort_id == found.cohort_id)
            .order_by(Rollout.created_at.desc(), Rollout.id.desc())
            .limit(1)
        ).one()
        if newest != wanted:
            raise RolloutSuperseded(wanted, newest)
        previous = found.state
        sent_back = session.execute(
            update(DeviceUpdate)
            .where(
                DeviceUpdate.rollout_id == wanted,
                DeviceUpdate.state == UpdateState.HEALTHY,
                DeviceUpdate.rollback.is_(False),
                DeviceUpdate.from_artifact_id.is_not(None),
            )
            .values(
                rollback=True,
                state=UpdateState.ASSIGNED,
                reason=f"rollback: {why}" if why else "rollback",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        stranded = len(
            session.scalars(
                select(DeviceUpdate.id).where(
                    DeviceUpdate.rollout_id == wanted,
                    DeviceUpdate.state == UpdateState.HEALTHY,
                    DeviceUpdate.from_artifact_id.is_(None),
                )
            ).all()
        )
        said = (
            f"rolled back by an operator{': ' + why if why else ''}; {sent_back} devices sent "
            f"back, {stranded} without a recorded previous model stay"
        )
        found.rolled_back_at = now
        if previous in (RolloutState.RUNNING, RolloutState.PAUSED):
            stage = found.stages[found.current_stage]
            stage.state, stage.finished_at = StageState.FAILED, now
            progress.finish(found, RolloutState.ABORTED, said, now)
        else:
            found.reason = said
        audit.record(
            session,
            actor,
            "rollout.rollback",
            "rollout",
            wanted,
            {
                "from": previous.value,
                "to": found.state.value,
                "reason": why,
                "sent_back": sent_back,
                "stranded": stranded,
            },
        )
        return rollout_views(session, [found])[0]


__all__ = [
    "MAX_REASON_CHARS",
    "ROLLOUT_ID_PREFIX",
    "abort",
    "create",
    "get",
    "list_rollouts",
    "pause",
    "resume",
    "rollback",
    "rollout_id",
]
