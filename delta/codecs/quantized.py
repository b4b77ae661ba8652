"""Codecs 5, quant-ans, 6, quant-ctx, and 7, quant-tcq (lossy): the delta quantized at one step
per tensor, predicted by a low-rank model, the residual levels entropy coded with ANS
(quant-ans: under one table; quant-ctx: relative to the prediction, under its contexts, see
`QuantCtxCodec`; quant-tcq: quant-ctx with dependent quantization, see `QuantTcqCodec`).

Measured on a 30-step AdamW fine-tune of all-MiniLM-L6-v2 (fp32 bytes = 100%, whole patch):
quant-tcq 4.21% at the `--max-error fp16` budgets (quant-ctx 4.32%, quant-ans 4.41%; order-0
coding of per-tensor steps: 5.40%), 8.65% at `--max-rel-error 0.01` (quant-tcq keeps
quant-ctx's levels there; quant-ans 8.71%; order-0 with one global step: 10.19%).

1. quant_search.py picks the step (the largest whose actual error, after the release to the
   dtype, meets a max_error_sq budget; or the given global step), the rounding, the low-rank
   factors (lowrank.py) and the token split, on a sample; `encode` checks the step on the
   whole tensor and, if the sample was optimistic, pulls a trellis's reconstructions toward
   the prediction (`_repair`) or shrinks the step.
2. Levels q = p + round(delta / step - p) around the integer prediction p (quant-tcq with
   an error budget: q = p + r, r the trellis's choice between two quantizers, see
   `QuantTcqCodec`); the released tensor is base + (64 q - offset) * step / 64 in float32,
   then the dtype (budget.py: every machine computes it bit for bit). One compiled pass does
   it all (_quant_kernels.py), and the decoder's pass releases through the same compiled
   function.
3. Residuals q - p, sign-flipped where the prediction was rounded up (lowrank.py), become
   hybrid tokens (entropy.py) under one ANS table; rows whose residuals are all zero are
   skipped by a per-row flag (a fine-tune leaves most embedding rows untouched, and then
   coding and decoding them costs nothing).
Non-finite or subnormal values, empty or integer tensors and lossless budgets are refused
(None): a lossless codec then carries the tensor.

Payload: u8 version, (quant-tcq only: u8 quantizer, 0 rounded or 1 dependent), f32 step, u8
offset, u8 token split, u8 token msb, the factors (lowrank.py), u8 row mode (0: every row
coded; 1: the row flags follow as a table and an ANS block), the residual table, the residual
ANS block (varint length + words), the escapes' raw bits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np

from fedota.delta import budget as steps
from fedota.delta.codecs import _coder_kernels as coder
from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs import entropy, lowrank, quant_search
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.codecs.bitio import Reader, Writer
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import Tensor, from_float32

_ONE_CONTEXT = None  # entropy.ans_encode / histograms: every symbol under table 0
_ROW_BLOCK = 1 << 15  # elements per block expanding the prediction (float64 in L2 cache)
# quant-ctx: the context shifts the encoder tries (0..3), and the byte for "one table".
_SHIFTS = 4
# `_offset_under` aims this far under the limit: the quadratic ignores the release's float32
# rounding, which the exact measure after it checks.
_REPAIR_MARGIN = 0.9999
_ONE_TABLE = 0xFF
_CONTEXTS = 2 * (kernels.CONTEXT_CAP + 1)


def _context_map(shift: int) -> np.ndarray:
    """The context at `shift` of each finest context (`_quant_kernels.context` at shift 0,
    WIDEST_CAP), as the decoder's `live_contexts` computes it."""
    finest = np.arange(2 * (kernels.WIDEST_CAP + 1))
    coarse = np.minimum((finest >> 1) >> shift, kernels.CONTEXT_CAP) * 2 + (finest & 1)
    return coarse.astype(np.uint8)


def _grouped(finest: np.ndarray, shift: int) -> np.ndarray:
    """The histograms of the contexts at `shift` (`_context_map`) from the finest ones'."""
    alphabet = finest.shape[1]
    magnitudes = finest.reshape(-1, 1 << shift, 2, alphabet).sum(axis=1)
    grouped = magnitudes[: kernels.CONTEXT_CAP + 1].copy()
    grouped[kernels.CONTEXT_CAP] += magnitudes[kernels.CONTEXT_CAP + 1 :].sum(axis=0)
    return grouped.reshape(_CONTEXTS, alphabet)


def _blocks(rows: int, cols: int, factors: lowrank.Factors | None) -> list[slice]:
    """Row blocks to expand the prediction in (all rows at once without factors)."""
    if factors is None:
        return [slice(0, rows)]
    block = max(1, _ROW_BLOCK // cols)
    return [slice(start, min(rows, start + block)) for start in range(0, rows, block)]


def _product(factors: lowrank.Factors | None, span: slice) -> np.ndarray | None:
    if factors is None:
        return None
    return lowrank.product(factors.left[span], factors.right).reshape(-1)


class QuantAnsCodec:
    """Quantized delta, low-rank prediction, residual levels ANS coded under one table.

    Superseded by quant-ctx (codec 6): still decoded (coordinators cache patches), offered
    by `diff` only when asked for by name or id.
    """

    codec_id: ClassVar[int] = 5
    name: ClassVar[str] = "quant-ans"
    lossy: ClassVar[bool] = True
    superseded: ClassVar[bool] = True
    # Residuals coded relative to `_quant_kernels.orientation` under `context` (codec 6), or
    # sign-flipped where the prediction was rounded up, under one table (codec 5).
    oriented: ClassVar[bool] = False
    # The encoder's released values come from _quant_kernels.quantize, which releases each
    # element with the same compiled release_value the decoder's release_rows calls, from
    # the levels the payload codes (tests/delta decode every payload and compare).
    releases_as_decoder: ClassVar[bool] = True
    version: ClassVar[int] = 1
    # Codec 7: a byte after the version says whether the levels are dependent (trellis
    # coded, `_quant_kernels.quantize_dependent`) or rounded one by one (as codec 6's).
    quantizer_byte: ClassVar[bool] = False

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """The released tensor nearest the budget's limit; None if lossless, inapplicable or
        no step meets the budget."""
        if (
            budget.lossless
            or base is None
            or target.dtype not in ("F32", "F16", "BF16")
            or (base.dtype, base.shape) != (target.dtype, target.shape)
            or target.numel == 0
        ):
            return None
        rows, cols = lowrank.matrix_shape(target.shape)
        base32, target32 = steps.float32_view(base), steps.float32_view(target)
        if budget.change is not None and budget.change.energy.shape == (rows,):
            energy, peak = budget.change.energy, budget.change.peak
        else:
            energy, peak = np.empty(rows), np.empty(rows)
            if not kernels.scan(base32, target32, cols, energy, peak):
                return None  # a value the release cannot reproduce everywhere: lossless
        matrices = base32.reshape(rows, cols), target32.reshape(rows, cols)
        plan = quant_search.plan(
            *matrices, target.dtype, energy, budget, dependent=self.quantizer_byte
        )
        if plan is None:
            return None
        if plan.factors is not None and not lowrank.sane_ratio(plan.factors, plan.step):
            plan = dataclasses.replace(plan, factors=None)
        values = np.empty(base32.size, dtype=np.float32)
        symbols = np.empty(base32.size, dtype=np.uint32)
        live = np.empty(rows, dtype=np.bool_)
        contexts = np.empty(base32.size, dtype=np.uint8) if self._contexts(plan) else None
        blocks = _blocks(rows, cols, plan.factors)
        products = [_product(plan.factors, span) for span in blocks]
        for _ in range(8):
            moments = np.zeros(2)  # the trellis's, for `_repair`
            if plan.zero:  # the whole delta fits the budget: release the base itself
                values[:] = base32
                live[:] = False
                error, cursor = float(energy.sum()), 0
            else:
                quantized = _quantize(
                    plan, base32, target32, cols, blocks, products, energy, peak, values, symbols,
                    live, contexts, moments,
                )  # fmt: skip
                if quantized is None:
                    return None
                error, cursor = quantized
            if target.dtype != "F32":
                error = steps.released_error(values, target32, target.dtype, cols)
            if budget.step is not None or error <= budget.max_error_sq:
                break
            if plan.dependent:
                repaired = self._repair(
                    plan, base32, target32, target.dtype, cols, blocks, products, values,
                    symbols, live, moments, error, budget.max_error_sq,
                )  # fmt: skip
                if repaired is not None:
                    plan, error = repaired
                    break
            # The sample was optimistic: shrink the step by the error's square-root law (on the
            # whole tensor it holds to well under the 0.07% margin).
            shrunk = plan.step * math.sqrt(budget.max_error_sq / error) * 0.9993
            plan = dataclasses.replace(plan, step=shrunk)
        else:
            return None
        words = values if target.dtype == "F32" else from_float32(target.dtype, values)
        used = None if contexts is None else contexts[:cursor]
        payload = _write(self.version, self.quantizer_byte, plan, symbols[:cursor], live, used)
        return Encoded(payload, Tensor(target.dtype, target.shape, words), error)

    def _repair(
        self,
        plan: quant_search.Plan,
        base32: np.ndarray,
        target32: np.ndarray,
        dtype: str,
        cols: int,
        blocks: list[slice],
        products: list[np.ndarray | None],
        values: np.ndarray,
        symbols: np.ndarray,
        live: np.ndarray,
        moments: np.ndarray,
        error: float,
        limit: float,
    ) -> tuple[quant_search.Plan, float] | None:
        """A trellis pass's release a little over `limit` brought under it by the smallest
        reconstruction offset that does it, with the same indices: (the plan with that
        offset, the error, exact), or None (and `values` as they were) where none does.

        The trellis's indices lean toward the prediction (its rate term), so pulling their
        reconstructions toward it lowers the error; one release pass instead of another
        search (the sample's estimate of the error is off by ~0.4%, so a third of the
        matrices came out over)."""
        offset = _offset_under(moments, plan.rounding.offset, plan.step, error, limit)
        if offset is None:
            return None
        ratio = float(lowrank.ratio(plan.factors, plan.step)) if plan.factors is not None else 0.0
        pulled = np.empty_like(values)
        cursor = 0
        for span, product in zip(blocks, products, strict=True):
            elements = slice(span.start * cols, span.stop * cols)
            status, cursor = kernels.release_rows(
                base32[elements], cols, product, ratio, np.float32(plan.step), offset,
                live[span], symbols, cursor, pulled[elements], self.oriented, True,
            )  # fmt: skip
            if status != kernels.OK:
                return None
        repaired = steps.released_error(pulled, target32, dtype, cols)
        if not repaired <= limit:
            return None
        values[:] = pulled
        rounding = dataclasses.replace(plan.rounding, offset=offset)
        return dataclasses.replace(plan, rounding=rounding), repaired

    def _contexts(self, plan: quant_search.Plan) -> bool:
        """Whether the residuals are coded under prediction contexts (a quant-ctx payload
        with factors; without them every context would be the first)."""
        return self.oriented and plan.factors is not None and not plan.zero

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
        if src.u8() != self.version:
            raise PatchFormatError(f"{self.name} payload version is not {self.version}")
        dependent = False
        if self.quantizer_byte:
            quantizer = src.u8()
            if quantizer > 1:
                raise PatchFormatError(f"{self.name} quantizer {quantizer} is not 0 or 1")
            dependent = quantizer == 1
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
        ratio = float(lowrank.ratio(factors, step)) if factors is not None else 0.0
        blocks = _blocks(rows, cols, factors)
        products = [_product(factors, span) for span in blocks]
        live = _read_live(src, rows)
        contexts = None
        if self.oriented and factors is not None:
            shift = src.u8()
            if shift >= _SHIFTS and shift != _ONE_TABLE:
                raise PatchFormatError(f"{self.name} context shift {shift} is out of range")
            if shift != _ONE_TABLE:
                contexts = np.empty(int(live.sum()) * cols, dtype=np.uint8)
                at = 0
                for span, product in zip(blocks, products, strict=True):
                    at = kernels.live_contexts(
                        product, ratio, cols, live[span], shift, contexts, at
                    )
        symbols = _read_symbols(src, int(live.sum()) * cols, split, msb, contexts)
        src.finish()
        base32 = steps.float32_view(base)
        values = np.empty(base32.size, dtype=np.float32)
        cursor = 0
        for span, product in zip(blocks, products, strict=True):
            elements = slice(span.start * cols, span.stop * cols)
            status, cursor = kernels.release_rows(
                base32[elements], cols, product, ratio, np.float32(step),
                offset, live[span], symbols, cursor, values[elements], self.oriented, dependent,
            )  # fmt: skip
            if status != kernels.OK:
                raise PatchFormatError(f"quant-ans level beyond +-{steps.MAX_LEVEL}")
        words = values if dtype == "F32" else from_float32(dtype, values)
        return Tensor(dtype, shape, words)


def _quantize(
    plan: quant_search.Plan,
    base32: np.ndarray,
    target32: np.ndarray,
    cols: int,
    blocks: list[slice],
    products: list[np.ndarray | None],
    energy: np.ndarray,
    peak: np.ndarray | None,
    values: np.ndarray,
    symbols: np.ndarray,
    live: np.ndarray,
    contexts: np.ndarray | None,
    moments: np.ndarray | None = None,
) -> tuple[float, int] | None:
    """Quantize and release the whole tensor (row block by row block, with each block's
    prediction product; rows that stay put, by their `energy` and `peak`, in no time) into
    `values`, the live rows' coded symbols into `symbols` and the row flags into `live`:
    (error as float32, symbols written; their contexts into `contexts` if given; a trellis's
    `moments`, as `kernels.quantize_dependent`'s, into `moments` if given), or None where a
    level leaves the exact range or a release would be subnormal."""
    ratio = float(lowrank.ratio(plan.factors, plan.step)) if plan.factors is not None else 0.0
    error, cursor = 0.0, 0
    for span, product in zip(blocks, products, strict=True):
        elements = slice(span.start * cols, span.stop * cols)
        if plan.table is not None:
            status, error, cursor = kernels.quantize_dependent(
                base32[elements], target32[elements], cols, product, ratio,
                np.float32(plan.step), plan.rounding.offset, plan.table, quant_search.RATE_WEIGHT,
                None, values[elements], symbols, cursor, live[span], energy[span], error,
                contexts, None, moments,
            )  # fmt: skip
            if status != kernels.OK:
                return None
            continue
        status, error, cursor = kernels.quantize(
            base32[elements], target32[elements], cols, product, ratio,
            np.float32(plan.step), np.float32(plan.rounding.deadzone), plan.rounding.offset,
            None, values[elements], symbols, cursor, live[span], energy[span],
            None if peak is None else peak[span], error, contexts,
        )  # fmt: skip
        if status != kernels.OK:
            return None
    return error, cursor


def _offset_under(
    moments: np.ndarray, offset: int, step: float, error: float, limit: float
) -> int | None:
    """The smallest offset above `offset` at which the error of indices released at `offset`
    with these `moments` (`kernels.quantize_dependent`'s) would be under `limit` by the
    quadratic it follows, or None. Moving the offset by d / 64 steps changes the squared error
    by step^2 (2 d / 64 * sum(m s) + (d / 64)^2 * sum(s^2)), least at
    d = -64 sum(m s) / sum(s^2)."""
    pulled, count = float(moments[0]), float(moments[1])
    unit = kernels.OFFSET_UNIT
    if not count > 0:
        return None
    least = offset - unit * pulled / count
    for tried in range(offset + 1, min(math.floor(least) + 1, unit // 2 - 1) + 1):
        moved = (tried - offset) / unit
        if error + step * step * (2 * moved * pulled + moved * moved * count) <= (
            limit * _REPAIR_MARGIN
        ):
            return tried
    return None


def _write(
    version: int,
    quantizer_byte: bool,
    plan: quant_search.Plan,
    symbols: np.ndarray,
    live: np.ndarray,
    contexts: np.ndarray | None,
) -> bytes:
    out = Writer()
    out.u8(version)
    if quantizer_byte:
        out.u8(1 if plan.dependent else 0)
    out.f32(plan.step)
    out.u8(plan.rounding.offset)
    out.u8(plan.split)
    out.u8(plan.msb)
    lowrank.write_factors(out, plan.factors)
    if live.all():
        out.u8(0)
    else:
        out.u8(1)
        flags = live.astype(np.int32)
        tables, _ = entropy.fit_tables(np.bincount(flags, minlength=2)[None, :])
        entropy.write_tables(out, tables)
        out.block(entropy.ans_encode(flags, _ONE_CONTEXT, tables))
    alphabet = entropy.alphabet_size(plan.split, plan.msb, 32)
    tokens = np.empty(symbols.size, dtype=np.int32)
    raw = np.empty(symbols.size + 1 + symbols.size // coder.BIT_CHUNK, dtype=np.uint32)
    hist = np.zeros(alphabet, dtype=np.int64)
    used = coder.quant_tokenize(symbols, plan.split, plan.msb, tokens, raw, hist)
    tables, cost = entropy.fit_tables(hist[None, :])
    coded_contexts = None
    if contexts is not None:
        finest = np.zeros((2 * (kernels.WIDEST_CAP + 1), alphabet), dtype=np.int64)
        coder.context_histogram(tokens, contexts, finest)
        shift = _ONE_TABLE
        for tried in range(_SHIFTS):
            tried_tables, tried_cost = entropy.fit_tables(_grouped(finest, tried))
            if tried_cost < cost:
                shift, tables, cost = tried, tried_tables, tried_cost
        out.u8(shift)
        if shift != _ONE_TABLE:
            coded_contexts = _context_map(shift)[contexts]
    entropy.write_tables(out, tables)
    out.block(entropy.ans_encode(tokens, coded_contexts, tables))
    out.raw(raw[:used].astype("<u4").tobytes())
    return out.getvalue()


def _read_live(src: Reader, rows: int) -> np.ndarray:
    """Which rows are coded (the row mode and, for mode 1, the flags).

    Raises:
        PatchFormatError: an unknown mode, or flags out of bounds.
    """
    mode = src.u8()
    if mode == 0:
        return np.ones(rows, dtype=bool)
    if mode != 1:
        raise PatchFormatError(f"row mode {mode} is not 0 or 1")
    flag_tables = entropy.read_tables(src, 1, 2)
    return entropy.ans_decode(src.block(src.left), rows, flag_tables) == 1


def _read_symbols(
    src: Reader, count: int, split: int, msb: int, contexts: np.ndarray | None
) -> np.ndarray:
    """The `count` zigzagged residuals (uint32) of the live rows, from the tables (one, or
    one per context when `contexts` are given), the tokens and the raw bits.

    Raises:
        PatchFormatError: a count, table or token out of bounds.
    """
    alphabet = entropy.alphabet_size(split, msb, 32)
    if contexts is None:
        tables = entropy.read_tables(src, 1, alphabet)
        tokens = entropy.ans_decode(src.block(src.left), count, tables)
    else:
        tables = entropy.read_tables(src, _CONTEXTS, alphabet)
        tokens = entropy.ans_decode(src.block(src.left), contexts, tables)
    if src.left % 4:
        raise PatchFormatError(f"quant-ans raw bits take {src.left} bytes, not whole words")
    raw = np.frombuffer(src.take(src.left), dtype="<u4")
    symbols = np.empty(tokens.size, dtype=np.uint32)
    # |residual| < 2 MAX_LEVEL, checked before any arithmetic on it can wrap around.
    status = coder.quant_detokenize(tokens, raw, split, msb, 4 * steps.MAX_LEVEL, symbols)
    if status == coder.TOO_LARGE:
        raise PatchFormatError(f"quant-ans residual beyond +-{2 * steps.MAX_LEVEL}")
    if status != coder.OK:
        raise PatchFormatError("quant-ans raw bits do not match its tokens")
    return symbols


class QuantCtxCodec(QuantAnsCodec):
    """quant-ans with the residuals coded relative to the prediction: each under a context
    of the prediction's magnitude and rounding, its sign relative to the prediction's (a
    fine-tune's change is bounded, so where the prediction is large the residual leans back
    toward zero). On the 30-step MiniLM fine-tune: 2.6% fewer residual bits than one table.

    Superseded by quant-tcq (codec 7): still decoded, offered by `diff` only when asked for
    by name or id."""

    codec_id: ClassVar[int] = 6
    name: ClassVar[str] = "quant-ctx"
    superseded: ClassVar[bool] = True
    oriented: ClassVar[bool] = True


class QuantTcqCodec(QuantCtxCodec):
    """quant-ctx with dependent quantization for error budgets: two quantizers (even levels;
    odd levels and zero) chosen by a four-state machine of the coded indices' parities, the
    indices picked by a trellis search (`_quant_kernels.quantize_dependent`), on matrices
    with a low-rank prediction where plain rounding does not look clearly cheaper (see
    quant_search.py for both). At the fp16 budgets of the 30-step MiniLM fine-tune the step
    shrinks to ~0.57 of plain rounding's at the same error, and the patch from 4.32% to 4.21%
    of the fp32 bytes, for ~1.25x quant-ctx's diff CPU time. Step budgets (`--max-rel-error`)
    keep quant-ctx's levels: the global step's search counted plain rounding's error.
    Superseded quant-ctx stays offered by name (`codecs=["quant-ctx"]`) for the faster diff."""

    codec_id: ClassVar[int] = 7
    name: ClassVar[str] = "quant-tcq"
    superseded: ClassVar[bool] = False
    quantizer_byte: ClassVar[bool] = True


register(QuantAnsCodec())
register(QuantCtxCodec())
register(QuantTcqCodec())

__all__ = ["QuantAnsCodec", "QuantCtxCodec", "QuantTcqCodec"]
