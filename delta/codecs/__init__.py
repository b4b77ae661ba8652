"""Codecs for one tensor's change; importing this package registers them all.

Ids (one byte in the patch, never reused): 0 raw, 1 zstd, 2 bitdiff-planes, 3 sparse,
4 diff-ans (lossless, context-modelled), 5 quant-ans and 6 quant-ctx (lossy; superseded,
still decoded), 7 quant-tcq (lossy, dependent quantization).
"""

from fedota.delta.codecs import bitdiff, lossless_ans, quantized, raw, sparse
from fedota.delta.codecs.base import Budget, Codec, Encoded, by_id, register, registered

__all__ = [
    "Budget",
    "Codec",
    "Encoded",
    "bitdiff",
    "by_id",
    "lossless_ans",
    "quantized",
    "raw",
    "register",
    "registered",
    "sparse",
]
