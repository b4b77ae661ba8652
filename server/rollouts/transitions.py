"""How a device's status report moves its update record (pure: no database).

A record has two legs. The forward leg installs the release: `assigned`, then any of the working
states (in any order: a daemon killed mid-apply may start its download again), then one outcome,
`healthy`, `failed` or `rolled_back` (the health check failed and the device went back). The
rollback leg, opened by an operator's `rollouts rollback` on a healthy device, installs the
artifact the device ran before: working states again, then `rolled_back` once the device reports
healthy on that artifact, or `failed` when it could not go back.

A repeated outcome is a no-op (devices retry reports whose answer they never received); any other
report after an outcome is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedota.storage.models import UpdateState

WORKING = frozenset(
    {
        UpdateState.DOWNLOADING,
        UpdateState.VERIFYING,
        UpdateState.APPLYING,
        UpdateState.HEALTH_CHECKING,
    }
)
OPEN = WORKING | {UpdateState.ASSIGNED}
OUTCOMES = frozenset({UpdateState.HEALTHY, UpdateState.FAILED, UpdateState.ROLLED_BACK})


class Refused(ValueError):
    """The report does not fit the record; the caller turns it into a typed service error."""


@dataclass(frozen=True)
class Step:
    """The record's new state and reason after a report."""

    state: UpdateState
    reason: str


def _rollback_outcome(reported: UpdateState, reason: str) -> Step:
    if reported == UpdateState.HEALTHY:
        return Step(UpdateState.ROLLED_BACK, reason)
    # ROLLED_BACK here means the previous artifact failed its health check and the device
    # switched back to the release it was meant to leave: the rollback did not take.
    return Step(UpdateState.FAILED, f"rollback failed: {reason}" if reason else "rollback failed")


def next_step(
    state: UpdateState, rollback: bool, reported: UpdateState, reason: str
) -> Step | None:
    """The record's next state for a report, or None when the report changes nothing.

    Raises:
        Refused: `reported` is `assigned` (only the coordinator assigns), or the record already
            holds another outcome.
    """
    if reported == UpdateState.ASSIGNED:
        raise Refused("assigned is set by the coordinator, not reported")
    if state in OPEN:
        if reported in WORKING:
            return None if reported == state else Step(reported, "")
        if rollback:
            return _rollback_outcome(reported, reason)
        return Step(reported, reason)
    # An outcome is final; its own repeat (or, on the rollback leg, a repeat of the report that
    # led to it) is a retried report.
    repeats = (
        {state}
        if not rollback
        else {UpdateState.HEALTHY}
        if state == UpdateState.ROLLED_BACK
        else {UpdateState.FAILED, UpdateState.ROLLED_BACK}
    )
    if reported in repeats:
        return None
    raise Refused(f"{state.value} is final")


__all__ = ["OPEN", "OUTCOMES", "WORKING", "Refused", "Step", "next_step"]
