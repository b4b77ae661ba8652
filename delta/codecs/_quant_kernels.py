"""Compiled inner loops of the lossy codec (quantized.py) and its step searches (budget.py,
quant_search.py): each pass over a tensor (or a sample of its rows) quantizes, releases and
measures in one go, with no temporaries of the tensor's size.

The release, the one computation every machine must repeat bit for bit, is `release_value`,
shared by the encoder's and the decoder's loop: two IEEE float32 operations, a product and a
sum, on exact operands (budget.py explains why they are exact and portable). numba emits them
as separate LLVM instructions without fast-math flags, so they are never fused into an FMA.

Rounding toward a level (`quantize`) is the encoder's choice alone: the payload records the
levels, so any rule gives a valid patch; it mirrors budget.py's documented one. So is the
trellis's path (`quantize_dependent`, codec 7): the decoder only follows the state machine
through the indices it reads (`release_rows` with `dependent`).

Everything a loop calls lives in this file (numba's cache is keyed on the cached function's
own source file), and each helper is one expression over scalars (see _coder_kernels.py).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core.compiler import CompilerBase, DefaultPassBuilder

# Reconstruction offsets are in units of step / OFFSET_UNIT.
OFFSET_UNIT = 64
# |q| stays below this so 64 * q + offset is exact in float32 (2^24).
MAX_LEVEL = 1 << 17
OK, LEVEL, SUBNORMAL = 0, 1, 2
_SMALLEST_NORMAL = np.float32(2.0**-126)
_CLIP = np.float32(4.0 * MAX_LEVEL)  # out-of-range levels stay out of range (no int wrap)
_FP16_MAX = 65504.0
# Oriented coding (quant-ctx): residuals are coded under a context of the prediction's
# magnitude, min(|p| >> shift, CONTEXT_CAP), times whether it was rounded away from zero. The
# encoder's kernel writes the finest (shift 0, |p| up to WIDEST_CAP) and picks the shift.
CONTEXT_CAP = 15
WIDEST_CAP = 127

# fp16's spacing for each float32 biased exponent: 2^(e - 127 - 10) for fp16's normal range
# (e >= 113), its subnormal spacing 2^-24 below.
FP16_QUANTUM = np.ldexp(1.0, np.maximum(np.arange(256), 113) - 137)


# Dependent (trellis-coded) quantization, codec 7: two quantizers on the step's lattice, Q0
# at the even multiples and Q1 at the odd ones and zero; a four-state machine driven by each
# coded index's parity picks the next one (as in H.266/VVC's dependent quantization). Each
# quantizer's levels are two steps apart, but together they cover the lattice, so an encoder
# that searches the paths (a Viterbi trellis over the states) finds levels near the values
# for fewer bits.
STATES = 4
RATE_CAP = 127  # the encoder's rate tables cover zigzagged indices up to this
_RATE_CONTEXTS = 2 * (CONTEXT_CAP + 1)
_TRELLIS_CHUNK = 4096  # elements after which the encoder commits its best path so far
# Rows the trellis searches at once: its inner loop runs over them, in SIMD registers.
LANES = 16
_CANDIDATE_BLOCK = 128  # columns whose choices are worked out before the search runs over them


class _DistinctArrays(CompilerBase):
    """numba's nopython pipeline, with every array argument promised not to overlap another
    (LLVM's noalias, C's restrict), for the trellis's helpers, whose arguments are the kernel's
    own scratch buffers. Without the promise LLVM must assume a store to one array may change
    another and keeps the loops scalar: it cannot check a gather's addresses before the loop.
    With it, `_candidates` and `_forward` run in SIMD registers: the trellis went from 37 to 27
    ns per weight on the MiniLM fine-tune (AVX-512), the same output."""

    def define_pipelines(self) -> list:
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]


@numba.njit(cache=True, inline="always")
def dependent_level(k: int, state: int) -> int:
    """The level (in steps, from the prediction) of index k in `state`: 2k under Q0 (states 0
    and 1), 2k - sign(k) under Q1 (states 2 and 3)."""
    return 2 * k - (state >> 1) * ((k > 0) - (k < 0))


@numba.njit(cache=True)
def next_state(state: int, k: int) -> int:
    """The state after index k: [[0, 2], [2, 0], [1, 3], [3, 1]][state][k & 1]."""
    return (32040 >> ((state << 2) + ((k & 1) << 1))) & 3


@numba.njit(cache=True)
def previous_state(state: int, k: int) -> int:
    """The state before index k led to `state` (the inverse of `next_state`):
    [[0, 1], [2, 3], [1, 0], [3, 2]][state][k & 1]."""
    return (45540 >> ((state << 2) + ((k & 1) << 1))) & 3


# The scalar helpers below are single expressions: numba compiles a function with several
# return statements into branches that LLVM no longer turns into selects, which costs a
# per-element loop twice its time.


@numba.njit(cache=True)
def release_value(b: np.float32, v: int, unit: np.float32) -> np.float32:
    """The released float32 of base value `b` at scaled level v = 64 q - offset sign(r):
    `b` itself where v == 0, else float32(v) * unit + b, one rounding per operation."""
    return b if v == 0 else np.float32(v) * unit + b


@numba.njit(cache=True)
def scaled_level(q: int, r: int, offset: int) -> int:
    """64 q, moved `offset` 64ths of a step toward the prediction when the residual r != 0."""
    return q * OFFSET_UNIT - (offset if r > 0 else (-offset if r < 0 else 0))


@numba.njit(cache=True)
def predicted(product: np.float64, ratio: np.float64) -> tuple[int, bool]:
    """(integer prediction, whether it was rounded up) from the factors' exact product:
    rint(product * ratio), clipped to the level range (lowrank.py)."""
    p = product * ratio
    rounded = np.rint(p)
    return np.int64(min(max(rounded, -MAX_LEVEL), MAX_LEVEL)), rounded > p


@numba.njit(cache=True)
def orientation(p: int, up: bool) -> int:
    """The sign a residual is coded relative to: the prediction's (a fine-tune's change is
    bounded, so a large prediction's residual leans back toward zero), or for p == 0 the side
    its rounding left (the level lies more often on the side the prediction came from)."""
    return -1 if (p < 0) | ((p == 0) & up) else 1


@numba.njit(cache=True)
def context(p: int, up: bool, shift: int, cap: int) -> int:
    """The residual's context: min(|p| >> shift, cap), and whether p was rounded away from
    zero (its residual then leans inward)."""
    return min(abs(p) >> shift, cap) * 2 + np.int64(((p > 0) & up) | ((p < 0) & (not up)))


@numba.njit(cache=True)
def _residual(delta: np.float32, p: int, inverse: np.float32, deadzone: np.float32) -> int:
    """round(delta / step - p) (through the step's float32 inverse), shrinking |.| by
    `deadzone` first (0: round to nearest; rounding is symmetric, so rounding |x| and
    restoring the sign is rounding x)."""
    scaled = min(max(delta * inverse - np.float32(p), -_CLIP), _CLIP)
    return np.int64(np.copysign(np.rint(max(abs(scaled) - deadzone, np.float32(0))), scaled))


@numba.njit(cache=True)
def _zigzag(value: int) -> np.uint64:
    return np.uint64(value * 2) if value >= 0 else np.uint64(-2 * value - 1)


@numba.njit(cache=True)
def still_energy(step: np.float32) -> float:
    """A row with less change (squared L2) than this quantizes to zeros at `step`: every
    |delta / step| < 0.49 (1 + 2^-23)^2 < 1/2 rounds to 0, deadzone or not."""
    return np.float64(step) * np.float64(step) * 0.49 * 0.49


# Optional arrays are None, not empty: numba compiles a version per combination with the
# unused branches removed, which keeps the per-element loop lean.


@numba.njit(cache=True, nogil=True)
def quantize(
    base: np.ndarray,
    target: np.ndarray,
    cols: int,
    product: np.ndarray | None,
    ratio: float,
    step: np.float32,
    deadzone: np.float32,
    offset: int,
    row_weight: np.ndarray | None,
    released: np.ndarray | None,
    symbols: np.ndarray | None,
    cursor: int,
    live: np.ndarray | None,
    energy: np.ndarray | None,
    peak: np.ndarray | None,
    error: float,
    contexts: np.ndarray | None,
) -> tuple[int, float, int]:
    """Quantize rows of float32 `base`/`target` (row-major, `cols` wide) at `step` around the
    prediction (`product` of the factors over these elements, or None), release, measure.

    Optional outputs: `released` float32 values; the coded `symbols` (zigzag of the
    residual, sign-flipped where the prediction was rounded up), written from `cursor` on,
    and with `live` given only rows with a nonzero residual (`live[row]` says which).
    With `contexts` given (quant-ctx), each symbol is the zigzag of the residual times its
    `orientation` instead, and its finest `context` (shift 0, WIDEST_CAP) goes to
    `contexts[k]`.
    `energy` (optional, without a prediction): each row's ||target - base||^2 as `scan` sums
    it; a row whose whole change is under half a step quantizes to zeros, so it releases the
    base and its error is its energy, without a pass over it. `peak` (optional, with
    `energy`): each row's largest |target - base| (`scan`'s), which finds more such rows: all
    of a row's values under half a step, not its whole change.

    Returns:
        (status: OK, LEVEL (a level beyond MAX_LEVEL) or SUBNORMAL (a subnormal release);
        `error` plus the sum of row_weight[row] * (released - target)^2 in float64, row by
        row (weight 1 without `row_weight`), so that a tensor measured in row blocks sums
        exactly as in one pass; the cursor after the symbols written).
    """
    rows = base.size // cols
    unit = step / np.float32(OFFSET_UNIT)
    inverse = np.float32(1) / step
    k = cursor
    still = still_energy(step)
    still_peak = np.float64(step) * 0.49  # as still_energy: every |delta / step| < 1/2
    squares = np.empty(cols)
    for row in range(rows):
        weight = 1.0 if row_weight is None else row_weight[row]
        if (
            product is None
            and energy is not None
            and (energy[row] < still or (peak is not None and peak[row] < still_peak))
        ):
            if released is not None:
                released[row * cols : row * cols + cols] = base[row * cols : row * cols + cols]
            if live is not None:
                live[row] = False
            error += weight * energy[row]
            continue
        found = _quantize_row(
            base, target, product, ratio, inverse, deadzone, offset, unit, row * cols, released,
            symbols, contexts, k, squares,
        )  # fmt: skip
        if found & _BEYOND:
            return LEVEL, error, k
        if found & _SUBNORMAL_RELEASE:
            return SUBNORMAL, error, k
        row_error = 0.0
        for j in range(cols):
            row_error += squares[j]
        error += weight * row_error
        moved = (found & _MOVED) != 0
        if live is not None:
            live[row] = moved
        if symbols is not None and (moved or live is None):
            k += cols
    return OK, error, k


# `_quantize_row`'s findings, bit flags.
_BEYOND, _SUBNORMAL_RELEASE, _MOVED = 1, 2, 4


@numba.njit(cache=True, nogil=True, pipeline_class=_DistinctArrays)
def _quantize_row(
    base: np.ndarray,
    target: np.ndarray,
    product: np.ndarray | None,
    ratio: float,
    inverse: np.float32,
    deadzone: np.float32,
    offset: int,
    unit: np.float32,
    first: int,
    released: np.ndarray | None,
    symbols: np.ndarray | None,
    contexts: np.ndarray | None,
    k: int,
    squares: np.ndarray,
) -> int:
    """`quantize`'s work on the row of `squares.size` elements from `first`: the released
    values, the symbols (and contexts) from `k`, each element's squared miss into `squares`;
    returns _BEYOND if a level left the range, _SUBNORMAL_RELEASE if a release was subnormal,
    _MOVED if a residual was nonzero (or-ed). No early exit and no running sum: the loop
    runs in SIMD registers (with `_DistinctArrays`)."""
    found = 0
    for j in range(squares.size):
        b = base[first + j]
        t = target[first + j]
        if product is None:
            p, flip = 0, False
        else:
            p, flip = predicted(product[first + j], ratio)
        r = _residual(t - b, p, inverse, deadzone)
        q = p + r
        value = release_value(b, scaled_level(q, r, offset), unit)
        if released is not None:
            released[first + j] = value
        diff = np.float64(value) - np.float64(t)
        squares[j] = diff * diff
        found |= (
            (abs(q) >= MAX_LEVEL) * _BEYOND
            | ((value != 0) & (abs(value) < _SMALLEST_NORMAL)) * _SUBNORMAL_RELEASE
            | (r != 0) * _MOVED
        )
        if symbols is not None:
            if contexts is None:
                symbols[k + j] = _zigzag(-r if flip else r)
            else:
                symbols[k + j] = _zigzag(orientation(p, flip) * r)
                contexts[k + j] = context(p, flip, 0, WIDEST_CAP)
    return found


@numba.njit(cache=True, inline="always")
def _rate(bits: np.ndarray, ctx: int, symbol: int) -> float:
    """Estimated bits of a zigzagged index under its context: the table's, and beyond
    RATE_CAP an eighth of a bit more per symbol (escapes are rare: a rough slope will do)."""
    return bits[ctx, min(symbol, RATE_CAP)] + 0.125 * max(symbol - RATE_CAP, 0)


@numba.njit(cache=True, inline="always")
def _cost(x: float, level: int, rate: float, pull: float, weight: float) -> float:
    """An index's own cost: squared miss (in steps^2; the level's reconstruction pulled
    `pull` steps toward the prediction) plus `weight` times its estimated bits `rate`."""
    miss = x - (level - pull * ((level > 0) - (level < 0)))
    return miss * miss + weight * rate


@numba.njit(cache=True, inline="always")
def _parities(
    low: int, at_low: float, at_high: float, at_zero: float
) -> tuple[int, float, int, float]:
    """(even index, its cost, odd index, its cost) among `low`, `low` + 1 and 0 with their
    costs (zero is even). Scalar selects only: a tuple chosen by a condition compiles to a
    branch, and the trellis's comparisons are coin flips to a branch predictor."""
    return (
        (low + (low & 1)) * np.int64(at_zero >= (at_high if low & 1 else at_low)),
        min(at_high if low & 1 else at_low, at_zero),
        low + 1 - (low & 1),
        at_low if low & 1 else at_high,
    )


@numba.njit(cache=True, inline="always")
def _arrive(first: float, first_index: int, second: float, second_index: int) -> tuple[float, int]:
    """The cheaper of two ways into a state: (its cost, its index); the first on ties."""
    return min(first, second), second_index if second < first else first_index


@numba.njit(cache=True, inline="always")
def _odd_floor(x: float) -> int:
    """Q1's index of the largest level at or below x (levels 2k - sign(k): ..., -3, -1, 0, 1,
    3, ...)."""
    return np.int64(np.floor((x + np.copysign(1.0, x)) * 0.5))


@numba.njit(cache=True)
def _cheapest(c0: float, c1: float, c2: float, c3: float) -> int:
    """The state of the cheapest of four path costs (the first on ties)."""
    return (0 if c0 <= c1 else 1) if min(c0, c1) <= min(c2, c3) else (2 if c2 <= c3 else 3)


@numba.njit(cache=True, inline="always")
def _symbol(index: int) -> int:
    """The zigzag of a signed index, as a signed integer (numba's uint64 mixes with int64 into
    floats)."""
    return 2 * index if index >= 0 else -2 * index - 1


@numba.njit(cache=True, nogil=True, pipeline_class=_DistinctArrays)
def _prepare_lane(
    base: np.ndarray,
    target: np.ndarray,
    product: np.ndarray | None,
    ratio: float,
    inverse: np.float32,
    first: int,
    lane: int,
    xs: np.ndarray,
    predictions: np.ndarray,
) -> None:
    """One row's trellis inputs into column `lane` of the (cols, LANES) buffers: each
    element's distance from its prediction in steps (x), and the prediction with its rounding
    side, as 2 p + up (`_unpacked`; two outputs, not four: the stores across lanes are what
    this loop costs)."""
    for j in range(xs.shape[0]):
        if product is None:
            p, flip = 0, False
        else:
            p, flip = predicted(product[first + j], ratio)
        x = (target[first + j] - base[first + j]) * inverse - np.float32(p)
        xs[j, lane] = np.float64(min(max(x, -_CLIP), _CLIP))
        predictions[j, lane] = 2 * p + flip


@numba.njit(cache=True, inline="always")
def _unpacked(packed: int) -> tuple[int, bool]:
    """(p, up) from `_prepare_lane`'s 2 p + up."""
    return packed >> 1, (packed & 1) == 1


@numba.njit(cache=True, nogil=True, pipeline_class=_DistinctArrays)
def _candidates(
    xs: np.ndarray,
    predictions: np.ndarray,
    lanes: int,
    first: int,
    last: int,
    bits: np.ndarray,
    pull: float,
    weight_of_rate: float,
    indices: np.ndarray,
    costs: np.ndarray,
) -> None:
    """Each element's choices, which do not depend on the path: per quantizer (Q0, Q1) its
    cheapest even and odd index among the levels either side of x and zero, and their own
    costs, into `indices[column - first, c, lane]` and `costs[...]` (c: Q0 even, Q0 odd, Q1
    even, Q1 odd). One loop over the lanes, in SIMD registers (with `_DistinctArrays`), the
    table lookups as gathers; every choice is a select, not a branch: they are coin flips to
    a branch predictor."""
    for j in range(first, last):
        at = j - first
        for lane in range(lanes):
            x = xs[j, lane]
            p, flip = _unpacked(predictions[j, lane])
            sign = orientation(p, flip)
            ctx = context(p, flip, 0, CONTEXT_CAP)
            at_zero = _cost(x, 0, _rate(bits, ctx, 0), pull, weight_of_rate)
            low = np.int64(np.floor(x * 0.5))
            e0, ce0, o0, co0 = _parities(
                low,
                _cost(x, 2 * low, _rate(bits, ctx, _symbol(sign * low)), pull, weight_of_rate),
                _cost(
                    x, 2 * low + 2, _rate(bits, ctx, _symbol(sign * (low + 1))), pull,
                    weight_of_rate,
                ),
                at_zero,
            )  # fmt: skip
            low = _odd_floor(x)
            e1, ce1, o1, co1 = _parities(
                low,
                _cost(
                    x, dependent_level(low, 2), _rate(bits, ctx, _symbol(sign * low)), pull,
                    weight_of_rate,
                ),
                _cost(
                    x, dependent_level(low + 1, 2), _rate(bits, ctx, _symbol(sign * (low + 1))),
                    pull, weight_of_rate,
                ),
                at_zero,
            )  # fmt: skip
            indices[at, 0, lane], costs[at, 0, lane] = e0, ce0
            indices[at, 1, lane], costs[at, 1, lane] = o0, co0
            indices[at, 2, lane], costs[at, 2, lane] = e1, ce1
            indices[at, 3, lane], costs[at, 3, lane] = o1, co1


@numba.njit(cache=True, nogil=True, pipeline_class=_DistinctArrays)
def _forward(
    lanes: int,
    first: int,
    last: int,
    indices: np.ndarray,
    costs: np.ndarray,
    cost: np.ndarray,
    chosen: np.ndarray,
    offset: int,
) -> None:
    """The Viterbi search's forward pass over columns first..last (their `_candidates` at
    0..) of `lanes` rows at once: `cost[state, lane]` holds each path's cost coming in and
    going out, `chosen[offset + column - first, state, lane]` the index by which the best path
    reached each state. Loads and stores only: the compiler runs the lanes in SIMD registers,
    and the rows' chains of comparisons overlap."""
    for j in range(last - first):
        at = offset + j
        for lane in range(lanes):
            c0, c1, c2, c3 = cost[0, lane], cost[1, lane], cost[2, lane], cost[3, lane]
            e0, ce0 = indices[j, 0, lane], costs[j, 0, lane]
            o0, co0 = indices[j, 1, lane], costs[j, 1, lane]
            e1, ce1 = indices[j, 2, lane], costs[j, 2, lane]
            o1, co1 = indices[j, 3, lane], costs[j, 3, lane]
            # From states 0/1 (Q0) an even index leads to 0/2, an odd one to 2/0; from states
            # 2/3 (Q1) an even one to 1/3, an odd one to 3/1.
            cost[0, lane], chosen[at, 0, lane] = _arrive(c0 + ce0, e0, c1 + co0, o0)
            cost[2, lane], chosen[at, 2, lane] = _arrive(c0 + co0, o0, c1 + ce0, e0)
            cost[1, lane], chosen[at, 1, lane] = _arrive(c2 + ce1, e1, c3 + co1, o1)
            cost[3, lane], chosen[at, 3, lane] = _arrive(c2 + co1, o1, c3 + ce1, e1)


@numba.njit(cache=True, nogil=True, pipeline_class=_DistinctArrays)
def _walk_back(
    lanes: int, columns: int, cost: np.ndarray, chosen: np.ndarray, path: np.ndarray
) -> None:
    """Each lane's best path, back from its cheapest final state through `chosen` (as
    `_forward` left it) into `path[column, lane]`. The lanes step back together: each
    lane's walk is a chain of dependent loads, and side by side the chains overlap."""
    ends = np.empty(lanes, dtype=np.int64)
    for lane in range(lanes):
        ends[lane] = _cheapest(cost[0, lane], cost[1, lane], cost[2, lane], cost[3, lane])
    for j in range(columns - 1, -1, -1):
        for lane in range(lanes):
            index = chosen[j, ends[lane], lane]
            path[j, lane] = index
            ends[lane] = previous_state(ends[lane], index)


@numba.njit(cache=True, nogil=True)
def quantize_dependent(
    base: np.ndarray,
    target: np.ndarray,
    cols: int,
    product: np.ndarray | None,
    ratio: float,
    step: np.float32,
    offset: int,
    bits: np.ndarray,
    weight_of_rate: float,
    row_weight: np.ndarray | None,
    released: np.ndarray | None,
    symbols: np.ndarray | None,
    cursor: int,
    live: np.ndarray | None,
    energy: np.ndarray | None,
    error: float,
    contexts: np.ndarray | None,
    hist: np.ndarray | None,
    moments: np.ndarray | None,
) -> tuple[int, float, int]:
    """`quantize` with dependent quantization (codec 7): per row, from state 0, the path of
    indices minimising squared error (in steps^2) + `weight_of_rate` * estimated bits
    (`bits[context, zigzagged oriented index]`, contexts as `context` at CONTEXT_CAP), by a
    Viterbi search over the four states; every `_TRELLIS_CHUNK` elements of a row the best
    path so far is committed. Symbols are the zigzag of the oriented index (as codec 6's);
    `hist` (optional, float64 like `bits`) gets each coded index's row weight at its
    context and min(symbol, RATE_CAP); `moments` (optional, two float64) gains the
    row-weighted sums of m * s and s * s over the searched elements, where m is the release's
    miss (target - released, in steps) and s the sign of its residual index, from which
    `quantized._offset_under` finds the offset that brings these indices' error under a limit.
    Same outputs, shortcuts and statuses as `quantize`.

    Rows are searched LANES at a time (each row's path is its own; the result is the same as
    one row at a time, see tests/delta/test_codec_quant_tcq.py).
    """
    rows = base.size // cols
    unit = step / np.float32(OFFSET_UNIT)
    inverse = np.float32(1) / step
    pull = offset / OFFSET_UNIT
    still = still_energy(step)
    chunk = min(cols, _TRELLIS_CHUNK)
    xs = np.empty((cols, LANES))
    predictions = np.empty((cols, LANES), dtype=np.int32)
    chosen = np.empty((chunk, STATES, LANES), dtype=np.int32)
    cost = np.empty((STATES, LANES))
    indices = np.empty((_CANDIDATE_BLOCK, STATES, LANES), dtype=np.int32)
    costs = np.empty((_CANDIDATE_BLOCK, STATES, LANES))
    path = np.empty((chunk, LANES), dtype=np.int32)
    group = np.empty(LANES, dtype=np.int64)  # the rows searched together
    state = np.zeros(LANES, dtype=np.int64)
    row_error = np.zeros(LANES)
    row_moments = np.zeros((2, LANES))
    moved = np.zeros(LANES, dtype=np.bool_)
    k = cursor
    row = 0
    while row < rows:
        # The next group: up to LANES rows that need a search, and the still rows among them.
        lanes = 0
        until = row
        while until < rows and lanes < LANES:
            if not (product is None and energy is not None and energy[until] < still):
                group[lanes] = until
                _prepare_lane(
                    base, target, product, ratio, inverse, until * cols, lanes, xs,
                    predictions,
                )  # fmt: skip
                lanes += 1
            until += 1
        slots = k
        state[:lanes] = 0
        row_error[:lanes] = 0.0
        row_moments[:, :lanes] = 0.0
        moved[:lanes] = False
        for first in range(0, cols, chunk):
            last = min(first + chunk, cols)
            for lane in range(lanes):
                for s in range(STATES):
                    cost[s, lane] = 0.0 if s == state[lane] else np.inf
            for block in range(first, last, _CANDIDATE_BLOCK):
                until_column = min(block + _CANDIDATE_BLOCK, last)
                _candidates(
                    xs, predictions, lanes, block, until_column, bits, pull, weight_of_rate,
                    indices, costs,
                )  # fmt: skip
                _forward(lanes, block, until_column, indices, costs, cost, chosen, block - first)
            _walk_back(lanes, last - first, cost, chosen, path)
            for lane in range(lanes):
                origin = group[lane] * cols
                weight = 1.0 if row_weight is None else row_weight[group[lane]]
                # Each searched row's symbols go to its own slot for now (compacted below).
                slot = slots + lane * cols
                s = state[lane]
                # Scalars, not the arrays: a store to an output could be a store to them.
                lane_error, lane_moved = row_error[lane], moved[lane]
                pulled, signed = row_moments[0, lane], row_moments[1, lane]
                for j in range(first, last):
                    p, flip = _unpacked(predictions[j, lane])
                    index = path[j - first, lane]
                    r = dependent_level(index, s)
                    s = next_state(s, index)
                    q = p + r
                    if abs(q) >= MAX_LEVEL:
                        return LEVEL, error, k
                    value = release_value(base[origin + j], scaled_level(q, r, offset), unit)
                    if (value != 0) & (abs(value) < _SMALLEST_NORMAL):
                        return SUBNORMAL, error, k
                    if released is not None:
                        released[origin + j] = value
                    diff = np.float64(value) - np.float64(target[origin + j])
                    lane_error += diff * diff
                    if moments is not None:
                        sign = (r > 0) - (r < 0)
                        pulled -= diff * sign
                        signed += sign * sign
                    lane_moved |= index != 0
                    symbol = _symbol(orientation(p, flip) * index)
                    if hist is not None:
                        hist[context(p, flip, 0, CONTEXT_CAP), min(symbol, RATE_CAP)] += weight
                    if symbols is not None:
                        symbols[slot + j] = np.uint32(symbol)
                        if contexts is not None:
                            contexts[slot + j] = context(p, flip, 0, WIDEST_CAP)
                state[lane] = s
                row_error[lane], moved[lane] = lane_error, lane_moved
                row_moments[0, lane], row_moments[1, lane] = pulled, signed
        # In row order: the still rows' energy, the searched rows' error, and their symbols
        # moved down to the cursor unless the row stayed put.
        lane = 0
        for r in range(row, until):
            weight = 1.0 if row_weight is None else row_weight[r]
            if lane < lanes and group[lane] == r:
                error += weight * row_error[lane]
                if moments is not None:
                    moments[0] += weight * row_moments[0, lane] / np.float64(step)
                    moments[1] += weight * row_moments[1, lane]
                if live is not None:
                    live[r] = moved[lane]
                if symbols is not None and (moved[lane] or live is None):
                    source = slots + lane * cols
                    if source != k:  # always forward: k trails the slots
                        for j in range(cols):
                            symbols[k + j] = symbols[source + j]
                            if contexts is not None:
                                contexts[k + j] = contexts[source + j]
                    k += cols
                lane += 1
            elif energy is not None:  # a still row (only they are not searched)
                if released is not None:
                    released[r * cols : r * cols + cols] = base[r * cols : r * cols + cols]
                if live is not None:
                    live[r] = False
                error += weight * energy[r]
        row = until
    return OK, error, k


@numba.njit(cache=True, nogil=True)
def release_rows(
    base: np.ndarray,
    cols: int,
    product: np.ndarray | None,
    ratio: float,
    step: np.float32,
    offset: int,
    live: np.ndarray,
    symbols: np.ndarray,
    cursor: int,
    out: np.ndarray,
    oriented: bool,
    dependent: bool,
) -> tuple[int, int]:
    """The decoder's side of `quantize` (and of `quantize_dependent` if `dependent`): released
    float32 values of these rows into `out`, from the prediction and the coded symbols of the
    live rows (read from `cursor`; rows that are not live have residual 0), coded relative to
    `orientation` if `oriented`, else to the prediction's rounding. Returns (status OK or
    LEVEL, the cursor after)."""
    rows = base.size // cols
    unit = step / np.float32(OFFSET_UNIT)
    k = cursor
    for row in range(rows):
        coded = live[row]
        if not coded and product is None:
            out[row * cols : row * cols + cols] = base[row * cols : row * cols + cols]
            continue
        state = 0
        for j in range(row * cols, row * cols + cols):
            if product is None:
                p, flip = 0, False
            else:
                p, flip = predicted(product[j], ratio)
            r = 0
            if coded:
                zig = np.int64(symbols[k])
                k += 1
                r = (zig >> 1) ^ -(zig & 1)  # un-zigzag
                # quant-ctx codes r relative to its orientation, quant-ans to the rounding.
                r = orientation(p, flip) * r if oriented else (-r if flip else r)
            if dependent:
                r, state = dependent_level(r, state), next_state(state, r)
            q = p + r
            if abs(q) >= MAX_LEVEL:
                return LEVEL, k
            out[j] = release_value(base[j], scaled_level(q, r, offset), unit)
    return OK, k


@numba.njit(cache=True, nogil=True)
def live_contexts(
    product: np.ndarray,
    ratio: float,
    cols: int,
    live: np.ndarray,
    shift: int,
    out: np.ndarray,
    cursor: int,
) -> int:
    """The decoder's contexts (`context` at `shift`, CONTEXT_CAP) of the elements of the live
    rows among these, into `out` from `cursor` on; returns the cursor after."""
    k = cursor
    for row in range(live.size):
        if live[row]:
            for j in range(row * cols, row * cols + cols):
                p, up = predicted(product[j], ratio)
                out[k] = context(p, up, shift, CONTEXT_CAP)
                k += 1
    return k


# `fp16_rows`' findings, bit flags.
FP16_HOLDS, ALL_NORMAL = 1, 2


@numba.njit(cache=True, nogil=True)
def fp16_rows(
    values: np.ndarray,
    bits: np.ndarray,
    base: np.ndarray,
    cols: int,
    quantum: np.ndarray,
    rounding: np.ndarray,
    change: np.ndarray,
) -> int:
    """Per row: ||values - fp16(values)||^2 into `rounding`, ||values - base||^2 into
    `change` (float64, summed as `scan` sums its energy). Returns FP16_HOLDS unless a value is
    not finite or fp16 cannot hold it (and then stops), or-ed with ALL_NORMAL if no value of
    either is subnormal (`scan`'s test). `bits` are the values' float32 words, `quantum[e]`
    fp16's spacing at float32 biased exponent e (FP16_QUANTUM): rounding to a multiple of it,
    ties to even, is IEEE's conversion to fp16, and in float64 every step of it is exact."""
    base_bits = base.view(np.uint32)
    # Magnitudes as words, less one (zero wraps to the largest word): below 2^23 - 1 is a
    # subnormal; the base's largest at or above 0x7F800000 is not finite.
    smallest = np.uint32(0xFFFFFFFF)
    largest_base = np.uint32(0)
    for row in range(values.size // cols):
        lost = 0.0
        moved = 0.0
        for j in range(row * cols, row * cols + cols):
            magnitude = bits[j] & np.uint32(0x7FFFFFFF)
            step = quantum[magnitude >> np.uint32(23)]
            v = np.float64(values[j])
            r = np.rint(v / step) * step
            if magnitude >= np.uint32(0x7F800000) or abs(r) > _FP16_MAX:
                return 0
            lost += (v - r) * (v - r)
            diff = v - np.float64(base[j])
            moved += diff * diff
            old = base_bits[j] & np.uint32(0x7FFFFFFF)
            smallest = min(smallest, magnitude - np.uint32(1), old - np.uint32(1))
            largest_base = max(largest_base, old)
        rounding[row] = lost
        change[row] = moved
    normal = (smallest >= np.uint32(0x007FFFFF)) & (largest_base < np.uint32(0x7F800000))
    return FP16_HOLDS | (ALL_NORMAL if normal else 0)


@numba.njit(cache=True, nogil=True)
def scan(
    base: np.ndarray,
    target: np.ndarray,
    cols: int,
    energy: np.ndarray,
    peak: np.ndarray | None = None,
) -> bool:
    """||target - base||^2 of each row into `energy` (float64, summed in row order), and its
    largest |target - base| into `peak` if given; whether every value of both is finite and
    none subnormal (what the lossy codec can carry)."""
    base_bits, target_bits = base.view(np.uint32), target.view(np.uint32)
    # Magnitudes as words, less one (zero wraps to the largest word): below 2^23 - 1 is a
    # subnormal; the largest word at or above 0x7F800000 is not finite.
    smallest = np.uint32(0xFFFFFFFF)
    largest_word = np.uint32(0)
    for row in range(base.size // cols):
        total = 0.0
        largest = 0.0
        for j in range(row * cols, row * cols + cols):
            diff = np.float64(target[j]) - np.float64(base[j])
            total += diff * diff
            largest = max(largest, abs(diff))
            old = base_bits[j] & np.uint32(0x7FFFFFFF)
            new = target_bits[j] & np.uint32(0x7FFFFFFF)
            smallest = min(smallest, old - np.uint32(1), new - np.uint32(1))
            largest_word = max(largest_word, old, new)
        energy[row] = total
        if peak is not None:
            peak[row] = largest
    return (smallest >= np.uint32(0x007FFFFF)) & (largest_word < np.uint32(0x7F800000))


__all__ = [
    "ALL_NORMAL", "CONTEXT_CAP", "FP16_HOLDS", "FP16_QUANTUM", "LEVEL", "MAX_LEVEL",
    "OFFSET_UNIT", "OK", "RATE_CAP", "STATES", "SUBNORMAL", "WIDEST_CAP", "context",
    "dependent_level", "fp16_rows", "live_contexts", "next_state", "orientation", "predicted",
    "quantize", "quantize_dependent", "release_rows", "release_value", "scaled_level", "scan",
    "still_energy",
]  # fmt: skip
