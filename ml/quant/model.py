"""Quantize a whole model: plan per layer, build a new module, and rebuild one from its tensors.

    plan = quantization_plan(model, "int4")          # name -> LayerPlan (kind, error, reason)
    small = quantize_model(model, "int4")             # a new module; `model` is untouched
    tensors = small.state_dict()                      # int8 / packed uint8 weights + scales
    again = load_quantized_state(ByteLM(config), tensors)   # same module, same outputs

Linear and Embedding layers are quantized; everything else (norms, positions) stays fp32, and
so does any layer matched by `keep_fp32` (fnmatch patterns over module names; by default the
model's own `QUANT_KEEP_FP32`) or whose relative weight error ||W - Q(W)|| / ||W|| exceeds
`max_relative_error`.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from fedota.ml.quant.codec import (
    INT4_GROUP_SIZES,
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
)
from fedota.ml.quant.embedding import QuantEmbedding
from fedota.ml.quant.linear import Int4Linear, Int8Linear

Variant = Literal["int8", "int4"]
VARIANTS = ("int8", "int4")


@dataclass(frozen=True)
class LayerPlan:
    """What happens to one layer: kind is "int8", "int4" or "fp32"; error is the relative one."""

    kind: str
    relative_error: float
    reason: str = ""


def quantization_plan(
    model: nn.Module,
    variant: Variant,
    *,
    group_size: int = 32,
    symmetric: bool = False,
    keep_fp32: Sequence[str] | None = None,
    max_relative_error: float | None = None,
    input_scales: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, LayerPlan]:
    """The per-layer decision `quantize_model` would take, with each layer's weight error.

    Raises:
        ValueError: an unknown variant or group size.
    """
    _check(variant, group_size)
    patterns = tuple(getattr(model, "QUANT_KEEP_FP32", ()) if keep_fp32 is None else keep_fp32)
    plan: dict[str, LayerPlan] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.Embedding):
            continue
        weight = module.weight.detach().float()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            plan[name] = LayerPlan("fp32", 0.0, "kept fp32 by keep_fp32")
            continue
        if variant == "int4" and weight.shape[1] % group_size:
            plan[name] = LayerPlan(
                "fp32", 0.0, f"width {weight.shape[1]} is not a multiple of {group_size}"
            )
            continue
        scale = None if input_scales is None else input_scales.get(name)
        error = _relative_error(weight, variant, group_size, symmetric, scale)
        if max_relative_error is not None and error > max_relative_error:
            plan[name] = LayerPlan(
                "fp32", error, f"error {error:.4f} exceeds {max_relative_error:.4f}"
            )
            continue
        plan[name] = LayerPlan(variant, error)
    return plan


def quantize_model(
    model: nn.Module,
    variant: Variant,
    *,
    group_size: int = 32,
    symmetric: bool = False,
    keep_fp32: Sequence[str] | None = None,
    max_relative_error: float | None = None,
    input_scales: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A new module with Linear/Embedding layers quantized per `quantization_plan`.

    `input_scales` maps Linear names to per-input-channel scales from
    `smooth.calibrate_input_scales` (SmoothQuant for int8's activations, activation-aware
    weight scaling for int4). The input model is never modified.

    Raises:
        ValueError: an unknown variant or group size.
    """
    plan = quantization_plan(
        model,
        variant,
        group_size=group_size,
        symmetric=symmetric,
        keep_fp32=keep_fp32,
        max_relative_error=max_relative_error,
        input_scales=input_scales,
    )
    quantized = copy.deepcopy(model)
    for name, layer in plan.items():
        if layer.kind == "fp32":
            continue
        module = quantized.get_submodule(name)
        if isinstance(module, nn.Embedding):
            new: nn.Module = QuantEmbedding.from_float(
                module, 8 if variant == "int8" else 4, group_size, symmetric=symmetric
            )
        elif variant == "int8":
            scale = None if input_scales is None else input_scales.get(name)
            new = Int8Linear.from_float(module, scale)
        else:
            scale = None if input_scales is None else input_scales.get(name)
            new = Int4Linear.from_float(module, group_size, symmetric=symmetric, input_scale=scale)
        _replace(quantized, name, new)
    return quantized.eval()


def load_quantized_state(template: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A new module shaped like `template` whose layers are rebuilt from a quantized state_dict.

    A Linear/Embedding whose `<name>.weight_scale` is in `state` becomes the quantized layer its
    weight's dtype names (int8 -> 8 bits, uint8 -> packed int4); everything else loads as fp32.

    Raises:
        ValueError: a quantized layer's tensors do not fit the template (dtype, shape, group),
            or tensors are missing or left over.
    """
    model = copy.deepcopy(template)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear | nn.Embedding):
            continue
        prefix = f"{name}."
        if prefix + "weight_scale" not in state:
            continue
        _replace(model, name, _rebuild(name, module, state, prefix))
    result = model.load_state_dict(dict(state), strict=False)
    problems = [f"missing {k}" for k in result.missing_keys]
    problems += [f"unexpected {k}" for k in result.unexpected_keys]
    if problems:
        raise ValueError(f"state does not fit the model: {', '.join(problems[:5])}")
    return model.eval()


def packed_int4_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Names of the state_dict's packed int4 tensors and their logical (unpacked) shapes."""
    shapes: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, Int4Linear):
            shapes[f"{name}.weight"] = (module.out_features, module.in_features)
        elif isinstance(module, QuantEmbedding) and module.bits == 4:
            shapes[f"{name}.weight"] = (module.num_embeddings, module.embedding_dim)
    return shapes


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every tensor the model holds as state (weights, scales, norms, biases)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _rebuild(
    name: str, module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str
) -> nn.Module:
    weight, scale = state.get(prefix + "weight"), state[prefix + "weight_scale"]
    offset = state.get(prefix + "weight_offset")
    rows, width = module.weight.shape
    if weight is None:
        raise ValueError(f"{name}: weight_scale without weight")
    if getattr(module, "bias", None) is not None and prefix + "bias" not in state:
        raise ValueError(f"state does not fit the model: missing {prefix}bias")
    if weight.dtype == torch.int8:
        if tuple(weight.shape) != (rows, width) or tuple(scale.shape) != (rows,):
            raise ValueError(
                f"{name}: int8 weight {list(weight.shape)} / scales {list(scale.shape)} do not "
                f"fit {[rows, width]}"
            )
        if isinstance(module, nn.Embedding):
            return QuantEmbedding(weight, scale, padding_idx=module.padding_idx)
        return Int8Linear(
            weight, scale, state.get(prefix + "bias"), state.get(prefix + "input_scale")
        )
    if weight.dtype == torch.uint8:
        groups = scale.shape[1] if scale.ndim == 2 else 0
        group = width // groups if groups else 0
        if (
            tuple(weight.shape) != (rows, width // 2)
            or group not in INT4_GROUP_SIZES
            or tuple(scale.shape) != (rows, width // group)
            or (offset is not None and offset.shape != scale.shape)
        ):
            raise ValueError(
                f"{name}: int4 weight {list(weight.shape)} / scales {list(scale.shape)} do not "
                f"fit {[rows, width]} with a group size in {INT4_GROUP_SIZES}"
            )
        if isinstance(module, nn.Embedding):
            return QuantEmbedding(weight, scale, offset, group, module.padding_idx)
        return Int4Linear(
            weight,
            scale,
            offset,
            group,
            state.get(prefix + "bias"),
            state.get(prefix + "input_scale"),
        )
    raise ValueError(f"{name}: a quantized weight must be int8 or uint8, got {weight.dtype}")


def _relative_error(
    weight: torch.Tensor,
    variant: str,
    group_size: int,
    symmetric: bool,
    input_scale: torch.Tensor | None,
) -> float:
    if input_scale is not None:
        weight = weight / input_scale[None, :]
    if variant == "int8":
        q = quantize_int8(weight)
        restored = dequantize_int8(q.q, q.scale)
    else:
        restored = dequantize_int4(quantize_int4(weight, group_size, symmetric=symmetric))
    norm = weight.norm()
    return float((weight - restored).norm() / norm) if norm > 0 else 0.0


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _check(variant: str, group_size: int) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group size must be one of {INT4_GROUP_SIZES}, got {group_size}")


__all__ = [
    "VARIANTS",
    "LayerPlan",
    "Variant",
    "load_quantized_state",
    "packed_int4_shapes",
    "quantization_plan",
    "quantize_model",
    "weight_bytes",
]
