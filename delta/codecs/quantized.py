"""Codec 5, quant-ans (lossy): the delta quantized at one step per tensor, predicted by a
low-rank model, the residual levels entropy coded with ANS.

Measured on a 30-step AdamW fine-tune of all-MiniLM-L6-v2 (fp32 bytes = 100%): 4.27% at the
`--max-error fp16` budgets (order-0 coding of per-tensor steps: 5.40%), 9.15% at
`--max-rel-error 0.01` (order-0 with one global step: 10.19%).

1. quant_search.py picks the step (the largest whose actual error, after the release to the
   dtype, meets a max_error_sq budget; or the given global step), the rounding, the low-rank
   factors (lowrank.py) and the token split, on a sample; `encode` checks the step on the
   whole tensor and shrinks it if the sample was optimistic.
2. Levels q = p + round(delta / step - p) around the integer prediction p; the released
   tensor is base + (64 q - offset) * step / 64 in float32, then the dtype (budget.py: every
   machine computes it bit for bit).
3. Residuals q - p, sign-flipped where the prediction was rounded up (lowrank.coded), become
   hybrid tokens (entropy.py) under one ANS table; rows whose residuals are all zero are
   skipped by a per-row flag (a fine-tune leaves most embedding rows untouched, and then
   decoding them costs nothing).
Non-finite or subnormal values, empty or integer tensors and lossless budgets are refused
(None): a lossless codec then carries the tensor.

Payload: u8 version, f32 step, u8 offset, u8 token split, u8 token msb, the factors
(lowrank.py), u8 row mode (0: every row coded; 1: the row flags follow as a table and an ANS
block), the residual table, the residual ANS block (varint length + words), the escapes'
raw bits.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from fedota.delta import budget as steps
from fedota.delta.budget import MAX_LEVEL
from fedota.delta.codecs import entropy, lowrank, quant_search
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.codecs.bitio import Reader, Writer, pack_bits, packed_size, unpack_bits
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import Tensor

_VERSION = 1
_ONE_CONTEXT = None  # entropy.ans_encode / histograms: every symbol under table 0
_ROW_BLOCK = 1 << 15  # elements per block expanding the prediction (float64 in L2 cache)


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
        prediction[span], flip[span] = lowrank.levels(lowrank.prediction(factors, span, step))
    return prediction, flip


class QuantAnsCodec:
    """Quantized delta, low-rank prediction, residual levels ANS coded."""

    codec_id: ClassVar[int] = 5
    name: ClassVar[str] = "quant-ans"
    lossy: ClassVar[bool] = True

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """The released tensor nearest the budget's limit; None if lossless, inapplicable or
        no step meets the budget."""
        if (
            budget.lossless
            or base is None
            or target.numel == 0
            or not steps.lossy_applicable(base, target)
        ):
            return None
        plan = quant_search.plan(base, target, budget)
        if plan is None:
            return None
        if plan.factors is not None and not lowrank.sane_ratio(plan.factors, plan.step):
            plan = quant_search.Plan(plan.step, plan.rounding, None, plan.split, plan.msb)
        rows, cols = lowrank.matrix_shape(target.shape)
        base32 = base.to_float32().reshape(rows, cols)
        target32 = target.to_float32().reshape(rows, cols)
        for _ in range(8):
            prediction, flip = _prediction(plan.factors, rows, cols, plan.step)
            if plan.zero:  # the whole delta fits the budget: release the base itself
                levels = residual = np.zeros((rows, cols), dtype=np.int32)
            else:
                levels, residual = steps.quantize(
                    target32 - base32, plan.step, prediction, plan.rounding
                )
            if np.abs(levels).max(initial=0) >= MAX_LEVEL:
                return None
            values, keep = steps.release_float32(
                base32.reshape(-1),
                levels.reshape(-1),
                residual.reshape(-1),
                plan.step,
                plan.rounding.offset,
            )
            if not steps.portable(values):  # a subnormal release: leave it to lossless
                return None
            words = steps.finish_release(base, values, keep)
            released = Tensor(target.dtype, target.shape, words)
            error = steps.squared_error(released.to_float32(), target32.reshape(-1), "F32")
            if budget.step is not None or error <= budget.max_error_sq:
                break
            # The sample was optimistic: shrink the step by the error's square-root law.
            shrunk = plan.step * math.sqrt(budget.max_error_sq / error) * 0.998
            plan = quant_search.Plan(shrunk, plan.rounding, plan.factors, plan.split, plan.msb)
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
        if rows * cols == 0:
            raise PatchFormatError(f"{self.name} never encodes an empty tensor")
        src = Reader(payload)
        if src.u8() != _VERSION:
            raise PatchFormatError(f"{self.name} payload version is not {_VERSION}")
        step = src.f32()
        offset = src.u8()
        split, msb = src.u8(), src.u8()
        if (
            not steps.valid_step(step)
            or offset >= steps.OFFSET_UNIT // 2
            or not msb <= min(2, split) <= split <= 12
        ):
            raise PatchFormatError(f"{self.name} step, offset or token split out of range")
        factors = lowrank.read_factors(src, rows, cols)
        if factors is not None and not lowrank.sane_ratio(factors, step):
            raise PatchFormatError(f"{self.name} factor scale is out of proportion to its step")
        live, symbols = _read_symbols(src, rows, cols, split, msb)
        src.finish()
        return Tensor(dtype, shape, _reconstruct(base, factors, live, symbols, step, offset))


def _reconstruct(
    base: Tensor,
    factors: lowrank.Factors | None,
    live: np.ndarray,
    symbols: np.ndarray,
    step: float,
    offset: int,
) -> np.ndarray:
    """The released words, row block by row block (the prediction's float64 temporaries stay
    in cache): prediction, residual from the coded symbols, levels, release.

    Raises:
        PatchFormatError: a level beyond the exact range.
    """
    rows, cols = lowrank.matrix_shape(base.shape)
    base_rows = base.data.reshape(rows, cols)
    if factors is None:  # without a prediction, rows with no residual are the base rows
        out = base_rows.copy()
        live_rows = np.flatnonzero(live)
        signed = entropy.unzigzag(symbols).reshape(-1, cols)
        block = max(1, _ROW_BLOCK // cols)
        for start in range(0, live_rows.size, block):
            picked = live_rows[start : start + block]
            residual = signed[start : start + block]
            if np.abs(residual).max(initial=0) >= MAX_LEVEL:
                raise PatchFormatError(f"quant-ans level beyond +-{MAX_LEVEL}")
            piece = Tensor(base.dtype, (residual.size,), base_rows[picked].reshape(-1))
            out[picked] = steps.release(piece, residual, residual, step, offset).reshape(-1, cols)
        return out.reshape(-1)
    out = np.empty_like(base_rows)
    first_symbol = np.concatenate([[0], np.cumsum(live)]) * cols  # symbols before each row
    block = max(1, _ROW_BLOCK // cols)
    for start in range(0, rows, block):
        span = slice(start, min(rows, start + block))
        prediction, flip = lowrank.levels(lowrank.prediction(factors, span, step))
        residual = np.zeros((span.stop - span.start, cols), dtype=np.int32)
        mask = live[span]
        coded = symbols[first_symbol[span.start] : first_symbol[span.stop]]
        if coded.size:
            signed = entropy.unzigzag(coded).reshape(-1, cols)
            residual[mask] = lowrank.negate_where(signed, None if flip is None else flip[mask])
        levels = residual if prediction is None else prediction + residual
        if np.abs(levels).max(initial=0) >= MAX_LEVEL:
            raise PatchFormatError(f"quant-ans level beyond +-{MAX_LEVEL}")
        piece = Tensor(base.dtype, (levels.size,), base_rows[span].reshape(-1))
        out[span] = steps.release(piece, levels, residual, step, offset).reshape(-1, cols)
    return out.reshape(-1)


def _write(plan: quant_search.Plan, residual: np.ndarray, flip: np.ndarray | None) -> bytes:
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
    symbols = lowrank.coded(residual[live], None if flip is None else flip[live])
    tokens, _, nraw, raw = entropy.tokenize(symbols, plan.split, plan.msb)
    alphabet = entropy.alphabet_size(plan.split, plan.msb, 32)
    tables, _ = entropy.fit_tables(entropy.histograms(tokens, _ONE_CONTEXT, 1, alphabet))
    entropy.write_tables(out, tables)
    out.block(entropy.ans_encode(tokens, _ONE_CONTEXT, tables))
    out.raw(pack_bits(raw, nraw))
    return out.getvalue()


def _read_symbols(
    src: Reader, rows: int, cols: int, split: int, msb: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are coded, and their zigzagged, sign-flipped residuals (uint32), from the
    row flags, the table, the tokens and the raw bits.

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
    # |residual| < 2 MAX_LEVEL, checked before any arithmetic on it can wrap around.
    if int(symbols.max(initial=0)) >= 4 * MAX_LEVEL:
        raise PatchFormatError(f"quant-ans residual beyond +-{2 * MAX_LEVEL}")
    return live, symbols


register(QuantAnsCodec())

__all__ = ["QuantAnsCodec"]
