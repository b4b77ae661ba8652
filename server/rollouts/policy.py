"""The rollout policy: stages, thresholds, which devices a stage holds, and what to do next.

Pure: no database, no clock, no I/O. The service (`fedota.server.rollouts.service`) feeds it
counts it read in a transaction and applies the decision it returns, in the same transaction.

- Stages are cumulative shares of the cohort, increasing, the last 100%: `1%,10%,50%,100%`.
- Membership: a device's bucket is a stable hash of (rollout id, device id) onto [0, 1); the
  device belongs to the first stage whose cumulative fraction is above its bucket. Any replica,
  any restart, computes the same buckets, so a cohort's 1% is the same devices every time; a
  device that joins the cohort later is hashed by the same rule. Hashing the rollout id too means
  each rollout picks other canaries (the same few devices do not always go first).
- Decision over the current stage's counts (failures are `failed + rolled_back`):
  1. abort when failures/assigned of the current stage is above `max_failure`;
  2. abort when failures/assigned over every stage so far is above `max_failure` (stragglers of a
     stage that already passed still count);
  3. advance (or complete, at the last stage) when the stage holds no devices: a 1% stage of a
     10-device cohort usually holds none, and waiting on it would stall the rollout forever; the
     reason says so, and the next stage's gate still applies;
  4. advance (or complete) when healthy/assigned reaches `success_threshold`;
  5. otherwise stay.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fedota.server.rollouts.errors import InvalidRolloutPolicy

MAX_STAGES = 20
DEFAULT_SUCCESS_PERCENT = 95.0
DEFAULT_MAX_FAILURE_PERCENT = 5.0
_PERCENT = re.compile(r"(?P<number>[0-9]{1,3}(?:\.[0-9]{1,4})?)\s*%?")
# Counts are compared with thresholds as `part >= fraction * whole`; the float product can miss an
# exact tie (95% of 20 devices) by an ulp, and no real threshold comes within this of an integer.
_TIE = 1e-6
# 53 bits: exactly representable as a float, so buckets compare exactly against fractions.
_BUCKET_BITS = 53


def format_percent(fraction: float) -> str:
    """`0.01` as `1%`, `2/3` as `66.67%`."""
    text = f"{fraction * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def parse_percent(field: str, text: str) -> float:
    """A percentage written as `95%` or `95` (at most 4 decimals), as a number of percent.

    Raises:
        InvalidRolloutPolicy: not a number in [0, 100].
    """
    match = _PERCENT.fullmatch(text.strip())
    value = float(match["number"]) if match else math.nan
    if not 0 <= value <= 100:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidRolloutPolicy(field, f"{shown!r} is not a percentage from 0% to 100%")
    return value


def stage_fractions(percents: Sequence[float]) -> tuple[float, ...]:
    """Cumulative stage percentages as fractions of the cohort: `[1, 10, 100]` -> `(.01, .1, 1.0)`.

    Raises:
        InvalidRolloutPolicy: no stages, more than MAX_STAGES, a value outside (0, 100] or not
            finite, values not strictly increasing, or a last stage other than 100%.
    """
    if not percents:
        raise InvalidRolloutPolicy("stages", "at least one stage is required, e.g. 1%,10%,100%")
    if len(percents) > MAX_STAGES:
        raise InvalidRolloutPolicy(
            "stages", f"at most {MAX_STAGES} stages are allowed (got {len(percents)})"
        )
    for position, percent in enumerate(percents, start=1):
        if not (math.isfinite(percent) and 0 < percent <= 100):
            raise InvalidRolloutPolicy(
                "stages", f"stage {position} is {percent}%; each stage must be in (0%, 100%]"
            )
        if position > 1 and percent <= percents[position - 2]:
            raise InvalidRolloutPolicy(
                "stages",
                f"stage {position} ({percent:g}%) must be above stage {position - 1} "
                f"({percents[position - 2]:g}%): stages are cumulative shares of the cohort",
            )
    if percents[-1] != 100:
        raise InvalidRolloutPolicy("stages", f"the last stage must be 100% (got {percents[-1]:g}%)")
    return tuple(percent / 100 for percent in percents)


def parse_stages(text: str) -> tuple[float, ...]:
    """`1%,10%,50%,100%` (the `%` signs are optional) as cumulative fractions.

    Raises:
        InvalidRolloutPolicy: a part that is not a percentage, or any rule of `stage_fractions`.
    """
    parts = text.split(",")
    if len(parts) > MAX_STAGES:
        raise InvalidRolloutPolicy(
            "stages", f"at most {MAX_STAGES} stages are allowed (got {len(parts)})"
        )
    return stage_fractions([parse_percent("stages", part) for part in parts])


@dataclass(frozen=True)
class Thresholds:
    """Fractions in [0, 1]: a stage passes at `success` healthy, aborts above `max_failure`.

    Raises (on construction):
        InvalidRolloutPolicy: `success` outside (0, 1] or `max_failure` outside [0, 1).
    """

    success: float = DEFAULT_SUCCESS_PERCENT / 100
    max_failure: float = DEFAULT_MAX_FAILURE_PERCENT / 100

    def __post_init__(self) -> None:
        if not (math.isfinite(self.success) and 0 < self.success <= 1):
            raise InvalidRolloutPolicy(
                "success_threshold",
                f"must be above 0% and at most 100% (got {format_percent(self.success)})",
            )
        if not (math.isfinite(self.max_failure) and 0 <= self.max_failure < 1):
            raise InvalidRolloutPolicy(
                "max_failure",
                f"must be at least 0% and below 100% (got {format_percent(self.max_failure)})",
            )

    @classmethod
    def from_percents(cls, success: float, max_failure: float) -> Thresholds:
        """Raises:
        InvalidRolloutPolicy: see the class.
        """
        return cls(success / 100, max_failure / 100)


def bucket(rollout_id: str, device_id: str) -> float:
    """Where a device falls in [0, 1) for one rollout: stable across processes and replicas."""
    digest = hashlib.sha256(f"fedota.rollout\0{rollout_id}\0{device_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _BUCKET_BITS)) / 2**_BUCKET_BITS


def within(rollout_id: str, device_id: str, fraction: float) -> bool:
    """Whether the device belongs to the share `fraction` of the cohort (a stage or below)."""
    return bucket(rollout_id, device_id) < fraction


def stage_of(rollout_id: str, device_id: str, fractions: Sequence[float]) -> int:
    """The index of the first stage whose cumulative fraction holds the device.

    Raises:
        ValueError: `fractions` does not end at 1.0 (use `stage_fractions` to build it).
    """
    if not fractions or fractions[-1] != 1.0:
        raise ValueError(f"stage fractions must end at 1.0, got {list(fractions)}")
    point = bucket(rollout_id, device_id)
    return next(index for index, fraction in enumerate(fractions) if point < fraction)


@dataclass(frozen=True)
class StageCounts:
    """Devices assigned to a stage and where they stand; the rest of `assigned` is in progress.

    Raises (on construction):
        ValueError: a negative count, or more outcomes than assigned devices.
    """

    assigned: int = 0
    healthy: int = 0
    failed: int = 0
    rolled_back: int = 0

    def __post_init__(self) -> None:
        parts = (self.healthy, self.failed, self.rolled_back)
        if min(self.assigned, *parts) < 0 or sum(parts) > self.assigned:
            raise ValueError(f"inconsistent stage counts: {self}")

    @property
    def failures(self) -> int:
        """A failed update and one the device rolled back both count against the stage."""
        return self.failed + self.rolled_back

    @property
    def in_progress(self) -> int:
        return self.assigned - self.healthy - self.failed - self.rolled_back

    def __add__(self, other: StageCounts) -> StageCounts:
        return StageCounts(
            self.assigned + other.assigned,
            self.healthy + other.healthy,
            self.failed + other.failed,
            self.rolled_back + other.rolled_back,
        )


class Verdict(enum.StrEnum):
    STAY = "stay"
    ADVANCE = "advance"
    COMPLETE = "complete"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    """What to do with the rollout at `stage` (0-based), and why, in one line for an operator."""

    verdict: Verdict
    stage: int
    reason: str


def stage_label(fractions: Sequence[float], index: int) -> str:
    """`stage 2 (10%)`: 1-based, as operators count."""
    return f"stage {index + 1} ({format_percent(fractions[index])})"


def _ratio(part: int, whole: int) -> str:
    return format_percent(part / whole)


def _reaches(part: int, whole: int, fraction: float) -> bool:
    return part >= fraction * whole - _TIE


def _exceeds(part: int, whole: int, fraction: float) -> bool:
    return part > fraction * whole + _TIE


def decide(
    fractions: Sequence[float],
    current: int,
    counts: Sequence[StageCounts],
    thresholds: Thresholds,
) -> Decision:
    """Stay, advance to stage `current + 1`, complete, or abort (see the module's rules).

    `counts[i]` holds stage i's devices for every stage up to `current` (later ones are ignored).

    Raises:
        ValueError: `current` is not a stage index, or `counts` does not cover it.
    """
    if not 0 <= current < len(fractions) or len(counts) <= current:
        raise ValueError(
            f"stage {current} is not one of {len(fractions)} stages with {len(counts)} counts"
        )
    label = stage_label(fractions, current)
    stage = counts[current]
    limit = format_percent(thresholds.max_failure)
    if _exceeds(stage.failures, stage.assigned, thresholds.max_failure):
        return Decision(
            Verdict.ABORT,
            current,
            f"{label}: {stage.failures} of {stage.assigned} devices failed "
            f"({_ratio(stage.failures, stage.assigned)} > max {limit})",
        )
    so_far = sum(counts[: current + 1], StageCounts())
    if current and _exceeds(so_far.failures, so_far.assigned, thresholds.max_failure):
        return Decision(
            Verdict.ABORT,
            current,
            f"stages 1-{current + 1} ({format_percent(fractions[current])}): {so_far.failures} "
            f"of {so_far.assigned} devices failed "
            f"({_ratio(so_far.failures, so_far.assigned)} > max {limit})",
        )
    onward = Verdict.COMPLETE if current == len(fractions) - 1 else Verdict.ADVANCE
    if not stage.assigned:
        return Decision(onward, current, f"{label} holds no devices")
    needed = format_percent(thresholds.success)
    healthy = f"{label}: {stage.healthy} of {stage.assigned} devices healthy"
    share = _ratio(stage.healthy, stage.assigned)
    if _reaches(stage.healthy, stage.assigned, thresholds.success):
        return Decision(onward, current, f"{healthy} ({share} >= {needed})")
    return Decision(
        Verdict.STAY,
        current,
        f"{healthy} ({share} < {needed}), {stage.failures} failed, {stage.in_progress} in progress",
    )


__all__ = [
    "DEFAULT_MAX_FAILURE_PERCENT",
    "DEFAULT_SUCCESS_PERCENT",
    "MAX_STAGES",
    "Decision",
    "StageCounts",
    "Thresholds",
    "Verdict",
    "bucket",
    "decide",
    "format_percent",
    "parse_percent",
    "parse_stages",
    "stage_fractions",
    "stage_label",
    "stage_of",
    "within",
]
