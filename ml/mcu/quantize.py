"""Post-training quantization of a digits MLP to `mcu-int8`, calibrated on held-out pixels.

Offline and on the host, so floats are fine here; what it produces runs on integers only.
The steps follow TFLite's post-training full-integer quantization:

1. Run the fp32 model on the calibration batch and record each layer's output range (min/max,
   or a percentile to ignore outliers); a fused ReLU's output starts at 0.
2. Activations: asymmetric int8 per tensor, scale = (max - min) / 255 and the zero point that
   maps real 0 to an integer (ChooseQuantizationParams, quantization_util.h).
3. Weights: symmetric int8 per output channel, scale = max|w| / 127, zero point 0.
4. Biases: int32 at scale input_scale * weight_scale[c].
5. Requantization: QuantizeMultiplier(input_scale * weight_scale[c] / output_scale).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from fedota.ml.digits import PIXEL_MAX, DigitsMLP
from fedota.ml.mcu.errors import McuCalibrationError, McuInputError
from fedota.ml.mcu.fixedpoint import INT32_MAX, INT32_MIN, quantize_multipliers
from fedota.ml.mcu.model import WEIGHT_LIMIT, Activation, McuLayer, McuModel

CalibrationMethod = Literal["minmax", "percentile"]


def _round_half_away(values: np.ndarray) -> np.ndarray:
    # TfLiteRound (std::round) rounds ties away from zero; numpy's rint rounds them to even.
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def choose_activation_params(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of an int8 tensor holding real values in [low, high].

    TFLite's ChooseQuantizationParams for [-128, 127]: the range is widened to hold 0, the zero
    point is taken from whichever end gives the smaller error, then nudged to an integer. The
    scale is rounded to float32, as a model file holds it. An empty range gets scale 1.

    Raises:
        ValueError: a bound is not finite, or low > high.
    """
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"an activation range needs finite low <= high, got [{low}, {high}]")
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        return 1.0, -128
    scale = float(np.float32((high - low) / 255.0))
    from_min, from_max = -128 - low / scale, 127 - high / scale
    error_min, error_max = 128 + abs(low / scale), 127 + abs(high / scale)
    zero_point = from_min if error_min < error_max else from_max
    return scale, int(np.clip(_round_half_away(np.float64(zero_point)), -128, 127))


def calibrate(
    model: DigitsMLP,
    pixels: np.ndarray,
    *,
    method: CalibrationMethod = "minmax",
    percentile: float = 99.99,
) -> list[tuple[float, float]]:
    """The real-valued (low, high) range of each layer's output on the calibration pixels.

    Raises:
        McuInputError: `pixels` is not a 2-D batch of the model's input width.
        McuCalibrationError: the batch is empty or the activations are not finite.
        ValueError: unknown method, or a percentile outside (50, 100].
    """
    if method not in ("minmax", "percentile"):
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    if not 50 < percentile <= 100:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    batch = np.asarray(pixels)
    width = model.layers[0].in_features
    if batch.ndim != 2 or batch.shape[1] != width:
        raise McuInputError(f"calibration pixels must have shape (n, {width}), got {batch.shape}")
    if len(batch) == 0:
        raise McuCalibrationError("calibration needs at least one example, got none")
    ranges = []
    with torch.inference_mode():
        x = torch.as_tensor(batch, dtype=torch.float32) / PIXEL_MAX
        for index, layer in enumerate(model.layers):
            x = layer(x)
            if index < len(model.layers) - 1:
                x = torch.relu(x)
            values = x.numpy()
            if not np.isfinite(values).all():
                raise McuCalibrationError(f"layer {index} gives non-finite activations")
            if method == "minmax":
                ranges.append((float(values.min()), float(values.max())))
            else:
                low, high = np.percentile(values, [100 - percentile, percentile])
                ranges.append((float(low), float(high)))
    return ranges


def quantize(
    model: DigitsMLP,
    calibration_pixels: np.ndarray,
    *,
    method: CalibrationMethod = "minmax",
    percentile: float = 99.99,
) -> McuModel:
    """The `mcu-int8` model of a trained digits MLP, calibrated on held-out pixels.

    Raises:
        McuInputError, McuCalibrationError, ValueError: see `calibrate`.
        McuFormatError: the result would break an integer bound (e.g. accumulator overflow).
    """
    ranges = calibrate(model, calibration_pixels, method=method, percentile=percentile)
    step = 255 // PIXEL_MAX
    # The model sees pixel / PIXEL_MAX; the integer input is -128 + pixel * step.
    input_scale = float(np.float32(1.0 / (PIXEL_MAX * step)))
    layers = []
    for index, (layer, (low, high)) in enumerate(zip(model.layers, ranges, strict=True)):
        weights = layer.weight.detach().to(torch.float64).numpy()
        bias = layer.bias.detach().to(torch.float64).numpy()
        peak = np.abs(weights).max(axis=1)
        weight_scale = (np.where(peak > 0, peak, 1.0) / WEIGHT_LIMIT).astype(np.float32)
        scaled = weights / weight_scale.astype(np.float64)[:, None]
        weights_q = np.clip(_round_half_away(scaled), -WEIGHT_LIMIT, WEIGHT_LIMIT)
        bias_scale = input_scale * weight_scale.astype(np.float64)
        bias_q = np.clip(_round_half_away(bias / bias_scale), INT32_MIN, INT32_MAX)
        output_scale, output_zero_point = choose_activation_params(low, high)
        multiplier, shift = quantize_multipliers(bias_scale / output_scale)
        hidden = index < len(model.layers) - 1
        layers.append(
            McuLayer(
                weights=weights_q.astype(np.int8),
                bias=bias_q.astype(np.int32),
                multiplier=multiplier,
                shift=shift,
                output_zero_point=output_zero_point,
                output_scale=output_scale,
                activation=Activation.RELU if hidden else Activation.NONE,
            )
        )
        input_scale = output_scale
    return McuModel(tuple(layers), pixel_max=PIXEL_MAX)


__all__ = ["CalibrationMethod", "calibrate", "choose_activation_params", "quantize"]
