"""The `mcu-int8` pipeline on the trained digits model: integer-only inference, accuracy kept
against fp32, calibration, input quantization, and the model's own validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from fedota.ml import mcu
from fedota.ml.digits import DigitsData, DigitsMLP, accuracy, predict, train_digits


class IntegerOnly(np.ndarray):
    """An ndarray whose every numpy operation (ufunc, array function, astype) fails the test if
    it takes or gives a float; results stay IntegerOnly, so everything computed from it is
    checked. `ops` records the operations seen."""

    ops: ClassVar[list[str]] = []

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = f"{ufunc.__name__}.{method}"
        _check_integer(inputs, name)
        _check_integer(kwargs.get("dtype"), name)
        plain = [x.view(np.ndarray) if isinstance(x, IntegerOnly) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(
                x.view(np.ndarray) if isinstance(x, IntegerOnly) else x for x in kwargs["out"]
            )
        result = getattr(ufunc, method)(*plain, **kwargs)
        IntegerOnly.ops.append(name)
        _check_integer(result, name)
        return _wrap(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        _check_integer(args, func.__name__)
        _check_integer(kwargs, func.__name__)
        result = super().__array_function__(func, types, args, kwargs)
        IntegerOnly.ops.append(func.__name__)
        _check_integer(result, func.__name__)
        return _wrap(result)

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> Any:
        _check_integer(np.dtype(dtype), "astype")
        return super().astype(dtype, *args, **kwargs)


def _wrap(value: Any) -> Any:
    if type(value) is np.ndarray:
        return value.view(IntegerOnly)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _check_integer(value: Any, where: str) -> None:
    if isinstance(value, np.dtype) and value.kind not in "biu":
        raise AssertionError(f"{where} asks for dtype {value}")
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind not in "biu":
        raise AssertionError(f"{where} touches a {value.dtype} value")
    if isinstance(value, float | complex):
        raise AssertionError(f"{where} touches the Python float {value!r}")
    if isinstance(value, tuple | list):
        for item in value:
            _check_integer(item, where)
    if isinstance(value, dict):
        for item in value.values():
            _check_integer(item, where)


@pytest.fixture(scope="module")
def trained() -> Iterator[tuple[DigitsMLP, DigitsData]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only add contention
    try:
        yield train_digits(seed=0)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def quantized(trained: tuple[DigitsMLP, DigitsData]) -> mcu.McuModel:
    model, data = trained
    return mcu.quantize(model, data.x_cal)


@pytest.mark.parametrize(
    "operation",
    [lambda x: x * 0.5, lambda x: x / 2, lambda x: np.mean(x), lambda x: x.astype(np.float32)],
)
def test_the_integer_tracer_catches_floats(operation: Any) -> None:
    with pytest.raises(AssertionError, match="float"):
        operation(np.arange(4).view(IntegerOnly))


def test_interpreter_never_touches_a_float(quantized: mcu.McuModel) -> None:
    pixels = np.random.default_rng(0).integers(0, 17, size=(16, 64)).view(IntegerOnly)
    IntegerOnly.ops = []
    labels = mcu.predict(quantized, pixels)
    assert labels.dtype.kind == "i"
    # The tracer saw the whole computation, not just the first step.
    assert {"matmul.__call__", "clip", "argmax", "right_shift.__call__"} <= set(IntegerOnly.ops)
    expected = mcu.predict(quantized, pixels.view(np.ndarray))
    assert np.array_equal(labels.view(np.ndarray), expected)


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_mcu_int8_keeps_98_percent_of_fp32_accuracy(
    trained: tuple[DigitsMLP, DigitsData], method: mcu.CalibrationMethod
) -> None:
    model, data = trained
    fp32 = accuracy(model, data.x_test, data.y_test)
    int8_model = mcu.quantize(model, data.x_cal, method=method)
    int8 = accuracy(lambda x: mcu.predict(int8_model, x), data.x_test, data.y_test)
    print(f"digits test accuracy: fp32 {fp32:.4f}, mcu-int8 ({method}) {int8:.4f}")
    assert fp32 >= 0.95
    assert int8 >= 0.98 * fp32
    agreement = np.mean(
        mcu.predict(int8_model, data.x_test) == predict(model, data.x_test).argmax(1)
    )
    assert agreement >= 0.98


def test_int8_logits_track_the_fp32_logits(
    trained: tuple[DigitsMLP, DigitsData], quantized: mcu.McuModel
) -> None:
    model, data = trained
    with torch.inference_mode():
        reference = model(torch.as_tensor(data.x_test)).numpy()
    logits = mcu.run(quantized, mcu.quantize_input(quantized, data.x_test))
    assert logits.dtype == np.int8
    error = np.abs(quantized.dequantize_logits(logits) - reference)
    assert error.mean() <= 2 * quantized.layers[-1].output_scale
    assert np.array_equal(np.argmax(logits, axis=1), mcu.predict(quantized, data.x_test))


def test_a_batch_equals_one_example_at_a_time(
    trained: tuple[DigitsMLP, DigitsData], quantized: mcu.McuModel
) -> None:
    pixels = trained[1].x_test[:20]
    batch = mcu.run(quantized, mcu.quantize_input(quantized, pixels))
    for i in range(len(pixels)):
        single = mcu.run(quantized, mcu.quantize_input(quantized, pixels[i : i + 1]))
        assert np.array_equal(single[0], batch[i])
    assert mcu.predict(quantized, pixels[:0]).shape == (0,)


def test_input_quantization_is_exact(quantized: mcu.McuModel) -> None:
    pixels = np.tile(np.arange(17, dtype=np.uint8), 4)[:64].reshape(1, 64)
    q = mcu.quantize_input(quantized, pixels)
    assert q.dtype == np.int8 and quantized.input_step == 15
    assert np.array_equal(q.astype(np.int32), -128 + 15 * pixels.astype(np.int32))


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((2, 64), dtype=np.float64), "must be integers"),
        (np.zeros((2, 63), dtype=np.int64), r"shape \(n, 64\)"),
        (np.zeros(64, dtype=np.int64), r"shape \(n, 64\)"),
        (np.full((1, 64), 17, dtype=np.int64), "0..16"),
        (np.full((1, 64), -1, dtype=np.int64), "0..16"),
    ],
)
def test_bad_pixels_are_refused(quantized: mcu.McuModel, pixels: np.ndarray, message: str) -> None:
    with pytest.raises(mcu.McuInputError, match=message):
        mcu.predict(quantized, pixels)


def test_run_refuses_anything_but_int8_inputs(quantized: mcu.McuModel) -> None:
    with pytest.raises(mcu.McuInputError, match="int8"):
        mcu.run(quantized, np.zeros((1, 64), dtype=np.int32))


def test_quantized_parameters_follow_the_int8_spec(quantized: mcu.McuModel) -> None:
    assert [layer.activation for layer in quantized.layers] == [
        mcu.Activation.RELU, mcu.Activation.RELU, mcu.Activation.NONE
    ]  # fmt: skip
    for layer in quantized.layers:
        assert layer.weights.min() >= -127
        assert np.all(np.abs(layer.weights).max(axis=1) == 127)  # each channel's peak is 127
        assert np.all(layer.multiplier >= 1 << 30) and np.all(layer.shift <= 0)
    for layer in quantized.layers[:2]:  # a ReLU output starts at real 0: zero point -128
        assert layer.output_zero_point == -128 and layer.activation_min == -128


@pytest.mark.parametrize(
    ("low", "high", "scale", "zero_point"),
    [
        (0.0, 2.55, 0.01, -128),
        (-2.55, 0.0, 0.01, 127),
        (-1.0, 1.0, 2 / 255, 0),
        (0.5, 0.5, 0.5 / 255, -128),
        (0.0, 0.0, 1.0, -128),
    ],
)
def test_activation_params_hold_zero_exactly(
    low: float, high: float, scale: float, zero_point: int
) -> None:
    got_scale, got_zero_point = mcu.choose_activation_params(low, high)
    assert got_scale == pytest.approx(scale, rel=1e-6) and got_zero_point == zero_point


def test_calibration_errors(trained: tuple[DigitsMLP, DigitsData]) -> None:
    model, data = trained
    with pytest.raises(mcu.McuCalibrationError, match="at least one"):
        mcu.quantize(model, data.x_cal[:0])
    with pytest.raises(mcu.McuInputError, match=r"shape \(n, 64\)"):
        mcu.quantize(model, data.x_cal[:, :10])
    with pytest.raises(mcu.McuCalibrationError, match="non-finite"):
        mcu.quantize(model, np.full((2, 64), np.inf))
    with pytest.raises(ValueError, match="method"):
        mcu.quantize(model, data.x_cal, method="entropy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percentile"):
        mcu.quantize(model, data.x_cal, method="percentile", percentile=40)
    with pytest.raises(ValueError, match="low <= high"):
        mcu.choose_activation_params(1.0, 0.0)


def _replace(model: mcu.McuModel, index: int, **changes: Any) -> mcu.McuModel:
    layers = list(model.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return mcu.McuModel(tuple(layers), pixel_max=model.pixel_max)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weights": np.zeros((32, 64), dtype=np.int16)}, "int8 array"),
        ({"weights": np.zeros((32, 63), dtype=np.int8)}, "widths must chain"),
        ({"weights": np.full((32, 64), -128, dtype=np.int8)}, "found -128"),
        ({"bias": np.full(32, (1 << 31) - 1000, dtype=np.int32)}, "accumulator"),
        ({"bias": np.zeros(32, dtype=np.int64)}, "int32 array"),
        ({"bias": np.zeros(31, dtype=np.int32)}, "shape"),
        ({"multiplier": np.full(32, 12345, dtype=np.int32)}, "multiplier is 0 or"),
        ({"shift": np.full(32, -32, dtype=np.int32)}, "-31..30"),
        ({"shift": np.full(32, 30, dtype=np.int32)}, "accumulator"),
        ({"output_zero_point": 128}, "-128..127"),
        ({"output_scale": float("nan")}, "finite float"),
        ({"output_scale": 0.0}, "finite float"),
        ({"activation": 7}, "activation code"),
    ],
)
def test_the_model_refuses_out_of_spec_layers(
    quantized: mcu.McuModel, changes: dict[str, Any], message: str
) -> None:
    assert quantized.layers[1].weights.shape == (32, 64)
    with pytest.raises(mcu.McuFormatError, match=message):
        _replace(quantized, 1, **changes)


def test_the_model_refuses_no_layers_and_a_bad_pixel_range(quantized: mcu.McuModel) -> None:
    with pytest.raises(mcu.McuFormatError, match="at least one layer"):
        mcu.McuModel(())
    with pytest.raises(mcu.McuFormatError, match=r"1\.\.255"):
        mcu.McuModel(quantized.layers, pixel_max=256)


def test_the_model_owns_read_only_copies(quantized: mcu.McuModel) -> None:
    weights = quantized.layers[0].weights.copy()
    rebuilt = _replace(quantized, 0, weights=weights)
    weights[0, 0] = 0 if weights[0, 0] else 1
    assert rebuilt.layers[0].weights[0, 0] != weights[0, 0]
    with pytest.raises(ValueError, match="read-only"):
        rebuilt.layers[0].weights[0, 0] = 1
