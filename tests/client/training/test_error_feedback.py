"""Error feedback: what the server receives over rounds sums to what the device meant to send."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from fedota.client.training import ResidualStore, compress_with_feedback
from fedota.delta.uplink import UplinkSpec, decode


def _rounds(seed: int, count: int, size: int = 5000) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    drift = rng.normal(0, 1, size).astype(np.float32)  # a persistent direction, as in training
    return [
        {"w": (0.01 * drift + rng.normal(0, 0.01, size)).astype(np.float32)} for _ in range(count)
    ]


@pytest.mark.parametrize("text", ["topk:0.01", "topk:0.01+int8", "int8"])
def test_sum_of_received_updates_converges_to_the_true_sum(text: str) -> None:
    spec = UplinkSpec.parse(text)
    updates = _rounds(0, 1000)
    true_sum = np.zeros(5000, np.float64)
    with_feedback = np.zeros(5000, np.float64)
    without = np.zeros(5000, np.float64)
    residual = None
    errors = []
    for t, update in enumerate(updates, start=1):
        sent = compress_with_feedback(update, spec, residual)
        residual = sent.residual
        with_feedback += decode(sent.payload)["w"]
        without += decode(compress_with_feedback(update, spec).payload)["w"]
        true_sum += update["w"]
        # What is missing from the sum is exactly the residual the device holds.
        np.testing.assert_allclose(true_sum - with_feedback, residual["w"], atol=1e-3)
        if t in (100, 1000):
            errors.append(np.linalg.norm(true_sum - with_feedback) / np.linalg.norm(true_sum))
    # The relative error shrinks as 1/rounds (the residual stays bounded while the sum grows).
    assert errors[1] < errors[0] / 5
    assert errors[1] < 0.05
    assert np.linalg.norm(true_sum - without) > 3 * np.linalg.norm(true_sum - with_feedback)


def test_a_residual_of_other_tensors_is_ignored() -> None:
    update = {"w": np.ones(10, np.float32)}
    fresh = compress_with_feedback(update, UplinkSpec(topk=0.1))
    stale = compress_with_feedback(update, UplinkSpec(topk=0.1), {"w": np.ones(11, np.float32)})
    assert fresh.payload == stale.payload


def test_residual_store_keeps_one_campaigns_residual(tmp_path) -> None:
    store = ResidualStore(tmp_path)
    residual = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    assert store.load("c1", residual) is None
    store.save("c1", residual)
    loaded = store.load("c1", residual)
    assert loaded is not None and all(np.array_equal(loaded[k], residual[k]) for k in residual)
    assert store.load("c2", residual) is None  # another campaign starts from zero
    assert store.load("c1", {"a": np.zeros((3, 2))}) is None  # other tensors too
    mode = stat.S_IMODE(os.stat(tmp_path / ResidualStore.FILE).st_mode)
    assert mode == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [ResidualStore.FILE]  # no temp files left
    store.clear()
    assert store.load("c1", residual) is None


def test_a_damaged_residual_file_is_dropped_not_fatal(tmp_path) -> None:
    store = ResidualStore(tmp_path)
    store.save("c1", {"w": np.ones(4, np.float32)})
    path = tmp_path / ResidualStore.FILE
    path.write_bytes(path.read_bytes()[:50])
    assert store.load("c1", {"w": np.ones(4, np.float32)}) is None
