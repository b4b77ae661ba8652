"""Client-side DP: the clip bound holds and the noise has the asked-for scale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedota.client.training import ClientDp, clip_update, global_norm, privatize


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float32, st.integers(1, 200), elements=st.floats(-1e6, 1e6, width=32)),
    arrays(np.float32, (3, 4), elements=st.floats(-1e6, 1e6, width=32)),
    st.floats(1e-3, 1e3),
)
def test_clipped_norm_never_exceeds_the_bound(a: np.ndarray, b: np.ndarray, clip: float) -> None:
    update = {"a": a, "b": b}
    clipped = clip_update(update, clip)
    assert global_norm(clipped) <= clip
    if global_norm(update) <= clip:  # small updates pass unchanged
        assert all(np.array_equal(clipped[k], update[k]) for k in update)
    assert all(np.array_equal(update[k], v) for k, v in {"a": a, "b": b}.items())  # not mutated


def test_noise_has_mean_zero_and_std_sigma_times_clip() -> None:
    dp = ClientDp(clip=0.5, noise_multiplier=1.3)
    zero = {"w": np.zeros((400, 500), np.float32)}
    noisy = privatize(zero, dp, np.random.default_rng(0))["w"]
    assert noisy.dtype == np.float32
    assert abs(float(noisy.mean())) < 5 * 0.65 / np.sqrt(noisy.size)
    assert float(noisy.std()) == pytest.approx(0.65, rel=0.01)


def test_privatized_update_is_the_clipped_update_plus_noise() -> None:
    rng = np.random.default_rng(1)
    update = {"w": rng.normal(0, 10, 1000).astype(np.float32)}
    dp = ClientDp(clip=1.0, noise_multiplier=0.0)
    assert global_norm(privatize(update, dp, rng)) <= 1.0
    noisy = privatize(update, ClientDp(clip=1.0, noise_multiplier=0.1), np.random.default_rng(2))
    residual = noisy["w"] - clip_update(update, 1.0)["w"]
    assert float(residual.std()) == pytest.approx(0.1, rel=0.1)


def test_non_finite_updates_and_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        clip_update({"w": np.array([np.nan], np.float32)}, 1.0)
    with pytest.raises(ValueError):
        ClientDp(clip=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        ClientDp(clip=1.0, noise_multiplier=-0.5)
