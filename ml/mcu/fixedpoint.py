"""Fixed-point requantization, bit for bit as TFLite (Micro) and gemmlowp compute it.

A real multiplier M (input scale x weight scale / output scale) becomes an int32 Q0.31
significand and a power-of-two shift (`quantize_multiplier`, offline, floats allowed), and is
applied to an int32 accumulator with integers only (`multiply_by_quantized_multiplier`). These
are the default (double-rounding, `TFLITE_SINGLE_ROUNDING` off) forms of:

- `QuantizeMultiplier`: tensorflow/lite/kernels/internal/quantization_util.cc
- `MultiplyByQuantizedMultiplier`: tensorflow/lite/kernels/internal/common.h / common.cc
- `SaturatingRoundingDoublingHighMul`, `RoundingDivideByPOT`: gemmlowp fixedpoint/fixedpoint.h

CMSIS-NN's `arm_nn_requantize` (Include/arm_nnsupportfunctions.h, without
CMSIS_NN_USE_SINGLE_ROUNDING) gives the same results for multipliers above INT32_MIN, which covers
every multiplier a model has (they are positive). Every array operation keeps the C variable's
width: int32 where the C code has `int32_t`, int64 only for the widened product in
SaturatingRoundingDoublingHighMul.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """(quantized_multiplier, shift) with real_multiplier ~= quantized_multiplier * 2^(shift-31).

    TFLite's QuantizeMultiplier: frexp, round half away from zero (TfLiteRound), renormalise a
    significand that rounded up to 2^31, and flush multipliers below 2^-31 to (0, 0).

    Raises:
        ValueError: the multiplier is NaN or infinite.
    """
    if not math.isfinite(real_multiplier):
        raise ValueError(f"a multiplier must be finite, got {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    significand, shift = math.frexp(real_multiplier)
    scaled = significand * (1 << 31)  # exact: a power-of-two scaling of a double
    q_fixed = int(math.copysign(math.floor(abs(scaled) + 0.5), scaled))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(real_multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` for each element: int32 multipliers and int32 shifts.

    Raises:
        ValueError: an element is NaN or infinite.
    """
    pairs = [quantize_multiplier(float(m)) for m in np.asarray(real_multipliers).ravel()]
    shape = np.shape(real_multipliers)
    multipliers = np.array([q for q, _ in pairs], dtype=np.int32).reshape(shape)
    shifts = np.array([s for _, s in pairs], dtype=np.int32).reshape(shape)
    return multipliers, shifts


def _as_int32(values: np.ndarray | int, name: str) -> np.ndarray:
    array = np.asanyarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < INT32_MIN or array.max() > INT32_MAX):
        raise ValueError(f"{name} must fit int32, got values in [{array.min()}, {array.max()}]")
    return array.astype(np.int32)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul: round(a * b / 2^31), int32, elementwise.

    Raises:
        TypeError, ValueError: an operand is not integers within int32.
    """
    a = _as_int32(a, "a")
    b = _as_int32(b, "b")
    overflow = (a == b) & (a == INT32_MIN)  # the one product whose doubled high half is 2^31
    ab_64 = a.astype(np.int64) * b.astype(np.int64)
    nudged = ab_64 + np.where(ab_64 >= 0, 1 << 30, 1 - (1 << 30))
    # C++ `/ (1ll << 31)` truncates toward zero; an arithmetic shift floors, so shift |nudged|.
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero.

    Raises:
        TypeError, ValueError: x is not int32 integers, or an exponent is outside 0..31.
    """
    x = _as_int32(x, "x")
    exponent = _as_int32(exponent, "exponent")
    if exponent.size and (exponent.min() < 0 or exponent.max() > 31):
        raise ValueError(f"exponents must be in 0..31, got [{exponent.min()}, {exponent.max()}]")
    mask = ((np.int64(1) << exponent) - 1).astype(np.int32)  # (1ll << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int32)
    return (x >> exponent) + (remainder > threshold).astype(np.int32)


def multiply_by_quantized_multiplier(
    x: np.ndarray, quantized_multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier, elementwise with broadcasting (per channel on the
    last axis): RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m), right).

    Raises:
        TypeError, ValueError: operands are not int32 integers, a shift is outside -31..30, or
            x shifted left leaves int32 (undefined behaviour in the C code, refused here).
    """
    x = _as_int32(x, "x")
    multiplier = _as_int32(quantized_multiplier, "quantized_multiplier")
    shift = _as_int32(shift, "shift")
    if shift.size and (shift.min() < -31 or shift.max() > 30):
        raise ValueError(f"shifts must be in -31..30, got [{shift.min()}, {shift.max()}]")
    left_shift = np.maximum(shift, 0)
    right_shift = np.maximum(-shift, 0)
    shifted = x.astype(np.int64) << left_shift
    if shifted.size and (shifted.min() < INT32_MIN or shifted.max() > INT32_MAX):
        raise ValueError("x * (1 << left_shift) overflows int32")
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, multiplier), right_shift
    )


__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "quantize_multipliers",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]
