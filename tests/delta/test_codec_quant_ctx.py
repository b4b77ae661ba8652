"""Codec 6, quant-ctx: quant-ans with residuals coded relative to the prediction, under its
contexts; exact round trips, smaller payloads where the change is bounded, hostile payloads
refused, and quant-ans (codec 5) patches still applying."""

from __future__ import annotations

import math

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

from fedota.delta import PatchFormatError, Tensor, apply, diff
from fedota.delta.codecs import lowrank, rans
from fedota.delta.codecs.base import Budget
from fedota.delta.codecs.bitio import Reader
from fedota.delta.codecs.quantized import QuantAnsCodec, QuantCtxCodec

CTX, PLAIN = QuantCtxCodec(), QuantAnsCodec()


def fp16_budget(target: Tensor) -> Budget:
    values = target.to_float32()
    error = values.astype(np.float16).astype(np.float32).astype(np.float64) - values
    return Budget(max_error_sq=float(np.sum(error * error)))


def bounded_fine_tune(rng: np.random.Generator, rows: int = 256, cols: int = 192) -> tuple:
    """An Adam-like change: a low-rank drive through a saturating function, so every weight
    moves by at most ~20 learning rates (as AdamW's normalised steps do)."""
    base = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    drive = rng.normal(size=(rows, 8)) @ rng.normal(size=(8, cols)) / math.sqrt(8)
    delta = 20 * 2e-5 * np.tanh(drive + 0.5 * rng.normal(size=(rows, cols)))
    return as_dtype("F32", base), as_dtype("F32", (base + delta).astype(np.float32))


def round_trip(codec: QuantAnsCodec, base: Tensor, target: Tensor, budget: Budget) -> bytes:
    encoded = codec.encode(base, target, budget)
    assert encoded is not None
    decoded = codec.decode(base, target.dtype, target.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    if budget.step is None:
        assert encoded.error_sq <= budget.max_error_sq
    return encoded.payload


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_round_trips_exactly(dtype: str, rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, dtype=dtype)
    budget = fp16_budget(target) if dtype == "F32" else Budget(max_error_sq=1e-6)
    round_trip(CTX, base, target, budget)
    round_trip(CTX, base, target, Budget(step=4e-6))


def test_a_bounded_change_costs_less_than_one_table(rng: np.random.Generator) -> None:
    base, target = bounded_fine_tune(rng)
    budget = fp16_budget(target)
    assert len(round_trip(CTX, base, target, budget)) < len(round_trip(PLAIN, base, target, budget))


def shift_position(payload: bytes, rows: int, cols: int) -> int:
    """Where a quant-ctx payload with factors and every row coded keeps its context shift."""
    src = Reader(payload)
    src.u8(), src.f32(), src.u8(), src.u8(), src.u8()
    assert lowrank.read_factors(src, rows, cols) is not None
    assert src.u8() == 0  # every row coded
    return len(payload) - src.left


@pytest.fixture(scope="module")
def sample() -> tuple[Tensor, bytes]:
    base, target = bounded_fine_tune(np.random.default_rng(11), 160, 128)
    return base, round_trip(CTX, base, target, fp16_budget(target))


@pytest.mark.parametrize("shift", [4, 0x80, 0xFE])
def test_an_unknown_context_shift_is_refused(sample: tuple[Tensor, bytes], shift: int) -> None:
    base, payload = sample
    mutated = bytearray(payload)
    mutated[shift_position(payload, *base.shape)] = shift
    with pytest.raises(PatchFormatError, match="context shift"):
        CTX.decode(base, "F32", base.shape, bytes(mutated))


def test_truncated_payloads_raise_patch_format_error(sample: tuple[Tensor, bytes]) -> None:
    base, payload = sample
    assert_truncations_refused(CTX, base, payload)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_payloads_raise_only_patch_format_error(
    sample: tuple[Tensor, bytes], data: st.DataObject
) -> None:
    base, payload = sample
    decode_or_format_error(CTX, base, mutation(payload, data))


def test_diff_offers_quant_tcq_and_older_patches_still_apply(
    rng: np.random.Generator,
) -> None:
    base, target = bounded_fine_tune(rng)
    models = {"w": base}, {"w": target}
    chosen = diff(*models, max_error="fp16")
    assert chosen.header.entries[0].codec_id == 7  # quant-tcq supersedes quant-ctx
    patches = [chosen]
    for codec in (CTX, PLAIN):
        cached = diff(*models, max_error="fp16", codecs=[codec.name])
        assert cached.header.entries[0].codec_id == codec.codec_id
        patches.append(cached)
    for patch in patches:
        assert same_bits(apply(models[0], patch)["w"], patch.target["w"])


def reference_normalize(counts: np.ndarray) -> np.ndarray:
    """rans.normalize as first released (a loop): the tables every patch was made with."""
    freq = np.zeros(counts.size, dtype=np.int64)
    total = int(counts.sum())
    seen = counts > 0
    freq[seen] = np.maximum(counts[seen] * rans.TOTAL // total, 1)
    deficit = rans.TOTAL - int(freq.sum())
    for index in np.argsort(-freq, kind="stable"):
        if deficit == 0:
            break
        change = deficit if deficit > 0 else -min(-deficit, int(freq[index]) - 1)
        freq[index] += change
        deficit -= change
    return freq


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=400), st.integers(0, 3))
def test_normalize_builds_the_tables_it_always_built(counts: list[int], ones: int) -> None:
    array = np.array(counts, dtype=np.int64)
    array[: ones * 37] = np.minimum(array[: ones * 37], 1)  # many rare symbols: a deficit
    if array.sum() == 0:
        return
    assert np.array_equal(rans.normalize(array), reference_normalize(array))
