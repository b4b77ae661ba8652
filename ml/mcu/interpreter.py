"""The integer-only reference interpreter: what a Cortex-M computes, batch by batch, in numpy.

No float is touched from pixels to class: inputs are int8, accumulators int32 (held in int32
arrays, as `int32_t acc` in the C kernels), the only int64 is the widened product inside the
requantization, and the class is the argmax of the int8 logits. Per layer, as TFLite's
reference_integer_ops::FullyConnectedPerChannel:

    acc = sum_d filter[c, d] * (input[d] + input_offset) + bias[c]
    acc = MultiplyByQuantizedMultiplier(acc, multiplier[c], shift[c]) + output_offset
    out = clamp(acc, activation_min, activation_max)        # the fused ReLU is the clamp

`McuModel` has proved at construction that no int32 step can overflow for any input.
"""

from __future__ import annotations

import numpy as np

from fedota.ml.mcu.errors import McuInputError
from fedota.ml.mcu.fixedpoint import multiply_by_quantized_multiplier
from fedota.ml.mcu.model import McuModel


def quantize_input(model: McuModel, pixels: np.ndarray) -> np.ndarray:
    """int8 (n, input_dim) input tensor of integer pixels 0..pixel_max (exact, no rounding).

    Raises:
        McuInputError: not a 2-D integer batch of the input width, or a pixel out of range.
    """
    batch = np.asanyarray(pixels)
    if batch.dtype.kind not in "iu":
        raise McuInputError(f"pixels must be integers, got dtype {batch.dtype}")
    if batch.ndim != 2 or batch.shape[1] != model.input_dim:
        raise McuInputError(f"pixels must have shape (n, {model.input_dim}), got {batch.shape}")
    if batch.size and (batch.min() < 0 or batch.max() > model.pixel_max):
        raise McuInputError(
            f"pixels lie in 0..{model.pixel_max}, got [{batch.min()}, {batch.max()}]"
        )
    steps = batch.astype(np.int32) * model.input_step
    return (steps + model.input_zero_point).astype(np.int8)


def run(model: McuModel, inputs: np.ndarray) -> np.ndarray:
    """int8 logits (n, classes) of a batch of int8 input tensors (n, input_dim).

    Raises:
        McuInputError: `inputs` is not an int8 batch of the model's input width.
    """
    batch = np.asanyarray(inputs)
    if batch.dtype != np.int8 or batch.ndim != 2 or batch.shape[1] != model.input_dim:
        raise McuInputError(
            f"inputs must be int8 of shape (n, {model.input_dim}), got {batch.dtype} {batch.shape}"
        )
    activations = batch.astype(np.int32)
    input_offset = -model.input_zero_point
    for layer in model.layers:
        acc = (activations + np.int32(input_offset)) @ layer.weights.T.astype(np.int32)
        acc = acc + layer.bias
        acc = multiply_by_quantized_multiplier(acc, layer.multiplier, layer.shift)
        acc = acc + np.int32(layer.output_zero_point)
        activations = np.clip(acc, layer.activation_min, layer.activation_max).astype(np.int32)
        input_offset = -layer.output_zero_point
    return activations.astype(np.int8)


def predict(model: McuModel, pixels: np.ndarray) -> np.ndarray:
    """Class ids (n,) int64: argmax of the int8 logits (the first maximum, as a C loop finds).

    Raises:
        McuInputError: see `quantize_input`.
    """
    logits = run(model, quantize_input(model, pixels))
    return np.argmax(logits, axis=1).astype(np.int64)


__all__ = ["predict", "quantize_input", "run"]
