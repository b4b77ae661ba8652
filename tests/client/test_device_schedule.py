"""The I/O-free core: backoff, jitter and renewal decisions."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedota.client import DaemonConfig
from fedota.client.schedule import backoff_delay, jittered, renewal_due, renewal_point

EPOCH = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
seeds = st.integers(min_value=0, max_value=2**32)


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=10, max_value=600),
    seed=seeds,
)
def test_backoff_stays_within_the_exponential_bound_and_the_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))

    assert 0 <= delay <= min(cap, base * 2.0 ** min(attempt, 64))


def test_backoff_bound_grows_then_saturates() -> None:
    rng = random.Random(7)
    samples = {n: [backoff_delay(n, 1.0, 300.0, rng) for _ in range(2000)] for n in (0, 3, 20)}

    # Full jitter: uniform up to the bound, so the largest sample is near the bound.
    assert 0.95 < max(samples[0]) <= 1.0
    assert 7.6 < max(samples[3]) <= 8.0
    assert 285 < max(samples[20]) <= 300.0
    assert min(samples[20]) < 15  # still spread all the way down: no synchronized retries


@pytest.mark.parametrize(("attempt", "base", "cap"), [(-1, 1.0, 2.0), (0, 0.0, 2.0), (0, 1.0, 0.0)])
def test_backoff_rejects_nonsense(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, base, cap, random.Random(0))


@given(
    interval=st.floats(min_value=0.01, max_value=86400),
    fraction=st.floats(min_value=0, max_value=0.99),
    seed=seeds,
)
def test_jitter_stays_within_the_fraction(interval: float, fraction: float, seed: int) -> None:
    value = jittered(interval, fraction, random.Random(seed))

    assert interval * (1 - fraction) * (1 - 1e-9) <= value <= interval * (1 + fraction) * (1 + 1e-9)


def test_jitter_spreads_both_ways() -> None:
    rng = random.Random(3)
    values = [jittered(30.0, 0.1, rng) for _ in range(500)]

    assert min(values) < 28 and max(values) > 32


lifetimes = st.timedeltas(min_value=dt.timedelta(minutes=1), max_value=dt.timedelta(days=400))
fractions = st.floats(min_value=0.05, max_value=0.95)


@given(lifetime=lifetimes, fraction=fractions, elapsed=st.floats(min_value=0, max_value=1.5))
def test_renewal_is_due_exactly_from_the_fraction_of_the_lifetime(
    lifetime: dt.timedelta, fraction: float, elapsed: float
) -> None:
    not_after = EPOCH + lifetime
    now = EPOCH + lifetime * elapsed
    point = renewal_point(EPOCH, not_after, fraction)

    assert renewal_due(EPOCH, not_after, now, fraction=fraction) == (now >= point)
    assert renewal_due(EPOCH, not_after, now, fraction=fraction, coordinator_asked=True)
    assert EPOCH < point < not_after


@given(lifetime=lifetimes, fraction=fractions, a=st.floats(0, 1.5), b=st.floats(0, 1.5))
def test_once_due_a_renewal_stays_due(
    lifetime: dt.timedelta, fraction: float, a: float, b: float
) -> None:
    early, late = sorted((EPOCH + lifetime * a, EPOCH + lifetime * b))

    if renewal_due(EPOCH, EPOCH + lifetime, early, fraction=fraction):
        assert renewal_due(EPOCH, EPOCH + lifetime, late, fraction=fraction)


def test_default_renewal_point_is_two_thirds_of_a_30_day_certificate() -> None:
    not_after = EPOCH + dt.timedelta(days=30)
    fraction = DaemonConfig().renew_fraction

    assert renewal_point(EPOCH, not_after, fraction) == EPOCH + dt.timedelta(days=20)
    assert not renewal_due(
        EPOCH, not_after, EPOCH + dt.timedelta(days=19, hours=23), fraction=fraction
    )
    assert renewal_due(EPOCH, not_after, EPOCH + dt.timedelta(days=20), fraction=fraction)


def test_empty_lifetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        renewal_point(EPOCH, EPOCH, 0.5)


@pytest.mark.parametrize(
    "changes",
    [
        {"rpc_timeout": 0},
        {"backoff_base": 2.0, "backoff_cap": 1.0},
        {"heartbeat_jitter": 1.0},
        {"renew_fraction": 1.0},
        {"reconnect_backoff_max": 0},
    ],
)
def test_config_rejects_unsafe_values(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="DaemonConfig"):
        DaemonConfig(**changes)
