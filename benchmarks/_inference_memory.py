"""Memory accounting: the bytes a model's tensors hold, the int4 allowance, and process RSS.

`weight_bytes` (fedota.ml.quant) counts the state_dict. The walk here counts every tensor a
module holds at run time, including plain attributes outside the state_dict (caches such as
Int8Linear's row sums), so a layer that kept a dequantized copy of its weight would show it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedota.ml.quant import Int4Linear, QuantEmbedding


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    found = [t for t in module._parameters.values() if t is not None]
    found += [t for t in module._buffers.values() if t is not None]
    found += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    return found


def held_tensor_bytes(model: nn.Module, *, recurse: bool = True) -> int:
    """Bytes of every distinct tensor storage the model (or just this module) holds."""
    seen: dict[int, int] = {}
    modules = model.modules() if recurse else [model]
    for module in modules:
        for tensor in _own_tensors(module):
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _is_int4(module: nn.Module) -> bool:
    return isinstance(module, Int4Linear) or (
        isinstance(module, QuantEmbedding) and module.bits == 4
    )


def int4_allowance(model: nn.Module) -> dict[str, Any]:
    """The int4 layers' held bytes against 1/8 of their fp32 weights plus their scales.

    `allowed_bytes`: per int4 layer, its weight's fp32 bytes / 8 plus its other buffers (group
    scales and zero points; a bias or input scale where the layer has one). `held_bytes`: every
    tensor those layers hold right now (`held_tensor_bytes`).
    """
    layers = [m for m in model.modules() if _is_int4(m)]
    fp32 = allowed = held = scales = 0
    for layer in layers:
        rows, packed_cols = layer.weight.shape
        weight_fp32 = rows * packed_cols * 2 * 4
        others = sum(b.nbytes for n, b in layer._buffers.items() if n != "weight" and b is not None)
        fp32 += weight_fp32
        scales += others
        allowed += weight_fp32 // 8 + others
        held += held_tensor_bytes(layer, recurse=False)
    return {
        "int4_layers": len(layers),
        "fp32_weight_bytes": fp32,
        "scale_bytes": scales,
        "allowed_bytes": allowed,
        "held_bytes": held,
    }


def rss_mb() -> float | None:
    """This process's resident set size now (VmRSS), decimal MB; None off Linux (the peak is
    `_common.peak_rss_bytes`)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except OSError:
        return None
    return None


__all__ = ["held_tensor_bytes", "int4_allowance", "rss_mb"]
