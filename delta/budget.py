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
in a fixed order, one correctly rounded operation at a time (numpy never fuses them into an FMA
and no reduction is involved), so every machine reproduces a released tensor bit for bit:
    q = p + deadzone_round(delta / step - p)        (p: the integer prediction, 0 if none)
    v = 64 * q - sign(q - p) * offset               (integer; offset in 1/64 of a step)
    released = base                                 where v == 0
             = dtype(base + float32(v) * (step / 64)) elsewhere
`step / 64` is exact (a power-of-two scale of a normal float32), float32(v) is exact for
|v| < 2^24, so the only roundings are the product, the sum and the cast to the dtype.
Subnormal inputs and releases that would produce a subnormal float32 are refused: a process
with flush-to-zero set (some native libraries set it) would compute them differently; with
normal operands and results, every step above is the same on every IEEE machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedota.delta.tensor import Tensor, from_float32

# Reconstruction offsets are in units of step / OFFSET_UNIT.
OFFSET_UNIT = 64
# |q| stays below this so 64 * q + offset is exact in float32 (2^24).
MAX_LEVEL = 1 << 17
_SMALLEST_NORMAL = np.float32(2.0**-126)
_SMALLEST_STEP = 2.0**-100  # step / 64 stays a normal float32
_LOSSY_DTYPES = ("F32", "F16", "BF16")
_SAMPLE = 1 << 16  # elements per tensor the searches look at
_CHUNK = 1 << 16  # elements per pass of the chunked error kernel (stays in cache)


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


def lossy_applicable(base: Tensor | None, target: Tensor) -> bool:
    """Whether the lossy codecs can carry this tensor at all (not whether a budget is met)."""
    if base is None or target.dtype not in _LOSSY_DTYPES or target.numel == 0:
        return False
    if (base.dtype, base.shape) != (target.dtype, target.shape):
        return False
    return _normal_or_zero(base.to_float32()) and _normal_or_zero(target.to_float32())


def _normal_or_zero(values: np.ndarray) -> bool:
    magnitude = np.abs(values)
    return bool(
        np.all(np.isfinite(values)) and not np.any((magnitude > 0) & (magnitude < _SMALLEST_NORMAL))
    )


def portable(values32: np.ndarray) -> bool:
    """No nonzero float32 value below the smallest normal (see the module docstring)."""
    magnitude = np.abs(values32)
    return not bool(np.any((magnitude < _SMALLEST_NORMAL) & (magnitude > 0)))


def valid_step(step: float) -> bool:
    """A step the codecs accept: a normal float32 of at least 2^-100."""
    return math.isfinite(step) and float(np.float32(step)) >= _SMALLEST_STEP and step < 2.0**100


def quantize(
    delta: np.ndarray, step: float, prediction: np.ndarray | None, rounding: Rounding
) -> tuple[np.ndarray, np.ndarray]:
    """Levels q and residuals q - p (int32) of float32 deltas at `step`.

    Args:
        delta: target - base in float32 (any shape).
        step: the quantization step (used as float32).
        prediction: the integer prediction p (int32, same shape), or None for 0.
        rounding: the deadzone (offset does not affect quantizing).
    """
    scaled = delta / np.float32(step)
    if prediction is not None:
        scaled = scaled - prediction.astype(np.float32)
    # Out-of-range levels stay out of range (callers refuse |q| >= MAX_LEVEL) instead of
    # wrapping in the cast to int32; inf (a step far below the delta) clips too.
    np.clip(scaled, -4.0 * MAX_LEVEL, 4.0 * MAX_LEVEL, out=scaled)
    if rounding.deadzone:
        shrunk = np.maximum(np.abs(scaled) - np.float32(rounding.deadzone), 0)
        residual = (np.copysign(np.rint(shrunk), scaled)).astype(np.int32)
    else:
        residual = np.rint(scaled).astype(np.int32)
    levels = residual if prediction is None else residual + prediction
    return levels, residual


def release_float32(
    base32: np.ndarray, levels: np.ndarray, residual: np.ndarray, step: float, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """The released values in float32 before the cast to the dtype, and where v == 0."""
    scaled = levels.astype(np.int32)  # a copy: the in-place steps below never touch `levels`
    scaled *= OFFSET_UNIT
    if offset:
        scaled -= np.sign(residual).astype(np.int32) * np.int32(offset)
    keep = scaled == 0
    values = scaled.astype(np.float32)
    values *= np.float32(step) / np.float32(OFFSET_UNIT)  # exact: a power-of-two scale
    values += base32
    return values, keep


def release(
    base: Tensor, levels: np.ndarray, residual: np.ndarray, step: float, offset: int
) -> np.ndarray:
    """The released tensor's storage words (see the module docstring for the formula)."""
    values, keep = release_float32(
        base.to_float32(), levels.reshape(-1), residual.reshape(-1), step, offset
    )
    return finish_release(base, values, keep)


def finish_release(base: Tensor, values32: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Storage words from `release_float32`'s values: cast to the dtype, the base's own word
    where the level is 0. Reuses `values32` for F32."""
    words = values32 if base.dtype == "F32" else from_float32(base.dtype, values32)
    np.copyto(words, base.data, where=keep)
    return words


def squared_error(
    released32: np.ndarray, target32: np.ndarray, dtype: str, weights: np.ndarray | None = None
) -> float:
    """||dtype(released32) - target32||^2 in float64 (the cast to the dtype included),
    optionally weighted per element."""
    if dtype != "F32":
        released32 = Tensor(dtype, (released32.size,), from_float32(dtype, released32)).to_float32()
    diff = released32.reshape(-1).astype(np.float64) - target32.reshape(-1)
    # einsum, not np.dot: no BLAS call, whose threads stall on a busy machine.
    return float(np.einsum("i,i->", diff if weights is None else diff * weights, diff))


def error_of(
    base32: np.ndarray,
    target32: np.ndarray,
    dtype: str,
    step: float,
    prediction: np.ndarray | None = None,
    rounding: Rounding = PLAIN,
) -> float:
    """Error of quantizing target - base at `step` (infinite for an invalid or too small step).

    Exact, for samples and single tensors; `error_at_step` has a faster path for plain rounding.
    """
    if not valid_step(step):
        return math.inf
    levels, residual = quantize(target32 - base32, step, prediction, rounding)
    if np.abs(levels).max(initial=0) >= MAX_LEVEL:
        return math.inf
    values, _ = release_float32(base32, levels, residual, step, rounding.offset)
    if not portable(values):
        return math.inf
    return squared_error(values, target32, dtype)


def _plain_error(
    base32: np.ndarray,
    target32: np.ndarray,
    dtype: str,
    step: float,
    weights: np.ndarray | None = None,
) -> float:
    """`error_of` with plain rounding, chunk by chunk in float32 (same values, 4x faster).

    Levels stay in float32: they are integers below 2^17, so 64 * q is exact there too.
    """
    if not valid_step(step):
        return math.inf
    step32 = np.float32(step)
    unit = step32 / np.float32(OFFSET_UNIT)
    total = 0.0
    for start in range(0, base32.size, _CHUNK):
        base = base32[start : start + _CHUNK]
        target = target32[start : start + _CHUNK]
        values = np.subtract(target, base)
        np.divide(values, step32, out=values)
        np.rint(values, out=values)
        if max(-values.min(initial=0), values.max(initial=0)) >= MAX_LEVEL:
            return math.inf
        np.multiply(values, np.float32(OFFSET_UNIT), out=values)
        np.multiply(values, unit, out=values)
        np.add(base, values, out=values)
        if not portable(values):
            return math.inf
        chunk_weights = None if weights is None else weights[start : start + _CHUNK]
        total += squared_error(values, target, dtype, chunk_weights)
    return total


def error_at_step(base: Tensor | None, target: Tensor, step: float) -> float:
    """The error_sq the lossy codecs give this tensor with Budget(step=step).

    Returns 0.0 when they refuse it (a lossless codec then carries it exactly).
    """
    if base is None or not lossy_applicable(base, target):
        return 0.0
    error = _plain_error(base.to_float32(), target.to_float32(), target.dtype, step)
    return 0.0 if math.isinf(error) else error


def delta_energy(base: Tensor, target: Tensor) -> float:
    """||target - base||^2 over float32 values (0 for non-float or mismatched tensors)."""
    if target.dtype not in _LOSSY_DTYPES or base.dtype not in _LOSSY_DTYPES:
        return 0.0
    if base.shape != target.shape:
        return 0.0
    diff = target.to_float32().astype(np.float64) - base.to_float32()
    return float(np.einsum("i,i->", diff, diff))


def sample_positions(size: int, limit: int = _SAMPLE) -> np.ndarray | slice:
    """Evenly spread blocks of positions (all of them for small tensors)."""
    if size <= limit:
        return slice(None)
    block = 256
    starts = np.linspace(0, size - block, limit // block).astype(np.int64)
    return (starts[:, None] + np.arange(block)).reshape(-1)


def largest_step(
    errors: Callable[[float], float], budget: float, guess: float, iterations: int = 40
) -> float:
    """Largest step s (to ~0.1%) with errors(s) <= budget, keeping a verified bracket.

    Starts from `guess` and uses the high-rate law error ~ s^2 to propose steps; falls back to
    bisection in log s whenever a proposal leaves the bracket.
    """
    low, high = 0.0, math.inf
    step = guess
    for _ in range(iterations):
        error = errors(step)
        if error <= budget:
            low = step
        else:
            high = step
        if high < math.inf and low > 0 and high / low < 1.001:
            break
        proposal = step * math.sqrt(budget / error) * 0.999 if error > 0 else step * 4
        if not low < proposal < high:
            proposal = (
                math.sqrt(low * high)
                if low > 0 and high < math.inf
                else (high / 4 if low == 0 else low * 4)
            )
        step = proposal
    return low


def step_for_budget(base: Tensor, target: Tensor, max_error_sq: float) -> float | None:
    """The largest plain-rounding step whose error is within `max_error_sq`, or None if the
    lossy codecs cannot carry this tensor or no valid step meets it."""
    if not lossy_applicable(base, target):
        return None
    base32, target32 = base.to_float32(), target.to_float32()
    guess = math.sqrt(12 * max_error_sq / max(base32.size, 1))
    step = largest_step(
        lambda s: _plain_error(base32, target32, target.dtype, s), max_error_sq, guess or 1e-30
    )
    return step if valid_step(step) else None


def step_for_error(pairs: Sequence[tuple[Tensor, Tensor]], max_error_sq: float) -> float | None:
    """The largest step whose total `error_at_step` over the pairs is within `max_error_sq`
    (the global step of `--max-rel-error`), or None if no valid step meets it.

    The search runs on up to 2^16 elements of each tensor (weighted by the tensor's size over
    its sample's), all tensors of a dtype at once; then one pass over the full tensors checks
    the step, and shrinks it in the rare case the sample was optimistic.
    """
    by_dtype: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    count = 0
    for base, target in pairs:
        if not lossy_applicable(base, target):
            continue
        pick = sample_positions(target.numel)
        base32, target32 = base.to_float32()[pick], target.to_float32()[pick]
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
        return sum(_plain_error(b, t, dtype, step, w) for dtype, b, t, w in stacked)

    step = largest_step(sampled, max_error_sq, math.sqrt(12 * max_error_sq / count) or 1e-30)
    step *= 0.998  # margin for the sample's estimate, so the full check passes first time
    for _ in range(8):
        if not valid_step(step):
            return None
        full = sum(error_at_step(base, target, step) for base, target in pairs)
        if full <= max_error_sq:
            return step
        step *= math.sqrt(max_error_sq / full) * 0.995
    return None


__all__ = [
    "MAX_LEVEL",
    "OFFSET_UNIT",
    "PLAIN",
    "Rounding",
    "delta_energy",
    "error_at_step",
    "error_of",
    "finish_release",
    "largest_step",
    "lossy_applicable",
    "portable",
    "quantize",
    "release",
    "release_float32",
    "sample_positions",
    "squared_error",
    "step_for_budget",
    "step_for_error",
    "valid_step",
]
