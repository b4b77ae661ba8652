"""Codec 5, quant-ans (lossy): the delta quantized at one step per tensor, predicted by a
low-rank model, the residual levels entropy coded with ANS.

What the encoder does (budget.py holds the step maths and the exact reconstruction formula):
1. Budget(max_error_sq=B): find the largest step whose *actual* error after the release to the
   dtype is within B (searched on a sample of rows, then checked on the whole tensor).
   Budget(step=s): use s with plain rounding, so `budget.error_at_step` predicts the error.
2. Predict the delta with integer low-rank factors (lowrank.py) when that costs fewer bits
   than it saves, rank and factor precision picked on a sample of rows.
3. For B budgets, also pick the rounding: a deadzone (rate-distortion optimised quantization,
   as H.264 encoders use) and a reconstruction offset toward the prediction (the bin's
   centroid); each candidate gets its own largest step within B, the fewest bits wins.
4. Code the residual levels (level - prediction) as hybrid tokens (entropy.py), rows whose
   residuals are all zero skipped by a per-row flag (fine-tunes leave most embedding rows
   untouched), the rest under contexts by the prediction's fractional part (where in its bin
   the prediction falls tells which way the level rounds).
Non-finite or subnormal values, integer dtypes and lossless budgets are refused (None): a
lossless codec then carries the tensor.

Payload: u8 version, f32 step, u8 offset, u8 token split, u8 token msb, the factors
(lowrank.py), u8 prediction contexts, u8 row mode (0: every row coded, 1: row flags follow as a
table and an ANS block), the residual tables, the ANS block, the escapes' raw bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedota.delta import budget as steps
from fedota.delta.budget import MAX_LEVEL, Rounding
from fedota.delta.codecs import entropy, lowrank
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.codecs.bitio import Reader, Writer, pack_bits, packed_size, unpack_bits
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import Tensor

_VERSION = 1
# Roundings tried for max_error_sq budgets: (deadzone, offset in 1/64 steps).
_ROUNDINGS = tuple(Rounding(d, o) for d, o in ((0.0, 0), (0.0, 4), (0.05, 2), (0.1, 4)))
_SPLITS = (2, 3, 4, 5, 6, 8)
_SEARCH_SPLIT = 8  # searches estimate bits with near-exact tokens; the final split is chosen last
_RANKS = (8, 16, 24, 32, 48, 64, 96, 128)
# Factor precisions (entry steps, in square roots of the delta step): the first is tried at
# every rank, the finer ones at the best rank while they keep helping.
_RESOLUTIONS = (2**-1.5, 2**-2.0, 2**-2.5, 2**-3.0)
_ONE_CONTEXT = None  # entropy.ans_encode / histograms: every symbol under table 0
_MIN_PREDICTED = 1 << 14  # matrices smaller than this are not worth factors
_MIN_SIDE = 16
_SAMPLE = 1 << 15  # elements the encoder's searches look at
_ROW_BLOCK = 1 << 18  # elements per block when expanding the prediction


@dataclass(frozen=True)
class _Sample:
    """Evenly spread rows (and column blocks for very wide rows) of the tensor."""

    rows: np.ndarray
    cols: np.ndarray | slice
    base32: np.ndarray
    target32: np.ndarray
    weight: float  # tensor elements per sampled element

    @classmethod
    def of(cls, base32: np.ndarray, target32: np.ndarray) -> _Sample:
        rows, cols = base32.shape
        pick_rows = np.unique(
            np.linspace(0, rows - 1, max(1, min(rows, _SAMPLE // cols))).astype(np.int64)
        )
        pick_cols = steps.sample_positions(cols, _SAMPLE)
        b = base32[pick_rows][:, pick_cols]
        t = target32[pick_rows][:, pick_cols]
        return cls(pick_rows, pick_cols, b, t, rows * cols / b.size)


@dataclass(frozen=True)
class _Plan:
    step: float
    rounding: Rounding
    factors: lowrank.Factors | None
    split: int = 4
    msb: int = 2
    zero: bool = False  # every level 0: the released tensor is the base


def _levels(p_float: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Integer prediction (int32, clipped to the level range) and where it was rounded up.

    Where the prediction was rounded up, its level more often lies below it than above, and
    vice versa; coding the residual's sign relative to that side (flipping it where the
    prediction was rounded up) makes one table fit both halves, recovering most of what
    separate contexts by the prediction's fraction would, without sorting by context.
    """
    if p_float is None:
        return None, None
    rounded = np.rint(p_float)
    flip = rounded > p_float
    np.clip(rounded, -MAX_LEVEL, MAX_LEVEL, out=rounded)
    return rounded.astype(np.int32), flip


def _negate_where(values: np.ndarray, flip: np.ndarray | None) -> np.ndarray:
    """int32 values with the sign of those where `flip` is set negated: (v ^ -f) + f, a
    two's-complement identity that is 4x faster than np.where on a boolean mask."""
    if flip is None:
        return values
    mask = flip.reshape(values.shape).view(np.int8).astype(np.int32)
    out = values ^ -mask
    out += mask
    return out


def _coded(residual: np.ndarray, flip: np.ndarray | None) -> np.ndarray:
    """The symbols coded for residuals: zigzag of the residual, its sign flipped where the
    prediction was rounded up (an involution: applying it twice gives the residual back)."""
    return entropy.zigzag(_negate_where(residual.reshape(-1).astype(np.int32), flip))


def _cost(symbols: np.ndarray, weight: float, splits: tuple[int, ...]) -> tuple[float, int, int]:
    """Estimated bits of coding these zigzagged residuals (scaled to the tensor) with the best
    of the given token splits, and that split and its msb."""
    best = (math.inf, 4, 2)
    for split in splits:
        msb = min(2, split)
        tokens, _, nraw, _ = entropy.tokenize(symbols, split, msb)
        alphabet = entropy.alphabet_size(split, msb, 32)
        hist = entropy.histograms(tokens, None, 1, alphabet) * weight
        bits = entropy.estimate_bits(hist) + float(nraw.sum()) * weight
        if bits < best[0]:
            best = (bits, split, msb)
    return best


def _sample_cost(
    sample: _Sample,
    factors: lowrank.Factors | None,
    step: float,
    rounding: Rounding,
    splits: tuple[int, ...] = (_SEARCH_SPLIT,),
) -> tuple[float, int, int]:
    """Estimated bits of the residuals at this step, and the best token split for them."""
    p_float = lowrank.prediction(factors, sample.rows, step)
    if p_float is not None and not isinstance(sample.cols, slice):
        p_float = p_float[:, sample.cols]
    prediction, flip = _levels(p_float)
    _, residual = steps.quantize(sample.target32 - sample.base32, step, prediction, rounding)
    return _cost(_coded(residual, flip), sample.weight, splits)


def _sample_bits(
    sample: _Sample, factors: lowrank.Factors | None, step: float, rounding: Rounding
) -> float:
    return _sample_cost(sample, factors, step, rounding)[0]


def _choose_factors(
    base32: np.ndarray, target32: np.ndarray, sample: _Sample, step: float
) -> lowrank.Factors | None:
    """The rank and factor precision with the fewest estimated bits (None: no prediction).

    Ranks are tried in increasing order at a middle precision until two in a row do worse
    than the best so far; then the precision is refined at the best rank. A decomposition of
    rank 64 serves the usual ranks; a larger one is made only if 64 wins.
    """
    rows, cols = base32.shape
    if rows * cols < _MIN_PREDICTED or min(rows, cols) < _MIN_SIDE:
        return None
    ranks = [r for r in _RANKS if r <= min(lowrank.MAX_RANK, rows // 4, cols // 4)]
    if not ranks:
        return None
    delta = target32 - base32

    def cost(factors: lowrank.Factors) -> float:
        return lowrank.factor_bits(factors) + _sample_bits(sample, factors, step, steps.PLAIN)

    best: tuple[float, lowrank.Factors | None] = (
        _sample_bits(sample, None, step, steps.PLAIN),
        None,
    )
    decomposed = 0
    worse = 0
    for rank in ranks:
        if rank > decomposed:
            decomposed = min(ranks[-1], max(rank, 64 if decomposed == 0 else lowrank.MAX_RANK))
            u, s, vt = lowrank.decompose(delta, decomposed)
        factors = lowrank.quantize_factors(u, s, vt, rank, _RESOLUTIONS[0], step)
        bits = cost(factors)
        if bits < best[0]:
            best, worse = (bits, factors), 0
        else:
            worse += 1
            if worse == 2:
                break
    if best[1] is None:
        return None
    rank = best[1].rank
    for resolution in _RESOLUTIONS[1:]:
        factors = lowrank.quantize_factors(u, s, vt, rank, resolution, step)
        bits = cost(factors)
        if bits >= best[0]:
            break
        best = (bits, factors)
    return best[1]


def _plan(base: Tensor, target: Tensor, budget: Budget) -> _Plan | None:
    """Step, rounding and factors for this tensor and budget; None if none meets it."""
    rows, cols = lowrank.matrix_shape(target.shape)
    base32 = base.to_float32().reshape(rows, cols)
    target32 = target.to_float32().reshape(rows, cols)
    sample = _Sample.of(base32, target32)
    if budget.step is not None:
        if not steps.valid_step(budget.step):
            return None
        factors = _choose_factors(base32, target32, sample, budget.step)
        _, split, msb = _sample_cost(sample, factors, budget.step, steps.PLAIN, _SPLITS)
        return _Plan(budget.step, steps.PLAIN, factors, split, msb)
    limit = budget.max_error_sq
    if steps.squared_error(base32, target32.reshape(-1), "F32") <= limit:
        return _Plan(1.0, steps.PLAIN, None, zero=True)

    def sampled(step: float, factors: lowrank.Factors | None, rounding: Rounding) -> float:
        p_float = lowrank.prediction(factors, sample.rows, step)
        if p_float is not None and not isinstance(sample.cols, slice):
            p_float = p_float[:, sample.cols]
        prediction, _ = _levels(p_float)
        error = steps.error_of(
            sample.base32, sample.target32, target.dtype, step, prediction, rounding
        )
        return error * sample.weight

    guess = math.sqrt(12 * limit / (rows * cols)) or 1e-30
    plain = steps.largest_step(lambda s: sampled(s, None, steps.PLAIN), limit, guess)
    if not steps.valid_step(plain):
        return None
    factors = _choose_factors(base32, target32, sample, plain)
    best: tuple[float, _Plan] | None = None
    for rounding in _ROUNDINGS:
        step = steps.largest_step(lambda s, r=rounding: sampled(s, factors, r), limit, plain)
        if not steps.valid_step(step):
            continue
        bits = _sample_bits(sample, factors, step, rounding)
        if best is None or bits < best[0]:
            best = (bits, _Plan(step, rounding, factors))
    if best is None:
        return None
    plan = best[1]
    _, split, msb = _sample_cost(sample, factors, plan.step, plan.rounding, _SPLITS)
    return _Plan(plan.step, plan.rounding, factors, split, msb)


def _prediction(
    factors: lowrank.Factors | None, rows: int, cols: int, step: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Integer prediction (rows x cols int32) and its flips, row block by row block."""
    if factors is None:
        return None, None
    prediction = np.empty((rows, cols), dtype=np.int32)
    flip = np.empty((rows, cols), dtype=bool)
    block = max(1, _ROW_BLOCK // cols)
    for start in range(0, rows, block):
        span = slice(start, min(rows, start + block))
        prediction[span], flip[span] = _levels(lowrank.prediction(factors, span, step))
    return prediction, flip


class QuantAnsCodec:
    """Quantized delta, low-rank prediction, residual levels ANS coded."""

    codec_id: ClassVar[int] = 5
    name: ClassVar[str] = "quant-ans"
    lossy: ClassVar[bool] = True

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """The released tensor nearest the budget's limit; None if lossless, inapplicable or
        no step meets the budget."""
        if budget.lossless or base is None or not steps.lossy_applicable(base, target):
            return None
        plan = _plan(base, target, budget)
        if plan is None:
            return None
        rows, cols = lowrank.matrix_shape(target.shape)
        base32 = base.to_float32().reshape(rows, cols)
        target32 = target.to_float32().reshape(rows, cols)
        for _ in range(8):
            prediction, flip = _prediction(plan.factors, rows, cols, plan.step)
            levels, residual = steps.quantize(
                target32 - base32, plan.step, prediction, plan.rounding
            )
            if np.abs(levels).max(initial=0) >= MAX_LEVEL:
                return None
            words = steps.release(base, levels, residual, plan.step, plan.rounding.offset)
            released = Tensor(target.dtype, target.shape, words)
            error = steps.squared_error(released.to_float32(), target32.reshape(-1), "F32")
            if budget.step is not None or error <= budget.max_error_sq:
                break
            # The sample was optimistic: shrink the step by the error's square-root law.
            shrunk = plan.step * math.sqrt(budget.max_error_sq / error) * 0.998
            plan = _Plan(shrunk, plan.rounding, plan.factors, plan.split, plan.msb)
        else:
            return None
        if budget.max_error_sq and error > budget.max_error_sq:
            return None
        payload = _write(plan, residual, flip)
        return Encoded(payload, released, error)

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """Base plus the dequantized, predicted delta.

        Raises:
            PatchFormatError: no matching float base, or a malformed payload.
        """
        if (
            base is None
            or dtype not in ("F32", "F16", "BF16")
            or (base.dtype, base.shape) != (dtype, shape)
        ):
            raise PatchFormatError(f"{self.name} needs a float base tensor of {dtype}{list(shape)}")
        rows, cols = lowrank.matrix_shape(shape)
        src = Reader(payload)
        if src.u8() != _VERSION:
            raise PatchFormatError(f"{self.name} payload version is not {_VERSION}")
        step = src.f32()
        offset = src.u8()
        split, msb = src.u8(), src.u8()
        if not steps.valid_step(step) or offset >= steps.OFFSET_UNIT // 2 or not msb <= split <= 12:
            raise PatchFormatError(f"{self.name} step, offset or token split out of range")
        factors = lowrank.read_factors(src, rows, cols)
        prediction, flip = _prediction(factors, rows, cols, step)
        residual = _read_residual(src, rows, cols, split, msb, flip)
        src.finish()
        levels = residual if prediction is None else prediction + residual
        if np.abs(levels).max(initial=0) >= MAX_LEVEL:
            raise PatchFormatError(f"{self.name} level beyond +-{MAX_LEVEL}")
        return Tensor(dtype, shape, steps.release(base, levels, residual, step, offset))


def _write(plan: _Plan, residual: np.ndarray, flip: np.ndarray | None) -> bytes:
    out = Writer()
    out.u8(_VERSION)
    out.f32(plan.step)
    out.u8(plan.rounding.offset)
    out.u8(plan.split)
    out.u8(plan.msb)
    lowrank.write_factors(out, plan.factors)
    live = residual.any(axis=1)
    if live.all():
        out.u8(0)
    else:
        out.u8(1)
        flags = live.astype(np.int32)
        tables, _ = entropy.fit_tables(np.bincount(flags, minlength=2)[None, :])
        entropy.write_tables(out, tables)
        out.block(entropy.ans_encode(flags, _ONE_CONTEXT, tables))
    symbols = _coded(residual[live], None if flip is None else flip[live])
    tokens, _, nraw, raw = entropy.tokenize(symbols, plan.split, plan.msb)
    alphabet = entropy.alphabet_size(plan.split, plan.msb, 32)
    tables, _ = entropy.fit_tables(entropy.histograms(tokens, _ONE_CONTEXT, 1, alphabet))
    entropy.write_tables(out, tables)
    out.block(entropy.ans_encode(tokens, _ONE_CONTEXT, tables))
    out.raw(pack_bits(raw, nraw))
    return out.getvalue()


def _read_residual(
    src: Reader, rows: int, cols: int, split: int, msb: int, flip: np.ndarray | None
) -> np.ndarray:
    """Residual levels (rows x cols int32) from the row flags, table, tokens and raw bits.

    Raises:
        PatchFormatError: a count, table or token out of bounds.
    """
    mode = src.u8()
    if mode == 0:
        live = np.ones(rows, dtype=bool)
    elif mode == 1:
        flag_tables = entropy.read_tables(src, 1, 2)
        live = entropy.ans_decode(src.block(src.left), rows, flag_tables) == 1
    else:
        raise PatchFormatError(f"row mode {mode} is not 0 or 1")
    alphabet = entropy.alphabet_size(split, msb, 32)
    tables = entropy.read_tables(src, 1, alphabet)
    tokens = entropy.ans_decode(src.block(src.left), int(live.sum()) * cols, tables)
    escaped, nraw = entropy.escapes(tokens, split, msb)
    if packed_size(nraw) != src.left:
        raise PatchFormatError(
            f"residual raw bits take {src.left} bytes, the tokens need {packed_size(nraw)}"
        )
    raw = unpack_bits(src, nraw)
    symbols = entropy.detokenize(tokens, escaped, raw, split, msb, "<u4")
    signed = _negate_where(entropy.unzigzag(symbols), None if flip is None else flip[live])
    if live.all():
        return signed.reshape(rows, cols)
    residual = np.zeros((rows, cols), dtype=np.int32)
    residual[live] = signed.reshape(-1, cols)
    return residual


register(QuantAnsCodec())

__all__ = ["QuantAnsCodec"]
