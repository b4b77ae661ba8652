"""Codec 7, quant-tcq: dependent (trellis-coded) quantization for error budgets. The state
machine and levels against a reference, the trellis against brute force, exact round trips
with the budget met on the whole tensor, payloads smaller than plain rounding's at the same
budget, step budgets as codec 6's levels, and hostile payloads refused."""

from __future__ import annotations

import dataclasses
import itertools
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
from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs import quant_search, quantized
from fedota.delta.codecs.base import Budget
from fedota.delta.codecs.quantized import QuantCtxCodec, QuantTcqCodec

TCQ, CTX = QuantTcqCodec(), QuantCtxCodec()
# H.266/VVC's dependent quantization: the next state by (state, index parity).
NEXT = [[0, 2], [2, 0], [1, 3], [3, 1]]


def reference_level(index: int, state: int) -> int:
    return 2 * index - (state >> 1) * int(np.sign(index))


def fp16_budget(target: Tensor) -> Budget:
    values = target.to_float32().astype(np.float64)
    error = values.astype(np.float16).astype(np.float64) - values
    return Budget(max_error_sq=float(np.sum(error * error)))


def error_sq(released: Tensor, target: Tensor) -> float:
    diff = released.to_float32().astype(np.float64) - target.to_float32().astype(np.float64)
    return float(np.sum(diff * diff))


def dense_fine_tune(seed: int, rows: int = 192, cols: int = 160) -> tuple[Tensor, Tensor]:
    return fine_tune(np.random.default_rng(seed), rows, cols)


def test_the_state_machine_and_levels_are_vvcs() -> None:
    for state, index in itertools.product(range(4), range(-9, 10)):
        after = kernels.next_state(state, index)
        assert after == NEXT[state][index & 1]
        assert kernels.previous_state(after, index) == state
        assert kernels.dependent_level(index, state) == reference_level(index, state)
    # Q0 holds the even levels, Q1 the odd ones and zero: together, the whole lattice.
    q0 = {kernels.dependent_level(k, 0) for k in range(-5, 6)}
    q1 = {kernels.dependent_level(k, 2) for k in range(-5, 6)}
    assert q0 == set(range(-10, 11, 2)) and q1 == {0} | set(range(-9, 10, 2))


def test_the_decoder_follows_the_state_machine(rng: np.random.Generator) -> None:
    rows, cols = 3, 40
    base = rng.normal(0, 1, rows * cols).astype(np.float32)
    indices = rng.integers(-6, 7, rows * cols)
    symbols = np.where(indices >= 0, 2 * indices, -2 * indices - 1).astype(np.uint32)
    step = np.float32(2.0**-6)
    out = np.empty(rows * cols, dtype=np.float32)
    status, used = kernels.release_rows(
        base, cols, None, 0.0, step, 0, np.ones(rows, dtype=bool), symbols, 0, out, True, True
    )
    assert (status, used) == (kernels.OK, rows * cols)
    expected = np.empty_like(out)
    for row in range(rows):
        state = 0  # every row starts in state 0
        for j in range(row * cols, row * cols + cols):
            level = reference_level(int(indices[j]), state)
            state = NEXT[state][int(indices[j]) & 1]
            expected[j] = base[j] if level == 0 else np.float32(64 * level) * (step / 64) + base[j]
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


def path_error(x: np.ndarray, indices: tuple[int, ...]) -> float:
    state, total = 0, 0.0
    for value, index in zip(x, indices, strict=True):
        total += (value - reference_level(index, state)) ** 2
        state = NEXT[state][index & 1]
    return total


@pytest.mark.parametrize("seed", range(6))
def test_the_trellis_finds_the_least_error_path(seed: int) -> None:
    """Without a rate term, the trellis's levels are the path of least squared error among
    all index sequences (brute force)."""
    rng = np.random.default_rng(seed)
    cols = 5
    x = rng.uniform(-5, 5, cols)
    step = np.float32(2.0**-4)
    base = np.full(cols, 1.0, dtype=np.float32)
    target = (base + (x * step)).astype(np.float32)
    exact = (target.astype(np.float64) - 1.0) / float(step)
    symbols = np.empty(cols, dtype=np.uint32)
    bits = np.zeros((2 * (kernels.CONTEXT_CAP + 1), kernels.RATE_CAP + 1))
    status, _, used = kernels.quantize_dependent(
        base, target, cols, None, 0.0, step, 0, bits, 0.0, None, None, symbols, 0, None,
        None, 0.0, None, None, None,
    )  # fmt: skip
    assert (status, used) == (kernels.OK, cols)
    zig = symbols.astype(np.int64)
    chosen = tuple(int(i) for i in (zig >> 1) ^ -(zig & 1))
    best = min(path_error(exact, p) for p in itertools.product(range(-4, 5), repeat=cols))
    assert path_error(exact, chosen) == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_long_rows_commit_their_path_and_still_decode(rng: np.random.Generator) -> None:
    """Rows longer than the trellis's chunk: the encoder commits its path every chunk and
    carries the state on; the decoder, which knows nothing of chunks, releases the same."""
    rows, cols = 2, 10_000
    base = rng.normal(0, 0.05, rows * cols).astype(np.float32)
    target = (base + rng.normal(0, 1e-3, base.size)).astype(np.float32)
    step = np.float32(2e-4)
    bits = quant_search.rate_table(np.ones((2 * (kernels.CONTEXT_CAP + 1), kernels.RATE_CAP + 1)))
    released = np.empty_like(base)
    symbols = np.empty(base.size, dtype=np.uint32)
    live = np.empty(rows, dtype=bool)
    status, error, used = kernels.quantize_dependent(
        base, target, cols, None, 0.0, step, 0, bits, 0.05, None, released, symbols, 0, live,
        None, 0.0, None, None, None,
    )  # fmt: skip
    assert status == kernels.OK and live.all() and used == base.size
    out = np.empty_like(base)
    status, read = kernels.release_rows(
        base, cols, None, 0.0, step, 0, live, symbols, 0, out, True, True
    )
    assert (status, read) == (kernels.OK, used)
    assert np.array_equal(out.view(np.uint32), released.view(np.uint32))
    # The released error is what the trellis reported, and well under plain rounding's
    # at twice the step (one quantizer's spacing).
    measured = float(np.sum((released.astype(np.float64) - target) ** 2))
    assert error == pytest.approx(measured, rel=1e-12)
    plain = np.rint((target - base) / (2 * step)) * 2 * step
    assert measured < 0.8 * float(np.sum((plain + base - target).astype(np.float64) ** 2))


def quantizer(payload: bytes) -> int:
    return payload[1]


OFFSET_AT = 6  # version, quantizer, step (f32), then the reconstruction offset


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_round_trips_exactly_within_budget(dtype: str, rng: np.random.Generator) -> None:
    base, target = fine_tune(rng, dtype=dtype)
    budget = fp16_budget(target) if dtype == "F32" else Budget(max_error_sq=4e-6)
    encoded = TCQ.encode(base, target, budget)
    assert encoded is not None
    # (bf16's coarse values leave a delta whose factors do not pay here: plain rounding.)
    assert quantizer(encoded.payload) == (0 if dtype == "BF16" else 1)
    decoded = TCQ.decode(base, dtype, target.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    # The budget holds on the whole tensor, measured here independently of the codec.
    assert error_sq(decoded, target) <= budget.max_error_sq
    assert encoded.error_sq == pytest.approx(error_sq(decoded, target), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_the_step_spends_nearly_all_of_the_budget(seed: int) -> None:
    """The step search keeps no bracket on the sample (the whole tensor's pass checks it):
    the released error still lands just under the budget, never over."""
    base, target = dense_fine_tune(seed)
    budget = fp16_budget(target)
    encoded = TCQ.encode(base, target, budget)
    assert encoded is not None and quantizer(encoded.payload) == 1
    assert 0.985 * budget.max_error_sq <= encoded.error_sq <= budget.max_error_sq


@pytest.mark.parametrize("predicted", [False, True])
def test_the_moments_give_the_error_at_every_offset(predicted: bool) -> None:
    """The trellis's moments (sum m s, sum s^2, row-weighted) give the error of its indices
    released at another offset, as the decoder releases them: the quadratic
    step^2 (2 d sum(m s) + d^2 sum(s^2)) in the offset's change d (in steps)."""
    rng = np.random.default_rng(7)
    rows, cols = 2 * kernels.LANES + 3, 96
    base = rng.normal(0, 0.05, rows * cols).astype(np.float32)
    target = (base + rng.normal(0, 2e-3, base.size)).astype(np.float32)
    product = rng.normal(0, 1.5, base.size).astype(np.float32) if predicted else None
    ratio = 0.75 if predicted else 0.0
    step, offset = np.float32(2e-3), 3
    bits = quant_search.rate_table(np.ones((2 * (kernels.CONTEXT_CAP + 1), 128)))
    weight = np.linspace(1.0, 3.0, rows)
    symbols = np.empty(base.size, dtype=np.uint32)
    live = np.empty(rows, dtype=bool)
    moments = np.zeros(2)
    status, error, _ = kernels.quantize_dependent(
        base, target, cols, product, ratio, step, offset, bits, 0.05, weight, None, symbols, 0,
        live, None, 0.0, None, None, moments,
    )  # fmt: skip
    assert status == kernels.OK and moments[1] > 0

    def weighted_error(at: int) -> float:
        out = np.empty_like(base)
        status, _ = kernels.release_rows(
            base, cols, product, ratio, step, at, live, symbols, 0, out, True, True
        )
        assert status == kernels.OK
        miss = (out.astype(np.float64) - target).reshape(rows, cols)
        return float(np.dot(np.sum(miss * miss, axis=1), weight))

    assert weighted_error(offset) == pytest.approx(error, rel=1e-12)
    for other in (0, 1, 9, 31):
        moved = (other - offset) / kernels.OFFSET_UNIT
        change = float(step) ** 2 * (2 * moved * moments[0] + moved * moved * moments[1])
        assert weighted_error(other) == pytest.approx(error + change, rel=1e-5)


def _encode_with_step_scaled(
    monkeypatch: pytest.MonkeyPatch, factor: float, base: Tensor, target: Tensor, budget: Budget
) -> tuple[bytes, float, list[float]]:
    """TCQ.encode with the sample's step made `factor` times too large: (payload, error,
    the step of each pass over the whole tensor)."""
    plan, quantize = quant_search.plan, quantized._quantize
    passes: list[float] = []

    def too_large(*args: object, **kwargs: object) -> quant_search.Plan | None:
        chosen = plan(*args, **kwargs)
        return None if chosen is None else dataclasses.replace(chosen, step=chosen.step * factor)

    def counted(chosen: quant_search.Plan, *args: object) -> object:
        passes.append(chosen.step)
        return quantize(chosen, *args)

    monkeypatch.setattr(quant_search, "plan", too_large)
    monkeypatch.setattr(quantized, "_quantize", counted)
    encoded = TCQ.encode(base, target, budget)
    assert encoded is not None and quantizer(encoded.payload) == 1
    decoded = TCQ.decode(base, "F32", target.shape, encoded.payload)
    assert same_bits(decoded, encoded.target)
    assert encoded.error_sq == pytest.approx(error_sq(decoded, target), rel=1e-9)
    assert encoded.error_sq <= budget.max_error_sq
    return encoded.payload, encoded.error_sq, passes


def test_a_pass_a_little_over_the_budget_is_pulled_under(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole-tensor pass over the budget by a little (the sample's estimate is off by
    ~0.4%) is brought under by a reconstruction offset toward the prediction, with the same
    indices: one trellis pass, no second search."""
    base, target = dense_fine_tune(0)
    budget = fp16_budget(target)
    payload, error, passes = _encode_with_step_scaled(monkeypatch, 1.004, base, target, budget)
    assert len(passes) == 1
    assert payload[OFFSET_AT] > 0
    assert 0.99 * budget.max_error_sq <= error <= budget.max_error_sq


def test_a_pass_far_over_the_budget_searches_again_at_a_smaller_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where no offset brings the pass under, the step shrinks and the trellis runs again."""
    base, target = dense_fine_tune(1)
    budget = fp16_budget(target)
    _, _, passes = _encode_with_step_scaled(monkeypatch, 1.3, base, target, budget)
    assert len(passes) >= 2 and passes[1] < passes[0]


def test_offset_under_takes_the_smallest_offset_that_meets_the_limit() -> None:
    # At step 1, error(o) = 110 - 40 o + 4 o^2 for an offset o (in 64ths) from 0: least at 5.
    moments = np.array([-20.0 * 64, 4.0 * 64 * 64])
    assert quantized._offset_under(moments, 0, 1.0, 110.0, 80.0) == 1  # 74
    assert quantized._offset_under(moments, 0, 1.0, 110.0, 30.0) == 3  # 26
    assert quantized._offset_under(moments, 0, 1.0, 110.0, 10.5) == 5  # 10
    assert quantized._offset_under(moments, 0, 1.0, 110.0, 9.0) is None  # under its least
    assert quantized._offset_under(moments, 2, 1.0, 110.0, 80.0) == 3  # only larger offsets
    # A pull that only adds error, no sign to pull, the format's last offset: none.
    assert quantized._offset_under(np.array([5.0, 4.0]), 0, 1.0, 110.0, 109.0) is None
    assert quantized._offset_under(np.zeros(2), 0, 1.0, 110.0, 109.0) is None
    assert quantized._offset_under(np.array([-1e9, 1.0]), 31, 1.0, 110.0, 1.0) is None


@pytest.mark.parametrize("power", [1.5, 2.0, 2.6])
def test_the_power_law_step_solves_the_law_through_two_points(power: float) -> None:
    points = [(s, 3.0 * s**power) for s in (1e-3, 1.2e-3)]
    step = quant_search._power_law_step(points, 3.0 * 1.1e-3**power)
    assert step == pytest.approx(1.1e-3, rel=1e-9)
    # One point, or two that fit no sane power: the square law.
    assert quant_search._power_law_step([(1e-3, 3.0)], 12.0) == pytest.approx(2e-3)
    flat = [(1e-3, 5.0), (2e-3, 5.0)]
    assert quant_search._power_law_step(flat, 20.0) == pytest.approx(4e-3)


@pytest.mark.parametrize("seed", range(4))
def test_smaller_than_plain_rounding_at_the_same_budget(seed: int) -> None:
    base, target = dense_fine_tune(seed)
    budget = fp16_budget(target)
    dependent, plain = TCQ.encode(base, target, budget), CTX.encode(base, target, budget)
    assert dependent is not None and plain is not None
    assert quantizer(dependent.payload) == 1
    assert dependent.error_sq <= budget.max_error_sq and plain.error_sq <= budget.max_error_sq
    assert len(dependent.payload) < 0.995 * len(plain.payload)  # measured: 1.4% to 2.1%


def test_a_merged_lora_keeps_plain_rounding_where_that_is_smaller() -> None:
    """Factors that predict the change nearly exactly leave residuals that a deadzone zeroes
    (quant_search.SHRINKING): there plain rounding wins, and codec 7 takes it (its payload is
    then codec 6's and the quantizer byte)."""
    rng = np.random.default_rng(5)
    base = rng.normal(0, 0.05, (192, 160)).astype(np.float32)
    lora = rng.normal(0, 1, (192, 4)) @ rng.normal(0, 1, (4, 160)) * 2e-4
    old, new = as_dtype("F32", base), as_dtype("F32", (base + lora).astype(np.float32))
    budget = fp16_budget(new)
    ours, theirs = TCQ.encode(old, new, budget), CTX.encode(old, new, budget)
    assert ours is not None and theirs is not None
    assert len(ours.payload) <= len(theirs.payload) + 1
    assert ours.error_sq <= budget.max_error_sq
    assert same_bits(TCQ.decode(old, "F32", new.shape, ours.payload), ours.target)


def test_step_budgets_keep_codec_6s_levels(rng: np.random.Generator) -> None:
    """--max-rel-error's global step counted plain rounding's error: codec 7 releases the
    very same tensor as codec 6 there, in the same payload but for its quantizer byte."""
    base, target = fine_tune(rng)
    budget = Budget(step=4e-6)
    ours, theirs = TCQ.encode(base, target, budget), CTX.encode(base, target, budget)
    assert ours is not None and theirs is not None
    assert quantizer(ours.payload) == 0
    assert ours.payload[:1] + ours.payload[2:] == theirs.payload
    assert same_bits(ours.target, theirs.target)
    assert same_bits(TCQ.decode(base, "F32", target.shape, ours.payload), theirs.target)


def test_tensors_without_a_prediction_are_rounded_plainly(rng: np.random.Generator) -> None:
    """Vectors and embedding-like matrices (no factors) keep plain rounding: their error is
    a step back from the fine-tune that sentence embeddings feel (quant_search)."""
    base = rng.normal(0, 0.05, 4096).astype(np.float32)
    target = (base + rng.normal(0, 1e-3, base.size)).astype(np.float32)
    old, new = as_dtype("F32", base), as_dtype("F32", target)
    budget = fp16_budget(new)
    encoded = TCQ.encode(old, new, budget)
    assert encoded is not None and quantizer(encoded.payload) == 0
    assert same_bits(TCQ.decode(old, "F32", new.shape, encoded.payload), encoded.target)
    assert encoded.error_sq <= budget.max_error_sq


def test_diff_chooses_it_and_apply_reproduces_the_target() -> None:
    base, target = dense_fine_tune(7, 256, 192)
    models = (
        {"w": base, "b": as_dtype("F32", np.zeros(8, np.float32))},
        {
            "w": target,
            "b": as_dtype("F32", np.full(8, 1e-3, np.float32)),
        },
    )
    patch = diff(*models, max_error="fp16")
    assert patch.header.entries[1].name == "w" and patch.header.entries[1].codec_id == 7
    applied = apply(models[0], patch)
    for name in models[1]:
        assert same_bits(applied[name], patch.target[name])
    assert error_sq(patch.target["w"], target) <= fp16_budget(target).max_error_sq
    again = apply(models[0], type(patch).from_bytes(patch.to_bytes()))
    assert same_bits(again["w"], patch.target["w"])


@pytest.fixture(scope="module")
def sample() -> tuple[Tensor, bytes]:
    base, target = dense_fine_tune(11, 160, 128)
    encoded = TCQ.encode(base, target, fp16_budget(target))
    assert encoded is not None and quantizer(encoded.payload) == 1
    return base, encoded.payload


@pytest.mark.parametrize("value", [2, 7, 0xFF])
def test_an_unknown_quantizer_is_refused(sample: tuple[Tensor, bytes], value: int) -> None:
    base, payload = sample
    mutated = bytearray(payload)
    mutated[1] = value
    with pytest.raises(PatchFormatError, match="quantizer"):
        TCQ.decode(base, "F32", base.shape, bytes(mutated))


def test_truncated_payloads_raise_patch_format_error(sample: tuple[Tensor, bytes]) -> None:
    base, payload = sample
    assert_truncations_refused(TCQ, base, payload)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_payloads_raise_only_patch_format_error(
    sample: tuple[Tensor, bytes], data: st.DataObject
) -> None:
    base, payload = sample
    decode_or_format_error(TCQ, base, mutation(payload, data))


def test_rate_table_prefers_what_was_counted() -> None:
    counts = np.zeros((2 * (kernels.CONTEXT_CAP + 1), kernels.RATE_CAP + 1))
    counts[0, 0], counts[0, 3], counts[5, 2] = 1000, 10, 50
    table = quant_search.rate_table(counts)
    assert table.shape == counts.shape and np.isfinite(table).all() and (table > 0).all()
    assert table[0, 0] < table[0, 3] < table[0, 1]
    assert table[5, 2] < table[5, 0]  # its own counts outweigh the overall shape
    assert math.isclose(float(np.exp2(-table[0]).sum()), 1.0, rel_tol=1e-9)


def _trellis(
    base: np.ndarray,
    target: np.ndarray,
    cols: int,
    product: np.ndarray | None,
    energy: np.ndarray | None,
    error: float = 0.0,
) -> tuple[int, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = base.size // cols
    step = np.float32(2e-3)
    bits = quant_search.rate_table(
        np.random.default_rng(1).uniform(1, 50, (2 * (kernels.CONTEXT_CAP + 1), 128))
    )
    released = np.empty_like(base)
    symbols = np.empty(base.size, dtype=np.uint32)
    contexts = np.empty(base.size, dtype=np.uint8) if product is not None else None
    live = np.empty(rows, dtype=bool)
    hist = np.zeros_like(bits)
    weight = np.linspace(1.0, 3.0, rows)
    status, error, used = kernels.quantize_dependent(
        base, target, cols, product, 0.75 if product is not None else 0.0, step, 2, bits, 0.05,
        weight, released, symbols, 0, live, energy, error, contexts, hist, None,
    )  # fmt: skip
    assert status == kernels.OK
    coded = symbols[:used] if contexts is None else np.stack([symbols[:used], contexts[:used]])
    return used, error, released, coded, live, hist, weight


@pytest.mark.parametrize("predicted", [False, True])
@pytest.mark.parametrize("cols", [37, 5000])
def test_rows_searched_together_are_rows_searched_alone(predicted: bool, cols: int) -> None:
    """The trellis searches LANES rows at once; row by row it finds the same paths, symbols,
    errors and counts, with still rows and rows that quantize to zeros among them."""
    rng = np.random.default_rng(cols)
    rows = 2 * kernels.LANES + 5 if cols < 1000 else kernels.LANES + 3
    base = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    change = rng.normal(0, 2e-3, (rows, cols)) * rng.uniform(0, 2, (rows, 1))
    change[3] = 0.0  # a row that stays put
    change[rows - 2] *= 1e-3  # one whose change rounds to zeros
    target = (base + change).astype(np.float32)
    product = rng.normal(0, 1.5, (rows, cols)).astype(np.float32) if predicted else None
    energy = np.sum((target.astype(np.float64) - base) ** 2, axis=1)
    together = _trellis(
        base.ravel(), target.ravel(), cols, None if product is None else product.ravel(), energy
    )
    used, error, released, coded, live, hist, _ = together
    assert live.any() and (predicted or not live.all())
    error_alone, symbols_alone, hist_alone = 0.0, [], np.zeros_like(hist)
    for row in range(rows):
        one = _trellis(
            base[row], target[row], cols, None if product is None else product[row],
            energy[row : row + 1],
        )  # fmt: skip
        # _trellis weighs its one row 1.0; the group call weighs row r by weight[r].
        weight = together[6][row]
        assert np.array_equal(
            one[2].view(np.uint32), released.reshape(rows, cols)[row].view(np.uint32)
        )
        assert bool(one[4][0]) == bool(live[row])
        error_alone += weight * one[1]
        hist_alone += weight * one[5]
        symbols_alone.append(one[3])
    assert used == sum(s.shape[-1] for s in symbols_alone)
    assert np.array_equal(coded, np.concatenate(symbols_alone, axis=-1))
    assert error == pytest.approx(error_alone, rel=1e-12)
    np.testing.assert_allclose(hist, hist_alone, rtol=1e-12)
