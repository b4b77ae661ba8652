"""When to retry, when to beat, when to renew: pure functions of time and a random source."""

from __future__ import annotations

import datetime as dt
import random


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (0 for the first): exponential with full jitter.

    Uniform in [0, min(cap, base * 2**attempt)], the "full jitter" of the AWS Architecture Blog's
    "Exponential Backoff And Jitter", so a fleet that lost its coordinator does not come back in
    lockstep.

    Raises:
        ValueError: a negative attempt, or a non-positive base or cap.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0 or cap <= 0:
        raise ValueError(f"base and cap must be positive, got {base} and {cap}")
    # 2**attempt overflows a float past ~1024 attempts; the cap is reached long before.
    bound = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return rng.uniform(0.0, bound)


def jittered(interval: float, fraction: float, rng: random.Random) -> float:
    """`interval` stretched or cut by a random share of at most `fraction` (0.1 is ±10%).

    Raises:
        ValueError: a non-positive interval or a fraction outside [0, 1).
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    return interval * rng.uniform(1.0 - fraction, 1.0 + fraction)


def renewal_point(not_before: dt.datetime, not_after: dt.datetime, fraction: float) -> dt.datetime:
    """The moment `fraction` of the certificate's lifetime has passed.

    Raises:
        ValueError: a fraction outside (0, 1) or a lifetime that ends before it starts.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not_after <= not_before:
        raise ValueError(f"certificate lifetime is empty: {not_before} .. {not_after}")
    return not_before + (not_after - not_before) * fraction


def renewal_due(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    *,
    fraction: float,
    coordinator_asked: bool = False,
) -> bool:
    """Whether the device should renew its certificate now.

    Due when the coordinator asked (its clock or policy knows better), or when `fraction` of the
    lifetime has passed by the local clock (so a device renews even if the coordinator never says).

    Raises:
        ValueError: as `renewal_point`.
    """
    return coordinator_asked or now >= renewal_point(not_before, not_after, fraction)


__all__ = ["backoff_delay", "jittered", "renewal_due", "renewal_point"]
