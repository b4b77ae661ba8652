"""The lossy codec's compiled passes keep the contracts the numpy code they replaced had: the
fp16 rounding cost is numpy's own cast, the raw bits keep bitio's layout (so payloads are the
same format), the float32 factor product is exact, and skipping rows that stay put changes no
error and no released bit."""

from __future__ import annotations

import numpy as np
import pytest
from delta_helpers import low_rank_fine_tune as fine_tune
from delta_helpers import same_bits

from fedota.delta import Tensor
from fedota.delta import budget as steps
from fedota.delta.codecs import _coder_kernels as coder
from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs import entropy, lowrank
from fedota.delta.codecs.base import Budget
from fedota.delta.codecs.bitio import pack_bits
from fedota.delta.codecs.quantized import QuantAnsCodec
from fedota.delta.planning import fp16_budget

CODEC = QuantAnsCodec()


def _fp16_cost(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        rounded = values.astype(np.float16).astype(np.float64)
    return (values.astype(np.float64) - rounded) ** 2


@pytest.mark.parametrize("scale", [1e-7, 3e-5, 0.05, 200.0, 3e4])
def test_the_fp16_rounding_cost_is_numpys_cast(scale: float, rng: np.random.Generator) -> None:
    values = (rng.standard_normal(50_000) * scale).astype(np.float32)
    values = values[np.abs(values) < 65504]
    per_value = np.empty(values.size)
    change = np.empty(values.size)
    assert kernels.fp16_rows(
        values, values.view(np.uint32), values, 1, kernels.FP16_QUANTUM, per_value, change
    )
    assert np.array_equal(per_value, _fp16_cost(values))
    assert not change.any()


@pytest.mark.parametrize(
    ("where", "value", "normal"),
    [
        ("values", 0.0, True),
        ("values", -0.0, True),
        ("base", 0.0, True),
        ("values", 1e-40, False),
        ("values", -1e-40, False),
        ("base", 2.0**-149, False),
        ("base", -1.1e-38, False),  # just under the smallest normal
        ("base", 1.2e-38, True),  # just over it
        ("base", np.inf, False),
        ("base", np.nan, False),
    ],
)
def test_fp16_rows_finds_what_scan_finds_subnormal(where: str, value: float, normal: bool) -> None:
    """fp16_rows' ALL_NORMAL is `scan`'s test (every value of both finite, none subnormal),
    read from the words; FP16_HOLDS looks at the values only."""
    values = np.linspace(-0.5, 0.5, 24).astype(np.float32)
    base = (values * np.float32(0.9)).astype(np.float32)
    (values if where == "values" else base)[7] = np.float32(value)
    rounding, change = np.empty(4), np.empty(4)
    found = kernels.fp16_rows(
        values, values.view(np.uint32), base, 6, kernels.FP16_QUANTUM, rounding, change
    )
    assert found & kernels.FP16_HOLDS
    assert bool(found & kernels.ALL_NORMAL) == normal
    assert normal == kernels.scan(base, values, 6, np.empty(4))


def test_the_fp16_cost_matches_on_any_bit_pattern_and_its_edges(rng: np.random.Generator) -> None:
    words = rng.integers(0, 0x477FEFFF, 200_000, dtype=np.uint32)  # every finite fp16 range
    edges = np.array([0.0, -0.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 6.1e-5, 65504.0, 65519.99])
    values = np.concatenate([words.view(np.float32), edges.astype(np.float32)])
    assert fp16_budget(Tensor("F32", values.shape, values)).max_error_sq == pytest.approx(
        float(_fp16_cost(values).sum()), rel=1e-12
    )


@pytest.mark.parametrize("value", [65520.0, -1e5, np.inf, np.nan])
def test_values_fp16_cannot_hold_leave_the_tensor_lossless(value: float) -> None:
    values = np.array([1.0, value, 2.0], dtype=np.float32)
    assert fp16_budget(Tensor("F32", (3,), values)).lossless


@pytest.mark.parametrize("count", [1000, coder.BIT_CHUNK + 3000])
def test_raw_bits_keep_the_packed_layout_across_chunks(count: int) -> None:
    """quant-ans payloads store escapes' raw bits as bitio.pack_bits does (chunks of
    BIT_CHUNK fields, each padded to whole words); the compiled coder writes and reads them so."""
    rng = np.random.default_rng(5)
    symbols = rng.integers(0, 1 << 12, count).astype(np.uint32)
    symbols[::7] = rng.integers(0, 16, symbols[::7].size)  # unescaped tokens in between
    tokens = np.empty(count, dtype=np.int32)
    raw = np.empty(count + 2 + count // coder.BIT_CHUNK, dtype=np.uint32)
    hist = np.zeros(64, dtype=np.int64)
    used = coder.quant_tokenize(symbols, 4, 2, tokens, raw, hist)
    reference_tokens, _, counts, low_bits = entropy.tokenize(symbols, 4, 2)
    assert np.array_equal(tokens, reference_tokens)
    assert raw[:used].astype("<u4").tobytes() == pack_bits(low_bits, counts)
    decoded = np.empty(count, dtype=np.uint32)
    status = coder.quant_detokenize(tokens, raw[:used], 4, 2, 1 << 20, decoded)
    assert status == coder.OK and np.array_equal(decoded, symbols)
    assert np.array_equal(hist[: int(tokens.max()) + 1], np.bincount(tokens))


def test_raw_bits_that_do_not_fit_their_tokens_are_refused() -> None:
    symbols = np.array([3, 200, 70_000, 5], dtype=np.uint32)
    tokens = np.empty(4, dtype=np.int32)
    raw = np.empty(8, dtype=np.uint32)
    used = coder.quant_tokenize(symbols, 4, 2, tokens, raw, np.zeros(64, dtype=np.int64))
    out = np.empty(4, dtype=np.uint32)
    assert coder.quant_detokenize(tokens, raw[: used - 1], 4, 2, 1 << 20, out) == coder.SHORT
    longer = np.concatenate([raw[:used], np.zeros(1, dtype=np.uint32)])
    assert coder.quant_detokenize(tokens, longer, 4, 2, 1 << 20, out) == coder.LEFTOVER
    assert coder.quant_detokenize(tokens, raw[:used], 4, 2, 1 << 10, out) == coder.TOO_LARGE


@pytest.mark.parametrize("largest", [100, 1 << 10, (1 << 15) - 1])
def test_the_factor_product_is_exact_in_either_precision(
    largest: int, rng: np.random.Generator
) -> None:
    left = rng.integers(-largest, largest + 1, (50, 32)).astype(np.int32)
    right = rng.integers(-largest, largest + 1, (40, 32)).astype(np.int32)
    product = lowrank.product(left, right)
    exact = left.astype(object) @ right.T.astype(object)
    assert (product.astype(np.int64) == exact.astype(np.int64)).all()
    assert product.dtype == (np.float32 if largest <= 100 else np.float64)


def _embedding_like(rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Most rows moved by weight decay only (far below a step), a few by the optimizer."""
    base = rng.normal(0, 0.05, (600, 64)).astype(np.float32)
    target = base * np.float32(1 - 6e-6)
    target[::40] += rng.normal(0, 3e-4, (15, 64)).astype(np.float32)
    return Tensor("F32", base.shape, base.reshape(-1)), Tensor(
        "F32", base.shape, target.reshape(-1)
    )


def test_rows_that_stay_put_are_skipped_without_changing_the_error(
    rng: np.random.Generator,
) -> None:
    base, target = _embedding_like(rng)
    step = 2e-5
    encoded = CODEC.encode(base, target, Budget(step=step))
    assert encoded is not None
    assert encoded.error_sq == steps.error_at_step(base, target, step)  # measured row by row
    decoded = CODEC.decode(base, "F32", base.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    still = np.flatnonzero(np.arange(600) % 40)
    released = encoded.target.data.reshape(600, 64)
    assert np.array_equal(released[still], base.data.reshape(600, 64)[still])


@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_rows_whose_values_all_stay_under_half_a_step_are_skipped_alike(
    decay: float, rng: np.random.Generator
) -> None:
    """Rows that only weight decay moved: each value by under half a step, the whole row by
    more (their energy alone would not skip them). With each row's peak they are skipped: the
    same released bits and error as quantizing them, or as the energy alone skips."""
    rows, cols = 40, 256
    base = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    step = np.float32(2e-5)
    target = base * np.float32(1 - 2e-5 * (1 + decay))  # |change| < step / 2 everywhere
    target[::5] += rng.normal(0, 1e-4, (rows // 5, cols)).astype(np.float32)  # 8 rows move
    b, t = base.reshape(-1), target.reshape(-1)
    energy, peak = np.empty(rows), np.empty(rows)
    assert kernels.scan(b, t, cols, energy, peak)
    decayed = np.arange(rows) % 5 != 0
    assert (peak[decayed] < 0.49 * step).all()
    assert (energy[decayed] >= kernels.still_energy(step)).any()  # energy alone: not all

    def release(energy: np.ndarray | None, peak: np.ndarray | None) -> tuple[float, np.ndarray]:
        values = np.empty_like(b)
        status, error, _ = kernels.quantize(
            b, t, cols, None, 0.0, step, np.float32(0.01), 2, None, values, None, 0, None,
            energy, peak, 0.0, None,
        )  # fmt: skip
        assert status == kernels.OK
        return error, values

    passed, by_energy, by_peak = release(None, None), release(energy, None), release(energy, peak)
    for error, values in (by_energy, by_peak):
        assert np.array_equal(values.view(np.uint32), passed[1].view(np.uint32))
        assert error == pytest.approx(passed[0], rel=1e-12)
    assert np.array_equal(by_peak[1].reshape(rows, cols)[decayed], base[decayed])


def test_an_fp16_budget_on_an_embedding_like_tensor_is_met(rng: np.random.Generator) -> None:
    base, target = _embedding_like(rng)
    moved = target.data.astype(np.float64) - base.data
    budget = Budget(max_error_sq=0.1 * float(moved @ moved))
    encoded = CODEC.encode(base, target, budget)
    assert encoded is not None and encoded.error_sq <= budget.max_error_sq
    assert same_bits(CODEC.decode(base, "F32", base.shape, encoded.payload), encoded.target)


def test_a_level_beyond_the_exact_range_is_refused_by_the_release(
    rng: np.random.Generator,
) -> None:
    base, _ = fine_tune(rng, 8, 16)
    values = np.empty(base.numel, dtype=np.float32)
    symbols = np.array([4 * steps.MAX_LEVEL - 2] + [0] * 15, dtype=np.uint32)
    live = np.zeros(8, dtype=bool)
    live[0] = True
    status, _ = kernels.release_rows(
        base.data, 16, None, 0.0, np.float32(1e-3), 0, live, symbols, 0, values, False, False
    )
    assert status == kernels.LEVEL
