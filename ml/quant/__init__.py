"""fedota.ml.quant: weight quantization of Linear and Embedding layers (int8, int4).

    small = quantize_model(model, "int8")     # a new module; int8 weights in memory
    weight_bytes(small)                       # bytes held, scales included

int8 is per output channel with each activation row quantized alone (int8 x int8 products:
a VNNI row kernel for few rows, oneDNN's `_int_mm` for many); int4 is group-wise, packed two
per byte (fedota.delta's I4), weight-only, on a small C kernel. See kernels.py for the
measurements behind each choice.
"""

from fedota.ml.quant.codec import (
    Int4Weight,
    Int8Weight,
    dequantize_int4,
    dequantize_int8,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)
from fedota.ml.quant.embedding import QuantEmbedding
from fedota.ml.quant.kernels import kernel_status
from fedota.ml.quant.linear import Int4Linear, Int8Linear
from fedota.ml.quant.model import (
    VARIANTS,
    LayerPlan,
    Variant,
    load_quantized_state,
    packed_int4_shapes,
    quantization_plan,
    quantize_model,
    weight_bytes,
)
from fedota.ml.quant.smooth import calibrate_input_scales

__all__ = [
    "VARIANTS",
    "Int4Linear",
    "Int4Weight",
    "Int8Linear",
    "Int8Weight",
    "LayerPlan",
    "QuantEmbedding",
    "Variant",
    "calibrate_input_scales",
    "dequantize_int4",
    "dequantize_int8",
    "kernel_status",
    "load_quantized_state",
    "pack_int4",
    "packed_int4_shapes",
    "quantization_plan",
    "quantize_int4",
    "quantize_int8",
    "quantize_model",
    "unpack_int4",
    "weight_bytes",
]
