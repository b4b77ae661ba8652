"""Codec 5, quant-ans: the released tensor is exactly what decoding gives, within its budget,
deterministic, small on fine-tune-like deltas, and malformed payloads raise only
PatchFormatError."""

from __future__ import annotations

import numpy as np
import pytest
from delta_helpers import (
    as_dtype,
    assert_truncations_refused,
    decode_or_format_error,
    mutation,
    same_bits,
)
from delta_helpers import low_rank_fine_tune as fine_tune
from hypothesis import given, settings
from hypothesis import strategies as st

from fedota.delta import PatchFormatError, Tensor
from fedota.delta import budget as steps
from fedota.delta.codecs import quant_search
from fedota.delta.codecs.base import Budget
from fedota.delta.codecs.quantized import QuantAnsCodec

CODEC = QuantAnsCodec()
DTYPES = ("F32", "F16", "BF16")


def fp16_budget(target: Tensor) -> Budget:
    values = target.to_float32()
    error = values.astype(np.float16).astype(np.float32).astype(np.float64) - values
    return Budget(max_error_sq=float(np.sum(error * error)))


def check(base: Tensor, target: Tensor, budget: Budget) -> bytes:
    """Encode, then: decoding reproduces Encoded.target bit for bit, error_sq is the real
    error, and a max_error_sq budget is met."""
    encoded = CODEC.encode(base, target, budget)
    assert encoded is not None
    decoded = CODEC.decode(base, target.dtype, target.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    diff = decoded.to_float32().astype(np.float64) - target.to_float32()
    assert encoded.error_sq == pytest.approx(float(np.sum(diff * diff)), rel=1e-9, abs=1e-30)
    if budget.step is None:
        assert encoded.error_sq <= budget.max_error_sq
    return encoded.payload


@pytest.mark.parametrize("dtype", DTYPES)
def test_fp16_budgets_round_trip_exactly(dtype: str, rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, dtype=dtype)
    budget = fp16_budget(target) if dtype == "F32" else Budget(max_error_sq=1e-6)
    check(base, target, budget)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_steps_round_trip_with_the_predicted_error(
    dtype: str, rng: np.random.Generator
) -> None:
    base, target = fine_tune(rng, dtype=dtype)
    step = 4e-6
    payload = check(base, target, Budget(step=step))
    encoded = CODEC.encode(base, target, Budget(step=step))
    assert encoded is not None and encoded.payload == payload
    assert encoded.error_sq == steps.error_at_step(base, target, step)


@st.composite
def finite_pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor, float]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([(1,), (7,), (3, 5), (40, 24), (2, 3, 4), ()]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = rng.normal(0, draw(st.sampled_from([1e-3, 0.05, 3.0])), shape).astype(np.float32)
    moved = rng.random(shape) < draw(st.sampled_from([0.0, 0.1, 1.0]))
    delta = rng.normal(0, 1, shape) * np.abs(base) * draw(st.sampled_from([1e-4, 1e-2, 0.5]))
    target = (base + np.where(moved, delta, 0)).astype(np.float32)
    base[rng.random(shape) < 0.05] = 0.0
    fraction = draw(st.sampled_from([1e-4, 0.01, 0.3, 2.0]))
    return as_dtype(dtype, base), as_dtype(dtype, target), fraction


@settings(max_examples=120, deadline=None)
@given(finite_pairs())
def test_any_finite_pair_round_trips_within_budget(pair: tuple[Tensor, Tensor, float]) -> None:
    base, target, fraction = pair
    diff = target.to_float32().astype(np.float64) - base.to_float32()
    energy = float(np.sum(diff * diff))
    budget = Budget(max_error_sq=fraction * energy) if energy else Budget(max_error_sq=1e-12)
    encoded = CODEC.encode(base, target, budget)
    if encoded is None:  # no valid step meets a tiny budget: a lossless codec carries it
        assert budget.max_error_sq < 1e-6 * max(energy, 1e-30) or target.dtype != "F32"
        return
    decoded = CODEC.decode(base, target.dtype, target.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    assert encoded.error_sq <= budget.max_error_sq


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf, 1e-40])
@pytest.mark.parametrize("where", ["base", "target"])
def test_non_finite_and_subnormal_values_are_refused(special: float, where: str) -> None:
    values = np.linspace(-1, 1, 12, dtype=np.float32)
    spoiled = values.copy()
    spoiled[3] = special
    base = Tensor("F32", (12,), spoiled if where == "base" else values)
    target = Tensor("F32", (12,), spoiled if where == "target" else values * 1.01)
    assert CODEC.encode(base, target, Budget(max_error_sq=1.0)) is None
    assert CODEC.encode(base, target, Budget(step=1e-3)) is None
    assert steps.error_at_step(base, target, 1e-3) == 0.0


@pytest.mark.parametrize(
    ("base", "target", "budget"),
    [
        (None, Tensor("F32", (2,), np.ones(2, np.float32)), Budget(max_error_sq=1.0)),
        (Tensor("F32", (2,), np.ones(2, np.float32)),) * 2 + (Budget(),),
        (Tensor("I8", (2,), np.ones(2, np.int8)),) * 2 + (Budget(max_error_sq=1.0),),
        (Tensor("F64", (2,), np.ones(2)),) * 2 + (Budget(max_error_sq=1.0),),
        (Tensor("F32", (0,), np.ones(0, np.float32)),) * 2 + (Budget(max_error_sq=1.0),),
        (Tensor("F32", (2,), np.ones(2, np.float32)),) * 2 + (Budget(step=1e-300),),
    ],
    ids=["no base", "lossless", "integers", "f64", "empty", "step underflows"],
)
def test_refuses_what_it_cannot_carry(base: Tensor | None, target: Tensor, budget: Budget) -> None:
    assert CODEC.encode(base, target, budget) is None


def test_an_unchanged_tensor_costs_a_few_bytes_and_releases_the_base(
    rng: np.random.Generator,
) -> None:
    base, _ = fine_tune(rng, 64, 64)
    for budget in (Budget(max_error_sq=1e-9), Budget(step=1e-5)):
        encoded = CODEC.encode(base, base, budget)
        assert encoded is not None and encoded.error_sq == 0.0
        assert same_bits(encoded.target, base) and len(encoded.payload) < 24


def test_a_budget_above_the_whole_delta_releases_the_base(rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, 64, 64)
    target = Tensor("F32", base.shape, target.data * np.float32(3))  # deltas of ~0.1
    diff = target.to_float32().astype(np.float64) - base.to_float32()
    limit = float(np.sum(diff * diff)) * (1 + 1e-9)  # float sums differ in the last bits
    encoded = CODEC.encode(base, target, Budget(max_error_sq=limit))
    assert encoded is not None and same_bits(encoded.target, base) and len(encoded.payload) < 24


def test_untouched_rows_cost_almost_nothing(rng: np.random.Generator) -> None:
    """An embedding fine-tune moves the rows of the tokens it saw; the rest stay put."""
    base, target = fine_tune(rng, 512, 64)
    moved = target.to_float32().reshape(512, 64).copy()
    moved[16:] = base.to_float32().reshape(512, 64)[16:]
    target = Tensor("F32", base.shape, moved.reshape(-1))
    payload = check(base, target, Budget(step=4e-6))
    few = Tensor("F32", (16, 64), base.data[: 16 * 64].copy())
    few_target = Tensor("F32", (16, 64), target.data[: 16 * 64].copy())
    assert len(payload) < len(check(few, few_target, Budget(step=4e-6))) + 64


def test_encoding_is_deterministic(rng: np.random.Generator) -> None:
    base, target = fine_tune(rng)
    budget = fp16_budget(target)
    first, second = CODEC.encode(base, target, budget), CODEC.encode(base, target, budget)
    assert first is not None and second is not None and first.payload == second.payload


def test_fine_tunes_compress_far_below_order_zero_coding(rng: np.random.Generator) -> None:
    """At the fp16 budget (14% of the delta here): measured 6.5% of the fp32 bytes, 9.4% with
    the prediction switched off (order-0 coding of the levels alone would be ~10%)."""
    base, target = fine_tune(rng, 384, 384)
    size = len(check(base, target, fp16_budget(target)))
    assert size < 0.075 * target.nbytes


def test_the_prediction_pays_for_its_factors(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, target = fine_tune(rng, 384, 384)
    budget = fp16_budget(target)
    with_factors = len(check(base, target, budget))
    monkeypatch.setattr(quant_search, "_choose_factors", lambda *args: None)
    without = len(check(base, target, budget))
    assert with_factors < 0.8 * without


def test_a_merged_lora_takes_a_stronger_deadzone(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The factors predict a merged rank-8 LoRA almost exactly; zeroing the small residuals
    left saves a large share of the bits, so the stronger rounding is taken there (on a dense
    fine-tune, see the test above, it would not pay)."""
    base = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    lora = rng.normal(0, 2e-4, (256, 8)) @ rng.normal(0, 1 / 16, (8, 256)) * 2
    old = Tensor("F32", (256, 256), base.reshape(-1))
    new = Tensor("F32", (256, 256), (base + lora).astype(np.float32).reshape(-1))
    budget = fp16_budget(new)
    stronger = len(check(old, new, budget))
    monkeypatch.setattr(quant_search, "SHRINKING", ())
    assert stronger < 0.9 * len(check(old, new, budget))


def test_decode_needs_the_matching_base(rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, 8, 8)
    payload = check(base, target, Budget(step=1e-5))
    for other, dtype, shape in (
        (None, "F32", (8, 8)),
        (base, "F32", (4, 16)),
        (base, "F16", (8, 8)),
    ):
        with pytest.raises(PatchFormatError):
            CODEC.decode(other, dtype, shape, payload)


@pytest.fixture(scope="module")
def sample() -> tuple[Tensor, bytes]:
    base, target = fine_tune(np.random.default_rng(9), 160, 128)
    payload = check(base, target, fp16_budget(target))
    assert payload[8] > 0  # the rank: the fuzzing reaches the factors too
    return base, payload


def test_truncated_payloads_raise_patch_format_error(sample: tuple[Tensor, bytes]) -> None:
    base, payload = sample
    assert_truncations_refused(CODEC, base, payload)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_payloads_raise_only_patch_format_error(
    sample: tuple[Tensor, bytes], data: st.DataObject
) -> None:
    base, payload = sample
    decode_or_format_error(CODEC, base, mutation(payload, data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_payloads_raise_only_patch_format_error(
    sample: tuple[Tensor, bytes], raw: bytes
) -> None:
    decode_or_format_error(CODEC, sample[0], b"\x01" + raw)


def test_levels_beyond_the_exact_range_are_refused_not_wrapped() -> None:
    base = Tensor("F32", (4,), np.array([0.0, 1.0, -1.0, 2.0], np.float32))
    target = Tensor("F32", (4,), np.array([3e9, 1.0, -1.0, 2.5], np.float32))
    assert CODEC.encode(base, target, Budget(step=1e-3)) is None
    assert steps.error_at_step(base, target, 1e-3) == 0.0
    encoded = CODEC.encode(base, target, Budget(step=1e5))
    assert encoded is not None
    assert encoded.error_sq == pytest.approx(steps.error_at_step(base, target, 1e5))
