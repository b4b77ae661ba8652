"""Aggregation maths: FedAvg is the weighted mean and streams; FedAdam follows the paper; the
robust strategies resist hostile updates."""

from __future__ import annotations

import numpy as np
import pytest
from aggregation_updates import honest_update
from hypothesis import given, settings
from hypothesis import strategies as st

from fedota.server.aggregation import (
    FedAdam,
    FedAvg,
    FedProx,
    Krum,
    ModelSpec,
    NotEnoughUpdates,
    Round,
    TrimmedMean,
    UpdateLimits,
    WeightedSum,
    krum_select,
    trimmed_mean,
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3),
            st.integers(1, 10_000),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_fedavg_equals_the_example_weighted_mean(updates: list) -> None:
    start = {"w": np.array([0.5, -1.0, 2.0], np.float32)}
    round_ = Round(FedAvg(), start, UpdateLimits())
    for i, (values, examples) in enumerate(updates):
        assert round_.offer(f"d{i}", {"w": np.array(values, np.float32)}, examples).accepted
    got = round_.finish().arrays["w"]
    weights = np.array([e for _, e in updates], np.float64)
    deltas = np.array([v for v, _ in updates], np.float64)
    expected = start["w"] + (weights[:, None] * deltas).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_fedprox_aggregates_as_fedavg(global_arrays: dict, rng: np.random.Generator) -> None:
    updates = [(honest_update(rng, global_arrays), float(i + 1)) for i in range(5)]
    results = []
    for strategy in (FedAvg(), FedProx(proximal_mu=0.1)):
        round_ = Round(strategy, global_arrays, UpdateLimits())
        for i, (update, examples) in enumerate(updates):
            round_.offer(f"d{i}", update, examples)
        results.append(round_.finish().arrays)
    for name in global_arrays:
        np.testing.assert_array_equal(results[0][name], results[1][name])


def test_uniform_weighting_ignores_example_counts(global_arrays: dict, rng) -> None:
    a, b = honest_update(rng, global_arrays), honest_update(rng, global_arrays)
    round_ = Round(FedAvg(), global_arrays, UpdateLimits(), weight_by_examples=False)
    round_.offer("a", a, 1)
    round_.offer("b", b, 1000)
    got = round_.finish().arrays
    for name in global_arrays:
        np.testing.assert_allclose(
            got[name], global_arrays[name] + (a[name] + b[name]) / 2, atol=1e-7
        )


def test_streaming_fedavg_state_does_not_grow_with_clients(global_arrays: dict, rng) -> None:
    spec = ModelSpec.of(global_arrays)
    accumulator = WeightedSum(spec)
    sizes = []
    for _ in range(200):
        accumulator.add(honest_update(rng, global_arrays), 3.0)
        sizes.append(accumulator.state_nbytes)
    assert accumulator.capacity is None
    assert set(sizes) == {8 * spec.numel}  # one float64 running sum per trainable value
    assert FedAdam().start_round(spec).capacity is None


def test_fedadam_follows_reddi_et_al_over_rounds(global_arrays: dict, rng) -> None:
    strategy = FedAdam(eta=0.05, beta1=0.9, beta2=0.99, tau=1e-3)
    x = {n: a.astype(np.float64) for n, a in global_arrays.items()}
    m = {n: np.zeros_like(a) for n, a in x.items()}
    v = {n: np.zeros_like(a) for n, a in x.items()}
    arrays, state = dict(global_arrays), None
    for _ in range(3):
        updates = [honest_update(rng, global_arrays) for _ in range(4)]
        round_ = Round(strategy, arrays, UpdateLimits())
        for i, update in enumerate(updates):
            round_.offer(f"d{i}", update, 2.0)
        outcome = round_.finish(state)
        arrays, state = outcome.arrays, outcome.state
        for n in x:
            delta = np.mean([u[n] for u in updates], axis=0)
            m[n] = 0.9 * m[n] + 0.1 * delta
            v[n] = 0.99 * v[n] + 0.01 * delta**2
            x[n] = x[n] + 0.05 * m[n] / (np.sqrt(v[n]) + 1e-3)
    for n in x:
        np.testing.assert_allclose(arrays[n], x[n], rtol=1e-4, atol=1e-5)
    assert state is not None and set(state["m"]) == set(global_arrays)


def _hostile_round(strategy, global_arrays, rng, honest: int, hostile: int) -> dict:
    round_ = Round(strategy, global_arrays, UpdateLimits())
    for i in range(honest):
        round_.offer(f"h{i}", honest_update(rng, global_arrays), 10)
    for i in range(hostile):
        poison = {n: np.full(a.shape, 50.0, np.float32) for n, a in global_arrays.items()}
        round_.offer(f"x{i}", poison, 10)
    return round_.finish().arrays


@pytest.mark.parametrize(
    "strategy",
    [TrimmedMean(beta=0.2), Krum(byzantine=2), Krum(byzantine=2, select=4)],
    ids=["trimmed-mean", "krum", "multi-krum"],
)
def test_robust_strategies_resist_k_hostile_updates(strategy, global_arrays, rng) -> None:
    got = _hostile_round(strategy, global_arrays, rng, honest=8, hostile=2)
    for name in global_arrays:
        assert np.abs(got[name] - global_arrays[name]).max() < 0.05  # honest deltas are ~0.01


def test_fedavg_does_not_resist_them(global_arrays: dict, rng) -> None:
    got = _hostile_round(FedAvg(), global_arrays, rng, honest=8, hostile=2)
    assert np.abs(got["layers.0.lora_b"]).max() > 5


def test_trimmed_mean_drops_the_extremes_per_coordinate() -> None:
    updates = [{"w": np.array([v, -v], np.float32)} for v in (1.0, 2.0, 3.0, 100.0, -100.0)]
    np.testing.assert_allclose(trimmed_mean(updates, 0.2)["w"], [2.0, -2.0])
    with pytest.raises(ValueError):
        trimmed_mean(updates, 0.5)


def test_krum_selects_the_update_closest_to_its_neighbours() -> None:
    updates = [{"w": np.array([x], np.float32)} for x in (0.0, 0.1, 0.2, 0.15, 9.0)]
    assert krum_select(updates, byzantine=1, select=1) == [3]
    assert 4 not in krum_select(updates, byzantine=1, select=4)


def test_krum_needs_more_than_2f_plus_2_updates(global_arrays, rng) -> None:
    round_ = Round(Krum(byzantine=2), global_arrays, UpdateLimits())
    for i in range(6):
        round_.offer(f"d{i}", honest_update(rng, global_arrays), 1)
    with pytest.raises(NotEnoughUpdates, match="at least 7"):
        round_.finish()


@pytest.mark.parametrize(
    "make",
    [
        lambda: FedAvg(server_lr=0),
        lambda: FedProx(proximal_mu=-1),
        lambda: FedAdam(beta1=1.0),
        lambda: TrimmedMean(beta=0.5),
        lambda: Krum(byzantine=-1),
        lambda: Krum(byzantine=4, max_updates=10),
    ],
)
def test_bad_strategy_parameters_are_refused(make) -> None:
    with pytest.raises(ValueError):
        make()
