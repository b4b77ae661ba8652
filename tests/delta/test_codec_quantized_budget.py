"""budget.py: the step searches the orchestrator and the lossy codecs share, and the exact
reconstruction both sides compute."""

from __future__ import annotations

import numpy as np
import pytest
from delta_helpers import low_rank_fine_tune as fine_tune

from fedota.delta import Tensor
from fedota.delta import budget as steps
from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs.base import Budget, RowChange
from fedota.delta.codecs.quantized import QuantAnsCodec

CODEC = QuantAnsCodec()


@pytest.fixture
def model(rng: np.random.Generator) -> list[tuple[Tensor, Tensor]]:
    """A few tensors of different sizes, dtypes and update scales, one unchanged."""
    pairs = [fine_tune(rng, 96, 64), fine_tune(rng, 32, 200, "BF16"), fine_tune(rng, 1, 500)]
    base, target = fine_tune(rng, 40, 40, "F16")
    pairs.append((base, base))
    pairs.append((base, Tensor("F16", base.shape, target.data * np.float16(1.5))))
    return pairs


@pytest.mark.parametrize("relative", [0.003, 0.01, 0.1])
def test_the_global_step_meets_the_total_and_is_nearly_the_largest(
    model: list[tuple[Tensor, Tensor]], relative: float
) -> None:
    energy = sum(steps.delta_energy(b, t) for b, t in model)
    limit = relative**2 * energy
    step = steps.step_for_error(model, limit)
    assert step is not None
    total = sum(steps.error_at_step(b, t, step) for b, t in model)
    assert 0.95 * limit <= total <= limit
    assert sum(steps.error_at_step(b, t, step * 1.05) for b, t in model) > limit


def test_the_global_step_is_the_same_with_the_rows_energies(
    model: list[tuple[Tensor, Tensor]], rng: np.random.Generator
) -> None:
    """Given each row's change, the full check skips the rows that stay put (their error is
    their energy), here all but one in eight: the same step as on the whole tensors."""
    still_rows = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    moved = still_rows.copy()
    moved[::8] += rng.normal(0, 1e-3, (8, 32)).astype(np.float32)  # 1 row in 8 moves
    pairs = [(b, t) for b, t in model if b.dtype == "F32" and steps.lossy_applicable(b, t)] + [
        (Tensor("F32", (64, 32), still_rows.ravel()), Tensor("F32", (64, 32), moved.ravel()))
    ]
    changes = []
    for base, target in pairs:
        rows = base.shape[0] if len(base.shape) >= 2 else 1
        change = RowChange(np.empty(rows), np.empty(rows))
        kernels.scan(
            steps.float32_view(base), steps.float32_view(target), base.numel // rows,
            change.energy, change.peak,
        )  # fmt: skip
        changes.append(change)
    limit = 0.01**2 * sum(steps.delta_energy(b, t) for b, t in pairs)
    step = steps.step_for_error(pairs, limit, checked=True)
    assert step is not None
    assert steps.step_for_error(pairs, limit, checked=True, changes=changes) == step


def test_error_at_step_is_what_the_codec_releases(model: list[tuple[Tensor, Tensor]]) -> None:
    for base, target in model:
        encoded = CODEC.encode(base, target, Budget(step=2e-6))
        expected = steps.error_at_step(base, target, 2e-6)
        assert (encoded.error_sq if encoded else 0.0) == expected


def test_refused_tensors_count_zero() -> None:
    values = np.array([1.0, np.nan], dtype=np.float32)
    base = Tensor("F32", (2,), values)
    assert steps.error_at_step(base, Tensor("F32", (2,), values * 2), 0.1) == 0.0
    assert steps.error_at_step(None, base, 0.1) == 0.0
    assert steps.step_for_error([(base, base)], 1.0) is None


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_a_per_tensor_step_meets_its_budget(dtype: str, rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, 64, 48, dtype)
    energy = steps.delta_energy(base, target)
    for fraction in (1e-4, 1e-2, 0.5):
        step = steps.step_for_budget(base, target, fraction * energy)
        assert step is not None
        error = steps.error_at_step(base, target, step)
        assert error <= fraction * energy
        assert error >= 0.8 * fraction * energy or dtype != "F32"


@pytest.mark.parametrize("offset", [0, 4])
def test_the_release_rounds_once_per_operation(offset: int, rng: np.random.Generator) -> None:
    """base + float32(64 q - offset sign(q)) * (step / 64): exact integer scaling, then one
    rounding for the product and one for the sum (never an FMA, which would round once and
    differ on some of these values); level 0 keeps the base word (-0.0 included)."""
    rows, cols = 100, 1000
    base = rng.normal(0, 0.05, rows * cols).astype(np.float32)
    base[::97] = -0.0
    levels = rng.integers(-3000, 3000, base.size)
    levels[::5] = 0
    step = 3.7e-5
    unit = np.float32(step) / np.float32(64)
    scaled = levels * 64 - np.sign(levels) * offset
    expected = np.where(scaled == 0, base, scaled.astype(np.float32) * unit + base)
    symbols = np.where(levels >= 0, 2 * levels, -2 * levels - 1).astype(np.uint32)
    out = np.empty_like(base)
    status, used = kernels.release_rows(
        base, cols, None, 0.0, np.float32(step), offset,
        np.ones(rows, dtype=bool), symbols, 0, out, False, False,
    )  # fmt: skip
    assert (status, used) == (kernels.OK, base.size)
    assert out.tobytes() == expected.astype(np.float32).tobytes()


@pytest.mark.parametrize(
    ("step", "valid"),
    [(1e-6, True), (1.0, True), (2.0**-101, False), (float("nan"), False), (float("inf"), False)],
)
def test_valid_steps(step: float, valid: bool) -> None:
    assert steps.valid_step(step) is valid
