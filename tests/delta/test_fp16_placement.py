"""The fp16 mode spends its budget where rounding to fp16 would: moved embedding rows are kept,
vectors keep most of their change, and the budget never exceeds the fp16 rounding cost."""

from __future__ import annotations

import numpy as np
import pytest

from fedota.delta import Tensor, apply, diff
from fedota.delta.planning import VECTOR_SHARE, fp16_budget, fp16_mode_budget


def _f32(values: np.ndarray) -> Tensor:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return Tensor("F32", values.shape, values.reshape(-1))


def _sq(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b
    return float((d * d).sum())


def embedding_update(rng: np.random.Generator) -> tuple[Tensor, Tensor, np.ndarray]:
    """A vocabulary matrix that weight decay shrank everywhere and training moved in a few rows
    (the tokens in use): the whole change is below its fp16 rounding cost."""
    rows, cols = 4096, 64
    old = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    new = old * np.float32(1 - 6e-6)
    moved = rng.choice(rows, 24, replace=False)
    new[moved] += rng.normal(0, 1e-4, (moved.size, cols)).astype(np.float32)
    return _f32(old), _f32(new), np.sort(moved)


def test_moved_embedding_rows_survive_the_fp16_mode(rng: np.random.Generator) -> None:
    old, new, moved = embedding_update(rng)
    change = _sq(new.to_float32(), old.to_float32())
    assert change < fp16_budget(new).max_error_sq  # the old budget let the update be dropped
    patch = diff({"emb": old}, {"emb": new}, max_error="fp16")
    released = patch.target["emb"].to_float32().reshape(new.shape)
    trained = new.to_float32().reshape(new.shape)
    before = old.to_float32().reshape(new.shape)
    kept = 1 - _sq(released[moved], trained[moved]) / _sq(trained[moved], before[moved])
    assert kept > 0.9
    assert _sq(released, trained) <= fp16_mode_budget(old, new).max_error_sq
    assert apply({"emb": old}, patch.to_bytes())["emb"].data.tobytes() == released.tobytes()
    # the lossy codec carried it: far below what exact coding of every decayed row costs
    lossless = diff({"emb": old}, {"emb": new}, lossless=True)
    assert len(patch.to_bytes()) < len(lossless.to_bytes()) / 2


def test_a_vector_keeps_all_but_a_tenth_of_its_change(rng: np.random.Generator) -> None:
    old = rng.normal(1.0, 0.02, 384).astype(np.float32)
    new = old + rng.normal(0, 3e-4, 384).astype(np.float32)  # about its fp16 rounding cost
    budget = fp16_mode_budget(_f32(old), _f32(new))
    assert budget.max_error_sq == pytest.approx(VECTOR_SHARE**2 * _sq(new, old), rel=1e-9)
    assert budget.max_error_sq < fp16_budget(_f32(new)).max_error_sq


@pytest.mark.parametrize("shape", [(64, 48), (3, 5, 7), (1000,)])
def test_the_mode_budget_never_exceeds_the_fp16_rounding_cost(
    shape: tuple[int, ...], rng: np.random.Generator
) -> None:
    old = rng.normal(0, 0.05, shape).astype(np.float32)
    new = old + rng.normal(0, 1e-3, shape).astype(np.float32)
    mode = fp16_mode_budget(_f32(old), _f32(new)).max_error_sq
    assert 0 < mode <= fp16_budget(_f32(new)).max_error_sq
