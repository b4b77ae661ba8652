"""fedota.ml.mcu: the `mcu-int8` hardware class, integer-only 8-bit inference as on a Cortex-M.

    model, data = train_digits(seed=0)                  # fedota.ml.digits
    mcu = quantize(model, data.x_cal)                   # calibrated post-training quantization
    labels = predict(mcu, data.x_test)                  # integer-only reference interpreter
    blob = export(mcu)                                  # compact binary; len(blob) is its size
    same = load(blob)                                   # every length and value checked

Weights int8 per channel, activations int8 per tensor, int32 biases and accumulators, and
requantization by fixed-point multiplier and shift exactly as TFLite Micro and CMSIS-NN do it.
Every failure a model or its bytes can cause is an `McuError` subclass.
"""

from fedota.ml.mcu.errors import (
    McuCalibrationError,
    McuChecksumError,
    McuError,
    McuFormatError,
    McuInputError,
    McuTruncated,
)
from fedota.ml.mcu.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    quantize_multipliers,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from fedota.ml.mcu.format import MAGIC, VERSION, export, load
from fedota.ml.mcu.interpreter import predict, quantize_input, run
from fedota.ml.mcu.model import Activation, McuLayer, McuModel
from fedota.ml.mcu.quantize import (
    CalibrationMethod,
    calibrate,
    choose_activation_params,
    quantize,
)

HARDWARE_CLASS = "mcu-int8"

__all__ = [
    "HARDWARE_CLASS",
    "MAGIC",
    "VERSION",
    "Activation",
    "CalibrationMethod",
    "McuCalibrationError",
    "McuChecksumError",
    "McuError",
    "McuFormatError",
    "McuInputError",
    "McuLayer",
    "McuModel",
    "McuTruncated",
    "calibrate",
    "choose_activation_params",
    "export",
    "load",
    "multiply_by_quantized_multiplier",
    "predict",
    "quantize",
    "quantize_input",
    "quantize_multiplier",
    "quantize_multipliers",
    "rounding_divide_by_pot",
    "run",
    "saturating_rounding_doubling_high_mul",
]
