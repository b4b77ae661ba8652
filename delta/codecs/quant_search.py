"""The quantized codec's encoder choices: step, rounding, low-rank factors and token split,
each picked by estimating bits and errors on a sample of rows (about 2^15 elements).

- Budget(max_error_sq=B): the largest plain-rounding step within B (error measured after the
  release to the dtype, as `budget.error_of` computes it); then the factors at that step; then,
  for each candidate rounding, its own largest step within B with those factors, keeping the
  rounding whose residuals cost the fewest bits. Rate-distortion optimised quantization in the
  spirit of H.264 encoders: a deadzone trades a little more error per level for many more
  zeros, and a reconstruction offset toward the prediction (the centroid of a bin whose density
  falls away from the prediction) buys back error; both move the largest allowed step.
- Budget(step=s): s with plain rounding (so `budget.error_at_step` is the error); factors and
  split only.
- Factors: ranks in increasing order at one precision until two in a row cost more than the
  best so far (factor bits + residual bits), then the precision refined at the best rank.
Estimates use entropy.estimate_bits (empirical entropy plus table bytes), scaled from the
sample to the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedota.delta import budget as steps
from fedota.delta.budget import Rounding
from fedota.delta.codecs import entropy, lowrank
from fedota.delta.codecs.base import Budget
from fedota.delta.tensor import Tensor

# Roundings tried for max_error_sq budgets: (deadzone, offset in 1/64 steps).
_ROUNDINGS = tuple(Rounding(d, o) for d, o in ((0.0, 0), (0.0, 4), (0.05, 2), (0.1, 4)))
SPLITS = (2, 3, 4, 5, 6, 8)
_SEARCH_SPLIT = 8  # searches estimate bits with near-exact tokens; the final split is chosen last
_RANKS = (8, 16, 24, 32, 48, 64, 96, 128)
# Factor precisions (entry steps, in square roots of the delta step): the first is tried at
# every rank, the finer ones at the best rank while they keep helping.
_RESOLUTIONS = (2**-1.5, 2**-2.0, 2**-2.5, 2**-3.0)
_MIN_PREDICTED = 1 << 14  # matrices smaller than this are not worth factors
_MIN_SIDE = 16
_SAMPLE = 1 << 15  # elements the searches look at
HEAVY_SHARE = 0.99


@dataclass(frozen=True)
class _Sample:
    """Rows of the tensor (and column blocks for very wide rows): first the `heavy` rows that
    hold nearly all of the change when they are few (an embedding matrix of which a fine-tune
    moved only the rows of the tokens it saw), then evenly spread rows of the rest. Each part
    has its own weight, so estimates scale to the tensor either way."""

    rows: np.ndarray
    cols: np.ndarray | slice
    base32: np.ndarray
    target32: np.ndarray
    heavy: int  # how many of `rows` (the first ones) are heavy
    weights: tuple[float, float]  # tensor elements per sampled element: heavy part, the rest

    @classmethod
    def of(cls, base32: np.ndarray, target32: np.ndarray) -> _Sample:
        rows, cols = base32.shape
        pick_cols = steps.sample_positions(cols, _SAMPLE)
        width = cols if isinstance(pick_cols, slice) else pick_cols.size
        budget = max(1, min(rows, _SAMPLE // width))
        heavy = _heavy_rows(base32, target32, budget)
        rest = np.setdiff1d(np.arange(rows), heavy, assume_unique=True)
        spread = rest[np.unique(np.linspace(0, rest.size - 1, min(rest.size, budget)).astype(int))]
        pick_rows = np.concatenate([heavy, spread]) if rest.size else heavy
        b = base32[pick_rows][:, pick_cols]
        t = target32[pick_rows][:, pick_cols]
        per_row = cols / width
        weights = (per_row, per_row * rest.size / max(1, spread.size))
        return cls(pick_rows, pick_cols, b, t, heavy.size, weights)

    def element_weights(self) -> np.ndarray:
        """The weight of each sampled element, row-major."""
        width = self.base32.shape[1]
        heavy = np.full(self.heavy * width, self.weights[0])
        return np.concatenate([heavy, np.full(self.base32.size - heavy.size, self.weights[1])])

    def parts(self) -> tuple[tuple[slice, float], ...]:
        """(rows of the sample, weight) of its heavy part and its rest."""
        return ((slice(0, self.heavy), self.weights[0]), (slice(self.heavy, None), self.weights[1]))


def _heavy_rows(base32: np.ndarray, target32: np.ndarray, limit: int) -> np.ndarray:
    """The fewest rows holding HEAVY_SHARE of the change, if there are at most `limit` (and
    under an eighth of the rows); else none."""
    rows = base32.shape[0]
    if rows < 8:
        return np.zeros(0, dtype=np.int64)
    energy = np.empty(rows)
    step = max(1, (1 << 20) // base32.shape[1])
    for start in range(0, rows, step):
        moved = target32[start : start + step].astype(np.float64) - base32[start : start + step]
        energy[start : start + step] = np.einsum("ij,ij->i", moved, moved)
    order = np.argsort(-energy, kind="stable")
    total = float(energy.sum())
    if total == 0.0:
        return np.zeros(0, dtype=np.int64)
    count = int(np.searchsorted(np.cumsum(energy[order]), HEAVY_SHARE * total)) + 1
    if count > min(limit, rows // 8):
        return np.zeros(0, dtype=np.int64)
    return np.sort(order[:count])


@dataclass(frozen=True)
class Plan:
    step: float
    rounding: Rounding
    factors: lowrank.Factors | None
    split: int = 4
    msb: int = 2
    zero: bool = False  # every level 0: the released tensor is the base


def _cost(
    symbols: np.ndarray, weight: np.ndarray, splits: tuple[int, ...]
) -> tuple[float, int, int]:
    """Estimated bits of coding these zigzagged residuals (scaled to the tensor) with the best
    of the given token splits, and that split and its msb."""
    best = (math.inf, 4, 2)
    for split in splits:
        msb = min(2, split)
        tokens, escaped, nraw, _ = entropy.tokenize(symbols, split, msb)
        alphabet = entropy.alphabet_size(split, msb, 32)
        hist = np.bincount(tokens, weights=weight, minlength=alphabet)[None, :alphabet]
        bits = entropy.estimate_bits(np.rint(hist)) + float((nraw * weight[escaped]).sum())
        if bits < best[0]:
            best = (bits, split, msb)
    return best


@dataclass(frozen=True)
class _Predicted:
    """Factors with their product over the sample (which does not depend on the step)."""

    factors: lowrank.Factors | None
    product: np.ndarray | None

    @classmethod
    def of(cls, sample: _Sample, factors: lowrank.Factors | None) -> _Predicted:
        if factors is None:
            return cls(None, None)
        right = factors.right if isinstance(sample.cols, slice) else factors.right[sample.cols]
        return cls(factors, lowrank.product(factors.left[sample.rows], right))

    def levels(self, step: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Integer prediction and flips over the sample at `step` (as the decoder has them)."""
        if self.factors is None or self.product is None:
            return None, None
        return lowrank.levels(self.product * lowrank.ratio(self.factors, step))


def _sample_cost(
    sample: _Sample,
    predicted: _Predicted,
    step: float,
    rounding: Rounding,
    splits: tuple[int, ...] = (_SEARCH_SPLIT,),
) -> tuple[float, int, int]:
    """Estimated bits of the residuals at this step, and the best token split for them."""
    prediction, flip = predicted.levels(step)
    _, residual = steps.quantize(sample.target32 - sample.base32, step, prediction, rounding)
    return _cost(lowrank.coded(residual, flip), sample.element_weights(), splits)


def _sample_error(
    sample: _Sample, predicted: _Predicted, step: float, rounding: Rounding, dtype: str
) -> float:
    """The error at this step over the sample, scaled to the tensor."""
    prediction, _ = predicted.levels(step)
    total = 0.0
    for rows, weight in sample.parts():
        part = None if prediction is None else prediction[rows]
        error = steps.error_of(
            sample.base32[rows], sample.target32[rows], dtype, step, part, rounding
        )
        total += error * weight if error else 0.0
    return total


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
    if not delta.any():
        return None

    def cost(factors: lowrank.Factors) -> float:
        residual = _sample_cost(sample, _Predicted.of(sample, factors), step, steps.PLAIN)[0]
        return lowrank.factor_bits(factors) + residual

    best: tuple[float, lowrank.Factors | None] = (
        _sample_cost(sample, _Predicted.of(sample, None), step, steps.PLAIN)[0],
        None,
    )
    decomposed = 0
    worse = 0
    for rank in ranks:
        if rank > decomposed:
            decomposed = min(ranks[-1], max(rank, 64 if decomposed == 0 else lowrank.MAX_RANK))
            try:
                u, s, vt = lowrank.decompose(delta, decomposed)
            except np.linalg.LinAlgError:  # numerically degenerate: predict nothing
                return best[1]
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


def plan(base: Tensor, target: Tensor, budget: Budget) -> Plan | None:
    """Step, rounding, factors and token split for this tensor and budget; None if no valid
    step meets it. The caller checks the step on the whole tensor (the search saw a sample).
    """
    rows, cols = lowrank.matrix_shape(target.shape)
    base32 = base.to_float32().reshape(rows, cols)
    target32 = target.to_float32().reshape(rows, cols)
    sample = _Sample.of(base32, target32)
    if budget.step is not None:
        if not steps.valid_step(budget.step):
            return None
        factors = _choose_factors(base32, target32, sample, budget.step)
        predicted = _Predicted.of(sample, factors)
        _, split, msb = _sample_cost(sample, predicted, budget.step, steps.PLAIN, SPLITS)
        return Plan(budget.step, steps.PLAIN, factors, split, msb)
    limit = budget.max_error_sq
    if steps.squared_error(base32, target32.reshape(-1), "F32") <= limit:
        return Plan(1.0, steps.PLAIN, None, zero=True)
    unpredicted = _Predicted.of(sample, None)
    guess = math.sqrt(12 * limit / (rows * cols)) or 1e-30
    plain = steps.largest_step(
        lambda s: _sample_error(sample, unpredicted, s, steps.PLAIN, target.dtype), limit, guess
    )
    if not steps.valid_step(plain):
        return None
    predicted = _Predicted.of(sample, _choose_factors(base32, target32, sample, plain))
    best: tuple[float, float, Rounding] | None = None
    for rounding in _ROUNDINGS:
        step = steps.largest_step(
            lambda s, r=rounding: _sample_error(sample, predicted, s, r, target.dtype),
            limit,
            plain,
        )
        if not steps.valid_step(step):
            continue
        bits = _sample_cost(sample, predicted, step, rounding)[0]
        if best is None or bits < best[0]:
            best = (bits, step, rounding)
    if best is None:
        return None
    _, step, rounding = best
    _, split, msb = _sample_cost(sample, predicted, step, rounding, SPLITS)
    return Plan(step, rounding, predicted.factors, split, msb)


__all__ = ["SPLITS", "Plan", "plan"]
