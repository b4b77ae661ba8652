"""Fixed-point requantization against TFLite's own expected values, a float reference, and a
scalar transcription of the C code (gemmlowp fixedpoint.h, TFLite common.h) in Python ints;
and the batch interpreter against a scalar transcription of FullyConnectedPerChannel."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fedota.ml.mcu import (
    Activation,
    McuLayer,
    McuModel,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    run,
    saturating_rounding_doubling_high_mul,
)
from fedota.ml.mcu.fixedpoint import INT32_MAX, INT32_MIN

# --- scalar transcriptions of the C code, Python ints, one statement per C statement ---------


def _c_div(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)  # C++ integer division truncates toward zero
    return quotient if (a >= 0) == (b > 0) else -quotient


def _srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else 1 - (1 << 30)
    return _c_div(ab_64 + nudge, 1 << 31)


def _rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _mbqm(x: int, multiplier: int, shift: int) -> int:
    left_shift, right_shift = max(shift, 0), max(-shift, 0)
    return _rdbpot(_srdhm(x * (1 << left_shift), multiplier), right_shift)


def _mbqm_one(x: int, multiplier: int, shift: int) -> int:
    out = multiply_by_quantized_multiplier(np.array([x], dtype=np.int64), multiplier, shift)
    return int(out[0])


# --- TFLite's expected values: tensorflow/lite/kernels/internal/quantization_util_test.cc -----


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        # TEST(QuantizationUtilTest, QuantizeMultiplierArray)
        (-4, (-1073741824, 3)),
        (-1, (-1073741824, 1)),
        (-0.125, (-1073741824, -2)),
        (0, (0, 0)),
        (0.125, (1073741824, -2)),
        (0.5, (1073741824, 0)),
        (1, (1073741824, 1)),
        (4, (1073741824, 3)),
        # TEST(QuantizationUtilTest, QuantizeMultiplierSmallerThanOneExp)
        (0.25, (1073741824, -1)),
        (0.50 - 5e-9, (2147483627, -1)),
        (0.50 - 1e-10, (1073741824, 0)),
        (0.75, (1610612736, 0)),
        (1 - 1e-9, (2147483646, 0)),
        # TEST(QuantizationUtilTest, QuantizeMultiplierGreaterThanOne)
        (1 + 1e-11, (1073741824, 1)),
        (1.25, (1342177280, 1)),
        (1.75, (1879048192, 1)),
        (2 - 1e-9, (2147483647, 1)),
        (2 - 1e-11, (1073741824, 2)),
        # TEST(QuantizationUtilTest, QuantizeMultiplierUnderflow)
        (math.ldexp(1.0, -31), (1073741824, -30)),
        (math.ldexp(1.0, -32), (1073741824, -31)),
        (math.ldexp(float(np.float32(0.99)), -32), (0, 0)),
        (math.ldexp(1.0, -33), (0, 0)),
    ],
)
def test_quantize_multiplier_matches_tflite(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


@pytest.mark.parametrize(
    ("x", "real", "expected"),
    [
        # TEST(QuantizationUtilTest, MultiplyByQuantizedMultiplierInt32)
        (0, 0.1, 0),
        (1, 0, 0),
        (10000, 0.00097656, 10),
        (-10000, 0.00097656, -10),
        (INT32_MIN, 0.00001, -21475),
        (INT32_MAX, 0.00001, 21475),
        (10000, -0.00097656, -10),
        (-10000, -0.00097656, 10),
        (INT32_MIN, -0.00001, 21475),
        (INT32_MAX, -0.00001, -21475),
    ],
)
def test_multiply_by_quantized_multiplier_matches_tflite(
    x: int, real: float, expected: int
) -> None:
    assert _mbqm_one(x, *quantize_multiplier(real)) == expected


def test_largest_operands_match_tflite() -> None:
    # Same test, "maximum possible x and quantized_multiplier": TfLiteRound(x * m / 2^(31 - shift)).
    expected = round(INT32_MAX * INT32_MAX / float(1 << 34))
    assert _mbqm_one(INT32_MAX, INT32_MAX, -3) == expected
    assert _mbqm_one(-INT32_MAX, INT32_MAX, -3) == -expected


@pytest.mark.parametrize(
    ("x", "real", "expected"),
    [
        # Hand-computed from the C definitions: M = 0.5 is (2^30, 0), M = 0.25 is (2^30, -1).
        (3, 0.5, 2),  # SRDHM: (3*2^30 + 2^30) / 2^31 = 2
        (-3, 0.5, -1),  # SRDHM: trunc((-3*2^30 + 1 - 2^30) / 2^31) = trunc(-1.99..) = -1
        (6, 0.25, 2),  # SRDHM 3 (trunc 3.5), then RDBPOT(3, 1): 1 + (1 > 0) = 2
        (-6, 0.25, -2),  # SRDHM -3, then RDBPOT(-3, 1): -2 + (1 > 1) = -2
        (5, 2.0, 10),  # (2^30, 2): left shift 2, SRDHM(20, 2^30) = 10
    ],
)
def test_hand_computed_cases(x: int, real: float, expected: int) -> None:
    assert _mbqm_one(x, *quantize_multiplier(real)) == expected
    assert _mbqm(x, *quantize_multiplier(real)) == expected


def test_srdhm_saturates_the_one_overflowing_product() -> None:
    a = np.array([INT32_MIN, INT32_MIN, INT32_MAX, -1], dtype=np.int64)
    b = np.array([INT32_MIN, INT32_MAX, INT32_MAX, INT32_MIN], dtype=np.int64)
    expected = [_srdhm(int(p), int(q)) for p, q in zip(a, b, strict=True)]
    assert saturating_rounding_doubling_high_mul(a, b).tolist() == expected
    assert expected[0] == INT32_MAX


def test_rounding_divide_by_pot_rounds_ties_away_from_zero() -> None:
    x = np.array([5, -5, 6, -6, 7, -7, INT32_MAX, INT32_MIN], dtype=np.int32)
    assert rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 1 << 30, -(1 << 30)]
    assert rounding_divide_by_pot(x, 31).tolist() == [0, 0, 0, 0, 0, 0, 1, -1]


@pytest.mark.parametrize("seed", range(4))
def test_requant_is_within_one_lsb_of_the_real_product(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for real in 2.0 ** rng.uniform(-24, 3, size=200):
        multiplier, shift = quantize_multiplier(float(real))
        x = rng.integers(-(1 << 24), 1 << 24, size=256)
        got = multiply_by_quantized_multiplier(x, multiplier, shift)
        assert np.abs(got - x * real).max() <= 1.0, (real, multiplier, shift)


@pytest.mark.parametrize("seed", range(4))
def test_requant_is_bit_exact_with_the_scalar_c_code(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    channels = 64
    multiplier = rng.integers(1 << 30, 1 << 31, size=channels)
    multiplier[:4] = [INT32_MAX, 1 << 30, -(1 << 30), 0]  # TFLite allows negative multipliers
    shift = rng.integers(-31, 31, size=channels)
    shift[3] = 0
    limit = INT32_MAX >> np.maximum(shift, 0)  # x << left_shift must stay an int32
    x = (rng.uniform(-1, 1, size=(32, channels)) * limit).astype(np.int64)
    x[0], x[1] = limit, -limit
    x[2] = 0
    got = multiply_by_quantized_multiplier(x, multiplier, shift)
    assert got.dtype == np.int32
    for row_x, row_got in zip(x, got, strict=True):
        expected = [
            _mbqm(int(v), int(m), int(s)) for v, m, s in zip(row_x, multiplier, shift, strict=True)
        ]
        assert row_got.tolist() == expected


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: quantize_multiplier(math.nan), ValueError, "finite"),
        (lambda: quantize_multiplier(math.inf), ValueError, "finite"),
        (lambda: rounding_divide_by_pot(np.array([1]), 32), ValueError, "0..31"),
        (lambda: rounding_divide_by_pot(np.array([1.0]), 1), TypeError, "integer array"),
        (lambda: multiply_by_quantized_multiplier(np.array([1 << 31]), 1 << 30, 0), ValueError,
         "fit int32"),
        (lambda: multiply_by_quantized_multiplier(np.array([1 << 20]), 1 << 30, 12), ValueError,
         "overflows int32"),
        (lambda: multiply_by_quantized_multiplier(np.array([1]), 1 << 30, 31), ValueError,
         "-31..30"),
    ],
)  # fmt: skip
def test_bad_operands_are_refused(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# --- the interpreter against FullyConnectedPerChannel, one scalar at a time -------------------


def _random_model(rng: np.random.Generator, widths: list[int]) -> McuModel:
    layers = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        pairs = [quantize_multiplier(float(m)) for m in 2.0 ** rng.uniform(-14, -4, width_out)]
        layers.append(
            McuLayer(
                weights=rng.integers(-127, 128, size=(width_out, width_in), dtype=np.int8),
                bias=rng.integers(-(1 << 15), 1 << 15, size=width_out).astype(np.int32),
                multiplier=np.array([m for m, _ in pairs], dtype=np.int32),
                shift=np.array([s for _, s in pairs], dtype=np.int32),
                output_zero_point=int(rng.integers(-128, 128)),
                output_scale=0.05,
                activation=Activation.RELU if index < len(widths) - 2 else Activation.NONE,
            )
        )
    return McuModel(tuple(layers))


def _reference_forward(model: McuModel, row: list[int]) -> list[int]:
    input_offset = -model.input_zero_point
    for layer in model.layers:
        out = []
        for c in range(layer.out_dim):
            acc = sum(
                int(w) * (v + input_offset) for w, v in zip(layer.weights[c], row, strict=True)
            )
            acc += int(layer.bias[c])
            assert INT32_MIN <= acc <= INT32_MAX  # the C kernel's int32 accumulator
            acc = _mbqm(acc, int(layer.multiplier[c]), int(layer.shift[c]))
            acc += layer.output_zero_point
            out.append(min(max(acc, layer.activation_min), layer.activation_max))
        row, input_offset = out, -layer.output_zero_point
    return row


@pytest.mark.parametrize(("seed", "widths"), [(0, [16, 12, 10]), (1, [20, 24, 8, 5]), (2, [7, 3])])
def test_interpreter_equals_the_scalar_kernel(seed: int, widths: list[int]) -> None:
    rng = np.random.default_rng(seed)
    model = _random_model(rng, widths)
    inputs = rng.integers(-128, 128, size=(24, widths[0]), dtype=np.int8)
    got = run(model, inputs)
    assert got.dtype == np.int8
    for row, row_got in zip(inputs, got, strict=True):
        assert row_got.tolist() == _reference_forward(model, [int(v) for v in row])
