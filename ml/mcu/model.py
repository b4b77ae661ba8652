"""An `mcu-int8` model: the integer tensors a Cortex-M runs, checked once when built or loaded.

Each layer is TFLite's int8 per-channel FullyConnected (reference_integer_ops
FullyConnectedPerChannel; CMSIS-NN arm_fully_connected_per_channel_s8), after the TFLite int8
quantization spec: weights int8 symmetric per output channel in [-127, 127] with zero point 0,
activations int8 asymmetric per tensor, biases int32 at scale input_scale * weight_scale[c] with
zero point 0, one (multiplier, shift) pair per output channel. A fused ReLU is the clamp of the
output to [max(-128, zero point), 127], since the zero point is where real 0 lands.

The input is raw pixels 0..pixel_max; q = -128 + pixel * (255 // pixel_max), an exact integer map
(for pixel_max 16: steps of 15, scale 1/15 pixel) so no pixel value is rounded on its way in.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from fedota.ml.mcu.errors import McuFormatError
from fedota.ml.mcu.fixedpoint import INT32_MAX

INPUT_ZERO_POINT = -128
WEIGHT_LIMIT = 127  # symmetric int8 weights never use -128 (TFLite int8 spec)
MAX_DIM = 0xFFFF  # a dimension is a u16 in the export
# The worst-case accumulator, shifted left by the layer's left shift, stays at most this, so
# neither the int32 accumulation, `x * (1 << left_shift)` nor adding the output zero point can
# overflow (each would be undefined behaviour in the C kernels).
ACCUMULATOR_LIMIT = INT32_MAX - 128


class Activation(enum.IntEnum):
    """The activation fused into a layer (one byte in the export, never renumbered)."""

    NONE = 0
    RELU = 1


@dataclass(frozen=True, eq=False)
class McuLayer:
    """One int8 fully connected layer; arrays are read-only copies after validation.

    Attributes:
        weights: int8 (out, in), zero point 0.
        bias: int32 (out,).
        multiplier: int32 (out,), 0 or in [2^30, 2^31 - 1] (TFLite's QuantizeMultiplier).
        shift: int32 (out,), in -31..30; negative shifts right.
        output_zero_point: in -128..127.
        output_scale: real value of one output step (for dequantizing only; never at inference).
        activation: the fused activation.
    """

    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    output_zero_point: int
    output_scale: float
    activation: Activation = Activation.NONE

    @property
    def in_dim(self) -> int:
        return int(self.weights.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weights.shape[0])

    @property
    def activation_min(self) -> int:
        if self.activation is Activation.RELU:
            return max(-128, self.output_zero_point)
        return -128

    @property
    def activation_max(self) -> int:
        return 127


@dataclass(frozen=True, eq=False)
class McuModel:
    """A chain of int8 layers from pixels (n, input_dim) to int8 logits (n, classes).

    Raises:
        McuFormatError: on construction, if any tensor, parameter or bound is out of spec.
    """

    layers: tuple[McuLayer, ...]
    pixel_max: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.pixel_max, int) or not 1 <= self.pixel_max <= 255:
            raise McuFormatError(f"pixel_max must be in 1..255, got {self.pixel_max!r}")
        if not self.layers:
            raise McuFormatError("a model needs at least one layer, got none")
        checked = []
        previous_out = None
        for index, layer in enumerate(self.layers):
            checked.append(_checked_layer(index, layer))
            if previous_out is not None and checked[-1].in_dim != previous_out:
                raise McuFormatError(
                    f"layer {index} takes {checked[-1].in_dim} inputs but layer {index - 1} "
                    f"gives {previous_out}: widths must chain"
                )
            previous_out = checked[-1].out_dim
        object.__setattr__(self, "layers", tuple(checked))

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def classes(self) -> int:
        return self.layers[-1].out_dim

    @property
    def input_step(self) -> int:
        """Quantized steps per pixel unit: q = INPUT_ZERO_POINT + pixel * input_step."""
        return 255 // self.pixel_max

    @property
    def input_zero_point(self) -> int:
        return INPUT_ZERO_POINT

    def dequantize_logits(self, logits: np.ndarray) -> np.ndarray:
        """Real-valued logits (float32) for host-side use; the device never needs this."""
        last = self.layers[-1]
        centred = np.asarray(logits).astype(np.int32) - last.output_zero_point
        return centred.astype(np.float32) * np.float32(last.output_scale)


def _array(value: object, dtype: type, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype):
        found = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise McuFormatError(f"{what} must be a {np.dtype(dtype)} array, got {found}")
    if value.shape != shape:
        raise McuFormatError(f"{what} must have shape {shape}, got {value.shape}")
    copy = np.array(value, dtype=dtype, copy=True)
    copy.setflags(write=False)
    return copy


def _checked_layer(index: int, layer: McuLayer) -> McuLayer:
    where = f"layer {index}"
    if not isinstance(layer, McuLayer):
        raise McuFormatError(f"{where} must be an McuLayer, got {type(layer).__name__}")
    if not isinstance(layer.weights, np.ndarray) or layer.weights.ndim != 2:
        raise McuFormatError(f"{where}: weights must be a 2-D array (out, in)")
    out_dim, in_dim = layer.weights.shape
    if not (1 <= out_dim <= MAX_DIM and 1 <= in_dim <= MAX_DIM):
        raise McuFormatError(f"{where}: dimensions must be in 1..{MAX_DIM}, got {out_dim}x{in_dim}")
    weights = _array(layer.weights, np.int8, (out_dim, in_dim), f"{where} weights")
    bias = _array(layer.bias, np.int32, (out_dim,), f"{where} bias")
    multiplier = _array(layer.multiplier, np.int32, (out_dim,), f"{where} multiplier")
    shift = _array(layer.shift, np.int32, (out_dim,), f"{where} shift")
    if weights.min() < -WEIGHT_LIMIT:
        raise McuFormatError(f"{where}: symmetric int8 weights lie in [-127, 127], found -128")
    valid = (multiplier == 0) | (multiplier >= 1 << 30)
    if not valid.all():
        bad = int(multiplier[~valid][0])
        raise McuFormatError(f"{where}: a multiplier is 0 or in [2^30, 2^31 - 1], got {bad}")
    if shift.min() < -31 or shift.max() > 30:
        raise McuFormatError(
            f"{where}: shifts lie in -31..30, got [{int(shift.min())}, {int(shift.max())}]"
        )
    if ((multiplier == 0) & (shift != 0)).any():
        raise McuFormatError(f"{where}: a zero multiplier has shift 0 (as QuantizeMultiplier)")
    zero_point = layer.output_zero_point
    if isinstance(zero_point, bool) or not isinstance(zero_point, int | np.integer):
        raise McuFormatError(f"{where}: output zero point must be an int, got {zero_point!r}")
    if not -128 <= zero_point <= 127:
        raise McuFormatError(f"{where}: output zero point lies in -128..127, got {zero_point}")
    scale = layer.output_scale
    if not isinstance(scale, float | np.floating) or not math.isfinite(scale) or scale <= 0:
        raise McuFormatError(f"{where}: output scale must be a finite float > 0, got {scale!r}")
    try:
        activation = Activation(layer.activation)
    except ValueError:
        raise McuFormatError(f"{where}: unknown activation code {layer.activation!r}") from None
    # |input - input zero point| <= 255 for int8 activations and zero points.
    worst = 255 * np.abs(weights.astype(np.int64)).sum(axis=1) + np.abs(bias.astype(np.int64))
    shifted = worst << np.maximum(shift, 0).astype(np.int64)
    if shifted.max() > ACCUMULATOR_LIMIT:
        channel = int(shifted.argmax())
        raise McuFormatError(
            f"{where}: channel {channel} can reach {int(shifted[channel])} in its int32 "
            f"accumulator; the limit is {ACCUMULATOR_LIMIT}"
        )
    return McuLayer(weights, bias, multiplier, shift, int(zero_point), float(scale), activation)


__all__ = [
    "ACCUMULATOR_LIMIT",
    "INPUT_ZERO_POINT",
    "Activation",
    "McuLayer",
    "McuModel",
]
