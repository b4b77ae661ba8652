"""The pure policy: stage and threshold rules, the decision table, and stable membership."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from fedota.server.rollouts.errors import InvalidRolloutPolicy
from fedota.server.rollouts.policy import (
    StageCounts,
    Thresholds,
    Verdict,
    bucket,
    decide,
    parse_percent,
    parse_stages,
    stage_fractions,
    stage_of,
    within,
)

FOUR = (0.01, 0.1, 0.5, 1.0)
DEFAULT = Thresholds()


@pytest.mark.parametrize(
    ("text", "fractions"),
    [
        ("1%,10%,50%,100%", FOUR),
        ("100%", (1.0,)),
        ("0.5, 5 ,100", (0.005, 0.05, 1.0)),
        ("33.25%,100", (0.3325, 1.0)),
    ],
)
def test_stages_parse_to_cumulative_fractions(text: str, fractions: tuple[float, ...]) -> None:
    assert parse_stages(text) == pytest.approx(fractions)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not a percentage from 0% to 100%"),
        ("1%,10%", "the last stage must be 100% (got 10%)"),
        ("10%,5%,100%", "stage 2 (5%) must be above stage 1 (10%)"),
        ("10%,10%,100%", "stage 2 (10%) must be above stage 1 (10%)"),
        ("0%,100%", "stage 1 is 0.0%; each stage must be in (0%, 100%]"),
        ("150%,100%", "'150%' is not a percentage"),
        ("-5%,100%", "'-5%' is not a percentage"),
        ("ten%,100%", "'ten%' is not a percentage"),
        ("1%,,100%", "'' is not a percentage"),
        ("nan,100", "'nan' is not a percentage"),
        (",".join(["100"] * 21), "at most 20 stages are allowed (got 21)"),
    ],
)
def test_bad_stages_are_refused_with_the_rule(text: str, message: str) -> None:
    with pytest.raises(InvalidRolloutPolicy) as raised:
        parse_stages(text)
    assert raised.value.field == "stages"
    assert message in str(raised.value)


@pytest.mark.parametrize("percents", [[], [math.nan, 100], [math.inf], [50, 100.5], [-1, 100]])
def test_bad_stage_numbers_are_refused(percents: list[float]) -> None:
    with pytest.raises(InvalidRolloutPolicy):
        stage_fractions(percents)


@pytest.mark.parametrize(
    ("success", "max_failure", "field"),
    [
        (0.0, 0.05, "success_threshold"),
        (1.01, 0.05, "success_threshold"),
        (math.nan, 0.05, "success_threshold"),
        (0.95, 1.0, "max_failure"),
        (0.95, -0.01, "max_failure"),
        (0.95, math.inf, "max_failure"),
    ],
)
def test_bad_thresholds_are_refused(success: float, max_failure: float, field: str) -> None:
    with pytest.raises(InvalidRolloutPolicy) as raised:
        Thresholds(success, max_failure)
    assert raised.value.field == field


def test_threshold_edges_and_percent_parsing() -> None:
    assert Thresholds(1.0, 0.0) == Thresholds.from_percents(100, 0)
    assert Thresholds.from_percents(99.5, 0.5) == Thresholds(0.995, 0.005)
    assert parse_percent("success_threshold", " 95% ") == 95
    with pytest.raises(InvalidRolloutPolicy, match=re.escape("success_threshold: '95.12345%'")):
        parse_percent("success_threshold", "95.12345%")


def sc(assigned: int, healthy: int = 0, failed: int = 0, rolled_back: int = 0) -> StageCounts:
    return StageCounts(assigned, healthy, failed, rolled_back)


@pytest.mark.parametrize(
    ("current", "counts", "thresholds", "verdict", "reason"),
    [
        (
            0,
            [sc(3, 0, 2)],
            DEFAULT,
            Verdict.ABORT,
            "stage 1 (1%): 2 of 3 devices failed (66.67% > max 5%)",
        ),
        (
            0,
            [sc(3, 1, 0, 1)],
            DEFAULT,
            Verdict.ABORT,
            "stage 1 (1%): 1 of 3 devices failed (33.33% > max 5%)",
        ),
        (
            0,
            [sc(3, 3)],
            DEFAULT,
            Verdict.ADVANCE,
            "stage 1 (1%): 3 of 3 devices healthy (100% >= 95%)",
        ),
        (0, [sc(0)], DEFAULT, Verdict.ADVANCE, "stage 1 (1%) holds no devices"),
        (
            0,
            [sc(3, 2)],
            DEFAULT,
            Verdict.STAY,
            "stage 1 (1%): 2 of 3 devices healthy (66.67% < 95%), 0 failed, 1 in progress",
        ),
        # At the thresholds exactly: 95% healthy advances, 5% failed does not abort.
        (
            1,
            [sc(3, 3), sc(20, 19, 1)],
            DEFAULT,
            Verdict.ADVANCE,
            "stage 2 (10%): 19 of 20 devices healthy (95% >= 95%)",
        ),
        (
            1,
            [sc(3, 3), sc(1000, 949)],
            DEFAULT,
            Verdict.STAY,
            "949 of 1000 devices healthy (94.9% < 95%)",
        ),
        (
            1,
            [sc(3, 3), sc(20, 18, 0, 2)],
            DEFAULT,
            Verdict.ABORT,
            "2 of 20 devices failed (10% > max 5%)",
        ),
        # Stragglers of a stage that passed count: 5 of 50 so far failed.
        (
            1,
            [sc(10, 5, 5), sc(40)],
            Thresholds(0.5, 0.05),
            Verdict.ABORT,
            "stages 1-2 (10%): 5 of 50 devices failed (10% > max 5%)",
        ),
        (
            3,
            [sc(1, 1), sc(9, 9), sc(40, 40), sc(50, 48, 1)],
            DEFAULT,
            Verdict.COMPLETE,
            "stage 4 (100%): 48 of 50 devices healthy (96% >= 95%)",
        ),
        (
            3,
            [sc(0), sc(0), sc(0), sc(0)],
            DEFAULT,
            Verdict.COMPLETE,
            "stage 4 (100%) holds no devices",
        ),
        (
            0,
            [sc(100, 99, 1)],
            Thresholds(0.5, 0.0),
            Verdict.ABORT,
            "1 of 100 devices failed (1% > max 0%)",
        ),
        (0, [sc(3, 2)], Thresholds(1.0, 0.5), Verdict.STAY, "(66.67% < 100%)"),
        (0, [sc(3, 3)], Thresholds(1.0, 0.5), Verdict.ADVANCE, "(100% >= 100%)"),
    ],
)
def test_decision_table(
    current: int, counts: list[StageCounts], thresholds: Thresholds, verdict: Verdict, reason: str
) -> None:
    decision = decide(FOUR, current, counts, thresholds)
    assert (decision.verdict, decision.stage) == (verdict, current)
    assert reason in decision.reason


def test_decide_refuses_a_stage_it_has_no_counts_for() -> None:
    with pytest.raises(ValueError, match="stage 4 is not one of 4 stages"):
        decide(FOUR, 4, [sc(0)] * 5, DEFAULT)
    with pytest.raises(ValueError):
        decide(FOUR, 2, [sc(0)] * 2, DEFAULT)


def test_counts_must_add_up() -> None:
    with pytest.raises(ValueError):
        StageCounts(2, 2, 1)
    with pytest.raises(ValueError):
        StageCounts(-1)
    assert sc(10, 5, 2, 1).in_progress == 2 and sc(10, 5, 2, 1).failures == 3


DEVICES = [f"dev_{index:016x}" for index in range(20_000)]


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_stage_shares_match_their_fractions(fraction: float) -> None:
    inside = sum(within("rol_00000000000000aa", device, fraction) for device in DEVICES)
    sigma = math.sqrt(fraction * (1 - fraction) * len(DEVICES))
    assert abs(inside - fraction * len(DEVICES)) < 5 * sigma


def test_stages_nest_and_stage_of_agrees_with_within() -> None:
    rollout = "rol_00000000000000bb"
    for device in DEVICES[:2000]:
        index = stage_of(rollout, device, FOUR)
        assert [within(rollout, device, f) for f in FOUR] == [k >= index for k in range(4)]
        assert 0 <= bucket(rollout, device) < 1


def test_each_rollout_picks_other_canaries() -> None:
    first = {d for d in DEVICES if within("rol_0000000000000001", d, 0.1)}
    second = {d for d in DEVICES if within("rol_0000000000000002", d, 0.1)}
    # Independent 10% samples share about 1% of the devices, not all of them.
    assert len(first & second) < 0.2 * len(first)


def test_membership_is_the_same_in_another_process_with_another_hash_seed() -> None:
    sample = DEVICES[:200]
    script = (
        "import json, sys\n"
        "from fedota.server.rollouts.policy import bucket\n"
        "ids = json.load(sys.stdin)\n"
        "print(json.dumps([bucket('rol_00000000000000cc', d) for d in ids]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        check=True,
    )
    assert json.loads(done.stdout) == [bucket("rol_00000000000000cc", d) for d in sample]


def test_stage_of_needs_a_last_stage_of_everyone() -> None:
    with pytest.raises(ValueError, match=re.escape("must end at 1.0")):
        stage_of("rol_1", "dev_1", (0.1, 0.5))
