"""The low-rank factors' encoder refinement (lowrank.refine_factors): rate-distortion optimised
rounding and alternating refits give cheaper factors that predict nearly as well, stay in the
payload's bounds, survive degenerate decompositions, and patches using them still apply bit
for bit."""

from __future__ import annotations

import numpy as np
import pytest
from delta_helpers import low_rank_fine_tune, same_bits

from fedota.delta import apply, diff
from fedota.delta.codecs import lowrank
from fedota.delta.codecs.bitio import Reader, Writer

pytestmark = pytest.mark.timeout(120)


def _delta(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    base, target = low_rank_fine_tune(rng, rows, cols)
    return (target.to_float32() - base.to_float32()).reshape(rows, cols)


def _product_error(delta: np.ndarray, factors: lowrank.Factors) -> float:
    prediction = lowrank.product(factors.left, factors.right).astype(np.float64) * factors.scale
    return float(np.sum((delta - prediction) ** 2))


@pytest.mark.parametrize("shape", [(96, 384), (384, 96), (128, 128)])
def test_refined_factors_cost_fewer_bits_and_predict_about_as_well(
    shape: tuple[int, int], rng: np.random.Generator
) -> None:
    delta = _delta(rng, *shape)
    step = float(np.std(delta)) / 2
    decomposed = lowrank.decompose(delta, 16)
    plain = lowrank.quantize_factors(*decomposed, 12, 2**-2.0, step)
    refined = lowrank.refine_factors(delta, *decomposed, plain)
    assert refined.scale == plain.scale and refined.rank == plain.rank
    assert refined.left.shape == plain.left.shape and refined.right.shape == plain.right.shape
    assert lowrank.factor_bits(refined) < 0.95 * lowrank.factor_bits(plain)
    unpredicted = float(np.sum(delta.astype(np.float64) ** 2))
    assert _product_error(delta, refined) < _product_error(delta, plain) + 0.02 * unpredicted
    # What is written is what is read back.
    out = Writer()
    lowrank.write_factors(out, refined)
    read = lowrank.read_factors(Reader(out.getvalue()), *shape)
    assert read is not None
    assert np.array_equal(read.left, refined.left) and np.array_equal(read.right, refined.right)
    assert read.scale == refined.scale


def test_rdo_rounding_only_ever_moves_toward_zero(rng: np.random.Generator) -> None:
    values = rng.normal(0, 1, (400, 8)) * np.geomspace(0.3, 40, 8)
    values[0, 0] = 1e9  # beyond the payload's bound: clipped
    nearest = np.clip(np.rint(values), -lowrank.FACTOR_LIMIT, lowrank.FACTOR_LIMIT)
    assert np.array_equal(lowrank._rdo_round(values, np.full(8, np.inf)), nearest)
    free = lowrank._rdo_round(values, np.zeros(8))
    assert free.dtype == np.int32 and free[0, 0] == lowrank.FACTOR_LIMIT
    moved = free != nearest
    assert moved.any()
    assert np.array_equal(np.abs(free[moved]), np.abs(nearest[moved]) - 1)
    assert (np.abs(nearest[moved]) > np.abs(values[moved])).all()  # only rounded-up ones
    # A heavier weight moves fewer entries.
    some = lowrank._rdo_round(values, np.full(8, 0.5))
    assert 0 < int((some != nearest).sum()) < int(moved.sum())


def test_a_rank_deficient_delta_refines_without_error(rng: np.random.Generator) -> None:
    delta = (rng.normal(size=(64, 2)) @ rng.normal(size=(2, 48))).astype(np.float32)
    decomposed = lowrank.decompose(delta, 8)
    plain = lowrank.quantize_factors(*decomposed, 8, 2**-1.5, float(np.std(delta)) / 4)
    refined = lowrank.refine_factors(delta, *decomposed, plain)
    assert np.abs(refined.left).max() <= lowrank.FACTOR_LIMIT
    assert np.abs(refined.right).max() <= lowrank.FACTOR_LIMIT
    assert not refined.left[:, 2:].any() and not refined.right[:, 2:].any()  # s[2:] ~ 0
    assert _product_error(delta, refined) < 0.05 * float(np.sum(delta.astype(np.float64) ** 2))


def test_fp16_patches_with_refined_factors_apply_bit_for_bit(rng: np.random.Generator) -> None:
    base, target = low_rank_fine_tune(rng, 256, 192)
    patch = diff({"w": base}, {"w": target}, max_error="fp16")
    assert patch.entries[0].codec_id == 7  # quant-tcq: the factors were used
    assert patch.target is not None
    released = apply({"w": base}, patch.to_bytes())
    assert same_bits(released["w"], patch.target["w"])
