"""Quantization steps and the errors they give: the maths the lossy codecs and the diff
orchestrator share.

For the orchestrator:
- `error_at_step(base, target, step)`: the squared L2 error (float32 values) that the lossy
  codecs produce for this tensor with `Budget(step=step)`; 0.0 where they refuse it (non-float,
  non-finite or subnormal values, a step too small), since a lossless codec then carries it.
- `step_for_error(pairs, max_error_sq)`: the global step for `--max-rel-error E`, the largest
  step whose total error over all the (base, target) pairs is at most max_error_sq (pass
  E^2 * sum ||target - base||^2, see `delta_energy`). Searches on a sample of every tensor and
  checks the full tensors once or twice at the end, so it costs a few passes over the model.
- `delta_energy(base, target)`: ||target - base||^2 in float32 values.
- `step_for_budget(base, target, max_error_sq)`: the largest plain-rounding step within a
  per-tensor budget (the codecs run their own search with deadzone rounding; this is for
  callers that want a plain step).

For the codecs, the quantizer and the reconstruction both run in plain IEEE float32 operations
in a fixed order, one correctly rounded operation at a time (no FMA, no reduction involved), so
every machine reproduces a released tensor bit for bit:
    q = p + deadzone_round(delta * (1 / step) - p)  (p: the integer prediction, 0 if none)
    v = 64 * q - sign(q - p) * offset               (integer; offset in 1/64 of a step)
    released = base                                 where v == 0
             = dtype(base + float32(v) * (step / 64)) elsewhere
`step / 64` is exact (a power-of-two scale of a normal float32), float32(v) is exact for
|v| < 2^24, so the only roundings are the product, the sum and the cast to the dtype.
Subnormal inputs and releases that would produce a subnormal float32 are refused: a process
with flush-to-zero set (some native libraries set it) would compute them differently; with
normal operands and results, every step above is the same on every IEEE machine. The loops
are compiled (`codecs/_quant_kernels.py`); `measure` is their entry point here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs._quant_kernels import MAX_LEVEL, OFFSET_UNIT
from fedota.delta.codecs.base import RowChange
from fedota.delta.tensor import Tensor, from_float32

_SMALLEST_STEP = 2.0**-100  # step / 64 stays a normal float32
_LOSSY_DTYPES = ("F32", "F16", "BF16")
_SAMPLE = 1 << 16  # elements per tensor the searches look at
# Elements per tensor the global step's search looks at: its estimate sums over every tensor,
# and a pass over the whole model checks it at the end.
_GLOBAL_SAMPLE = 1 << 12
# The step searches stop once the largest step within budget is bracketed this tightly
# (0.2% of the step is 0.003 bits per weight).
TOLERANCE = 1.002


@dataclass(frozen=True)
class Rounding:
    """How the encoder rounds and the decoder reconstructs.

    Attributes:
        deadzone: encoder only: residuals round to nearest after shrinking |r| by this
            (0 = round to nearest; 0.2 sends |r| < 0.7 to 0). Rate-distortion optimised
            quantization in the style of H.264's deadzone quantizer.
        offset: decoder too: each nonzero residual's reconstruction moves this many 1/64
            steps toward the prediction (a nonzero residual's values cluster on the side of
            its bin nearer the peak, so the bin's centroid beats its centre).
    """

    deadzone: float = 0.0
    offset: int = 0


PLAIN = Rounding()


@dataclass(frozen=True)
class Prediction:
    """The low-rank prediction over some elements: the factors' exact product (lowrank.product)
    and the ratio that turns it into steps (lowrank.ratio)."""

    product: np.ndarray
    ratio: float


def float32_view(tensor: Tensor) -> np.ndarray:
    """The values as float32, without a copy for F32 (never write to it)."""
    if tensor.dtype == "F32":
        return tensor.data
    return tensor.to_float32()


def lossy_applicable(base: Tensor | None, target: Tensor) -> bool:
    """Whether the lossy codecs can carry this tensor at all (not whether a budget is met)."""
    if base is None or target.dtype not in _LOSSY_DTYPES or target.numel == 0:
        return False
    if (base.dtype, base.shape) != (target.dtype, target.shape):
        return False
    return kernels.scan(float32_view(base), float32_view(target), target.numel, np.empty(1))


def valid_step(step: float) -> bool:
    """A step the codecs accept: a normal float32 of at least 2^-100."""
    # The range test first: a float32 conversion of a huge step overflows (and warns, slowly).
    return _SMALLEST_STEP <= step < 2.0**100 and float(np.float32(step)) >= _SMALLEST_STEP


def measure(
    base32: np.ndarray,
    target32: np.ndarray,
    dtype: str,
    step: float,
    *,
    cols: int | None = None,
    rounding: Rounding = PLAIN,
    prediction: Prediction | None = None,
    row_weight: np.ndarray | None = None,
    energy: np.ndarray | None = None,
    peak: np.ndarray | None = None,
) -> float:
    """The error (squared L2 after the release to `dtype`, each row weighted by `row_weight`
    if given) of quantizing target - base at `step`: infinite for an invalid step, a level
    beyond the exact range or a subnormal release. `energy`: each row's ||target - base||^2
    as `kernels.scan` sums it, which lets rows that stay put be skipped (same result); `peak`,
    each row's largest |target - base| (`kernels.scan`'s), finds more of them."""
    if not valid_step(step):
        return math.inf
    base32, target32 = base32.reshape(-1), target32.reshape(-1)
    cols = cols or max(1, base32.size)
    values = None if dtype == "F32" else np.empty(base32.size, np.float32)
    status, error, _ = kernels.quantize(
        base32, target32, cols,
        None if prediction is None else prediction.product.reshape(-1),
        0.0 if prediction is None else prediction.ratio,
        np.float32(step), np.float32(rounding.deadzone), rounding.offset,
        row_weight, values, None, 0, None, energy, peak, 0.0, None,
    )  # fmt: skip
    if status != kernels.OK:
        return math.inf
    if values is None:
        return error
    return released_error(values, target32, dtype, cols, row_weight)


def released_error(
    values32: np.ndarray,
    target32: np.ndarray,
    dtype: str,
    cols: int,
    row_weight: np.ndarray | None = None,
) -> float:
    """||dtype(values32) - target32||^2 in float64, rows of `cols` weighted by `row_weight`."""
    released = Tensor(dtype, (values32.size,), from_float32(dtype, values32)).to_float32()
    diff = released.astype(np.float64) - target32.reshape(-1)
    per_row = np.einsum("ij,ij->i", diff.reshape(-1, cols), diff.reshape(-1, cols))
    return float(per_row.sum() if row_weight is None else np.dot(per_row, row_weight))


def error_at_step(base: Tensor | None, target: Tensor, step: float) -> float:
    """The error_sq the lossy codecs give this tensor with Budget(step=step).

    Returns 0.0 when they refuse it (a lossless codec then carries it exactly).
    """
    if base is None or not lossy_applicable(base, target):
        return 0.0
    error = measure(float32_view(base), float32_view(target), target.dtype, step)
    return 0.0 if math.isinf(error) else error


def delta_energy(base: Tensor, target: Tensor) -> float:
    """||target - base||^2 over float32 values (0 for non-float or mismatched tensors)."""
    if target.dtype not in _LOSSY_DTYPES or base.dtype not in _LOSSY_DTYPES:
        return 0.0
    if base.shape != target.shape:
        return 0.0
    out = np.empty(1)
    kernels.scan(float32_view(base), float32_view(target), max(1, target.numel), out)
    return float(out[0])


def sample_positions(size: int, limit: int = _SAMPLE) -> np.ndarray | slice:
    """Evenly spread blocks of positions (all of them for small tensors)."""
    if size <= limit:
        return slice(None)
    block = 256
    starts = np.linspace(0, size - block, limit // block).astype(np.int64)
    return (starts[:, None] + np.arange(block)).reshape(-1)


def largest_step(
    errors: Callable[[float], float],
    budget: float,
    guess: float,
    iterations: int = 40,
    tolerance: float = TOLERANCE,
) -> float:
    """Largest step s (to 0.2%, or `tolerance`) with errors(s) <= budget, keeping a verified
    bracket.

    The error grows about as s^p: proposals solve that law through the two nearest points
    (p = 2 until there are two), aimed a little to the side of the bracket that has not
    moved lately so that both ends close in; bisection in log s when a proposal leaves it.
    """
    low, high = 0.0, math.inf
    low_error, high_error = 0.0, math.inf
    step = guess
    moved_low = True
    for _ in range(iterations):
        error = errors(step)
        if error <= budget:
            low, low_error, moved_low = step, error, True
        else:
            high, high_error, moved_low = step, error, False
        if high < math.inf and low > 0 and high / low < tolerance:
            break
        power = 2.0
        if 0 < low_error < budget < high_error < math.inf and high > low > 0:
            power = math.log(high_error / low_error) / math.log(high / low)
        proposal = step * (budget / error) ** (1 / power) if error > 0 and power > 0 else step * 4
        # Lean toward the end that did not move, so the next point lands beyond the root.
        lean = (tolerance - 1) / 3
        proposal *= (1 + lean) if moved_low else (1 - lean)
        if not low < proposal < high:
            if low > 0 and high < math.inf:
                proposal = math.sqrt(low * high)
            else:
                proposal = high / 4 if low == 0 else low * 4
        step = proposal
    return low


def step_for_budget(base: Tensor, target: Tensor, max_error_sq: float) -> float | None:
    """The largest plain-rounding step whose error is within `max_error_sq`, or None if the
    lossy codecs cannot carry this tensor or no valid step meets it."""
    if not lossy_applicable(base, target):
        return None
    base32, target32 = float32_view(base), float32_view(target)
    guess = math.sqrt(12 * max_error_sq / max(base32.size, 1))
    step = largest_step(
        lambda s: measure(base32, target32, target.dtype, s), max_error_sq, guess or 1e-30
    )
    return step if valid_step(step) else None


def step_for_error(
    pairs: Sequence[tuple[Tensor, Tensor]],
    max_error_sq: float,
    *,
    checked: bool = False,
    changes: Sequence[RowChange] | None = None,
) -> float | None:
    """The largest step whose total `error_at_step` over the pairs is within `max_error_sq`
    (the global step of `--max-rel-error`), or None if no valid step meets it. `checked`:
    the caller knows every pair to be `lossy_applicable` (saves a pass over each).
    `changes` (with `checked`): each pair's `RowChange`, so that the full check skips the rows
    that stay put.

    The search runs on up to 2^12 elements of each tensor (weighted by the tensor's size over
    its sample's), all tensors of a dtype at once; then one pass over the full tensors checks
    the step, and shrinks it in the rare case the sample was optimistic.
    """
    by_dtype: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    carried: list[tuple[Tensor, Tensor, RowChange | None]] = []
    count = 0
    for at, (base, target) in enumerate(pairs):
        if not (checked or lossy_applicable(base, target)):
            continue
        carried.append((base, target, None if changes is None else changes[at]))
        pick = sample_positions(target.numel, _GLOBAL_SAMPLE)
        base32, target32 = float32_view(base)[pick], float32_view(target)[pick]
        weight = np.full(base32.size, target.numel / base32.size)
        by_dtype.setdefault(target.dtype, []).append((base32, target32, weight))
        count += target.numel
    if not count:
        return None
    stacked = [
        (dtype, *(np.concatenate(parts) for parts in zip(*group, strict=True)))
        for dtype, group in by_dtype.items()
    ]

    def sampled(step: float) -> float:
        return sum(measure(b, t, dtype, step, cols=1, row_weight=w) for dtype, b, t, w in stacked)

    step = largest_step(sampled, max_error_sq, math.sqrt(12 * max_error_sq / count) or 1e-30)
    step *= 0.998  # margin for the sample's estimate, so the full check passes first time
    for _ in range(8):
        if not valid_step(step):
            return None
        full = sum(_carried_error(b, t, step, change) for b, t, change in carried)
        if full <= max_error_sq:
            return step
        step *= math.sqrt(max_error_sq / full) * 0.995
    return None


def _carried_error(base: Tensor, target: Tensor, step: float, change: RowChange | None) -> float:
    """`error_at_step` of a tensor already known to be lossy-applicable (with its `change`,
    rows whose values all move under half a step release the base: their error is their
    energy, without a pass)."""
    base32, target32 = float32_view(base), float32_view(target)
    if change is None:
        error = measure(base32, target32, target.dtype, step)
    else:
        cols = max(1, target32.size // change.energy.size)
        error = measure(
            base32, target32, target.dtype, step, cols=cols, energy=change.energy,
            peak=change.peak,
        )  # fmt: skip
    return 0.0 if math.isinf(error) else error


__all__ = [
    "MAX_LEVEL",
    "OFFSET_UNIT",
    "PLAIN",
    "TOLERANCE",
    "Prediction",
    "Rounding",
    "delta_energy",
    "error_at_step",
    "float32_view",
    "largest_step",
    "lossy_applicable",
    "measure",
    "released_error",
    "sample_positions",
    "step_for_budget",
    "step_for_error",
    "valid_step",
]
