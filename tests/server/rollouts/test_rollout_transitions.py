"""How a status report moves a device's update record (pure)."""

from __future__ import annotations

import pytest

from fedota.server.rollouts.transitions import Refused, Step, next_step
from fedota.storage.models import UpdateState as S

FORWARD, BACK = False, True


@pytest.mark.parametrize(
    ("state", "rollback", "reported", "expected"),
    [
        # Forward: any working state in any order (a restarted daemon downloads again).
        (S.ASSIGNED, FORWARD, S.DOWNLOADING, Step(S.DOWNLOADING, "")),
        (S.APPLYING, FORWARD, S.DOWNLOADING, Step(S.DOWNLOADING, "")),
        (S.DOWNLOADING, FORWARD, S.DOWNLOADING, None),
        (S.HEALTH_CHECKING, FORWARD, S.HEALTHY, Step(S.HEALTHY, "ok")),
        (S.ASSIGNED, FORWARD, S.FAILED, Step(S.FAILED, "ok")),
        (S.HEALTH_CHECKING, FORWARD, S.ROLLED_BACK, Step(S.ROLLED_BACK, "ok")),
        # Retried outcomes change nothing.
        (S.HEALTHY, FORWARD, S.HEALTHY, None),
        (S.FAILED, FORWARD, S.FAILED, None),
        (S.ROLLED_BACK, FORWARD, S.ROLLED_BACK, None),
        # The way back: healthy on the previous model means rolled back.
        (S.ASSIGNED, BACK, S.DOWNLOADING, Step(S.DOWNLOADING, "")),
        (S.APPLYING, BACK, S.HEALTHY, Step(S.ROLLED_BACK, "ok")),
        (S.APPLYING, BACK, S.FAILED, Step(S.FAILED, "rollback failed: ok")),
        (S.HEALTH_CHECKING, BACK, S.ROLLED_BACK, Step(S.FAILED, "rollback failed: ok")),
        (S.ROLLED_BACK, BACK, S.HEALTHY, None),
        (S.FAILED, BACK, S.ROLLED_BACK, None),
    ],
)
def test_reports_move_the_record(
    state: S, rollback: bool, reported: S, expected: Step | None
) -> None:
    assert next_step(state, rollback, reported, "ok") == expected


@pytest.mark.parametrize(
    ("state", "rollback", "reported"),
    [
        (S.HEALTHY, FORWARD, S.FAILED),
        (S.HEALTHY, FORWARD, S.DOWNLOADING),
        (S.FAILED, FORWARD, S.HEALTHY),
        (S.ROLLED_BACK, FORWARD, S.HEALTHY),
        (S.ROLLED_BACK, BACK, S.DOWNLOADING),
        (S.FAILED, BACK, S.HEALTHY),
        (S.DOWNLOADING, FORWARD, S.ASSIGNED),
    ],
)
def test_reports_after_an_outcome_are_refused(state: S, rollback: bool, reported: S) -> None:
    with pytest.raises(Refused):
        next_step(state, rollback, reported, "")
