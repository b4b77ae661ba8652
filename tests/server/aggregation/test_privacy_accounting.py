"""A campaign's (epsilon, delta) from dp-accounting, and the DP norm bound the server checks."""

from __future__ import annotations

import numpy as np
import pytest

from fedota.server.aggregation import (
    DpParams,
    ModelSpec,
    Round,
    TrainingSettings,
    campaign_epsilon,
    noisy_update_norm_bound,
)


def test_matches_the_known_value_from_the_library_tests() -> None:
    # dp-accounting's rdp_privacy_accountant_test: sigma 4.530877117 with q = 1 is (1, 1e-6)-DP.
    spent = campaign_epsilon(
        DpParams(clip=1.0, noise_multiplier=4.530877117, delta=1e-6),
        rounds=1,
        clients_per_round=20,
        eligible_devices=20,
    )
    assert spent.sampling_rate == 1.0
    assert spent.epsilon == pytest.approx(1.0, abs=1e-3)


def test_epsilon_decreases_with_sigma_and_grows_with_rounds_and_sampling() -> None:
    def eps(sigma: float, rounds: int = 50, per_round: int = 10) -> float:
        params = DpParams(clip=1.0, noise_multiplier=sigma)
        return campaign_epsilon(
            params, rounds=rounds, clients_per_round=per_round, eligible_devices=1000
        ).epsilon

    by_sigma = [eps(s) for s in (0.6, 0.8, 1.0, 1.5, 3.0)]
    assert by_sigma == sorted(by_sigma, reverse=True) and len(set(by_sigma)) == 5
    assert eps(1.0, rounds=10) < eps(1.0, rounds=50) < eps(1.0, rounds=200)
    assert eps(1.0, per_round=5) < eps(1.0, per_round=10) < eps(1.0, per_round=100)


def test_no_rounds_spend_nothing() -> None:
    spent = campaign_epsilon(DpParams(1.0, 1.0), rounds=0, clients_per_round=1, eligible_devices=2)
    assert spent.epsilon == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: DpParams(clip=0, noise_multiplier=1),
        lambda: DpParams(clip=1, noise_multiplier=float("nan")),
        lambda: DpParams(clip=1, noise_multiplier=1, delta=1.0),
        lambda: campaign_epsilon(DpParams(1, 1), rounds=3, clients_per_round=5, eligible_devices=4),
        lambda: campaign_epsilon(
            DpParams(1, 1), rounds=-1, clients_per_round=1, eligible_devices=4
        ),
    ],
)
def test_bad_privacy_parameters_are_value_errors(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_honest_noisy_updates_pass_the_dp_norm_bound() -> None:
    rng = np.random.default_rng(3)
    params = DpParams(clip=0.5, noise_multiplier=1.2)
    start = {"a": np.zeros((64, 32), np.float32), "b": np.zeros(10, np.float32)}
    settings = TrainingSettings(dp=params)
    limits = settings.update_limits(ModelSpec.of(start))
    assert limits.max_norm == pytest.approx(noisy_update_norm_bound(params, 64 * 32 + 10))
    assert not settings.weight_by_examples
    round_ = Round(settings.build_strategy(), start, limits)
    for i in range(20):
        clipped = {n: np.full(a.shape, 1.0, np.float32) for n, a in start.items()}
        scale = params.clip / np.sqrt(sum(a.size for a in clipped.values()))
        noisy = {
            n: (a * scale + rng.normal(0, 0.6, a.shape)).astype(np.float32)
            for n, a in clipped.items()
        }
        assert round_.offer(f"d{i}", noisy, 5).accepted
    assert not round_.offer("big", {n: a + 100 for n, a in start.items()}, 5).accepted
