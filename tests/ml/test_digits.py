"""The digits reference model: a deterministic stratified split, training that reaches 95%, and
an architecture config that rebuilds the model for a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fedota.ml.digits import (
    ARCHITECTURE,
    DigitsConfigError,
    DigitsData,
    DigitsMLP,
    accuracy,
    build,
    config_of,
    load_digits_data,
    predict,
    train_digits,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny matmuls: a second thread only adds contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> tuple[DigitsMLP, DigitsData]:
    return train_digits(seed=0)


def _examples(x: np.ndarray, y: np.ndarray) -> list[bytes]:
    return sorted(row.tobytes() + bytes([label]) for row, label in zip(x, y, strict=True))


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    data = load_digits_data(seed=3)
    again = load_digits_data(seed=3)
    other = load_digits_data(seed=4)
    assert np.array_equal(data.x_test, again.x_test) and np.array_equal(data.y_cal, again.y_cal)
    assert not np.array_equal(data.y_test, other.y_test)
    sizes = (len(data.x_train), len(data.x_cal), len(data.x_test))
    assert sum(sizes) == 1797 and sizes == (1257, 180, 360)
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1] == 64
    assert data.x_train.max() == 16 and data.y_train.dtype == np.int64
    # Indices are not kept, so compare by label counts: every split holds every class in
    # proportion (stratified), within one example of the exact share.
    total = np.bincount(np.concatenate([data.y_train, data.y_cal, data.y_test]), minlength=10)
    for split in (data.y_train, data.y_cal, data.y_test):
        share = total * len(split) / total.sum()
        assert np.all(np.abs(np.bincount(split, minlength=10) - share) <= 1)
    # The three splits partition the data set: every example lands in exactly one of them.
    bunch = load_digits()
    together = _examples(
        np.concatenate([data.x_train, data.x_cal, data.x_test]),
        np.concatenate([data.y_train, data.y_cal, data.y_test]),
    )
    assert together == _examples(bunch.data.astype(np.uint8), bunch.target)


@pytest.mark.parametrize(
    ("test_fraction", "calibration_fraction"), [(0, 0.1), (0.2, 0), (0.5, 0.5), (-0.1, 0.2)]
)
def test_split_refuses_fractions_that_leave_nothing(
    test_fraction: float, calibration_fraction: float
) -> None:
    with pytest.raises(ValueError, match="sum below 1"):
        load_digits_data(test_fraction=test_fraction, calibration_fraction=calibration_fraction)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_reaches_95_percent_on_the_test_split(seed: int) -> None:
    model, data = train_digits(seed=seed)
    assert accuracy(model, data.x_test, data.y_test) >= 0.95


def test_training_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first, _ = train_digits(seed=7, epochs=2)
    assert torch.equal(torch.rand(3), expected)
    second, _ = train_digits(seed=7, epochs=2)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_predict_gives_probabilities_in_batches(trained: tuple[DigitsMLP, DigitsData]) -> None:
    model, data = trained
    probs = predict(model, data.x_test)
    assert probs.shape == (360, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([predict(model, data.x_test[i : i + 1]) for i in range(5)])
    assert np.allclose(one_by_one, probs[:5], atol=1e-6)


@pytest.mark.parametrize("shape", [(64,), (3, 63), (2, 8, 8)])
def test_predict_refuses_a_batch_of_the_wrong_shape(
    trained: tuple[DigitsMLP, DigitsData], shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 64\)"):
        predict(trained[0], np.zeros(shape, dtype=np.uint8))


def test_accuracy_takes_a_model_or_a_function(trained: tuple[DigitsMLP, DigitsData]) -> None:
    model, data = trained
    by_model = accuracy(model, data.x_test, data.y_test)
    assert accuracy(lambda x: predict(model, x), data.x_test, data.y_test) == by_model
    labels = predict(model, data.x_test).argmax(axis=1)
    assert accuracy(lambda x: labels, data.x_test, data.y_test) == by_model
    assert accuracy(lambda x: data.y_test, data.x_test, data.y_test) == 1.0


def test_accuracy_refuses_empty_or_mismatched_batches(
    trained: tuple[DigitsMLP, DigitsData],
) -> None:
    model, data = trained
    with pytest.raises(ValueError, match="at least one example"):
        accuracy(model, data.x_test[:0], data.y_test[:0])
    with pytest.raises(ValueError, match="predictions for"):
        accuracy(lambda x: np.zeros(3, dtype=np.int64), data.x_test, data.y_test)


def test_config_rebuilds_the_architecture(trained: tuple[DigitsMLP, DigitsData]) -> None:
    model, data = trained
    config = config_of(model)
    assert ARCHITECTURE == "digits-mlp"
    assert config == {"inputs": 64, "hidden": [64, 32], "classes": 10}
    rebuilt = build(config)
    assert config_of(rebuilt) == config
    rebuilt.load_state_dict(model.state_dict())
    assert np.array_equal(predict(rebuilt, data.x_test), predict(model, data.x_test))
    assert sorted(model.state_dict()) == [
        f"layers.{i}.{kind}" for i in range(3) for kind in ("bias", "weight")
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"inputs": 64, "hidden": [64]}, "exactly the keys"),
        ({"inputs": 64, "hidden": [64], "classes": 10, "extra": 1}, "exactly the keys"),
        ({"inputs": 64, "hidden": 64, "classes": 10}, "list of ints"),
        ({"inputs": 64, "hidden": [0], "classes": 10}, "'hidden' sizes"),
        ({"inputs": 64, "hidden": [1 << 20], "classes": 10}, "'hidden' sizes"),
        ({"inputs": "64", "hidden": [8], "classes": 10}, "'inputs' sizes"),
        ({"inputs": 64, "hidden": [8], "classes": True}, "'classes' sizes"),
    ],
)
def test_build_refuses_a_bad_config(config: dict, message: str) -> None:
    with pytest.raises(DigitsConfigError, match=message):
        build(config)
