"""What trains on a frozen (quantized) base: LoRA adapters, or a chosen subset of layers.

    names = attach_lora(model, LoRAConfig(rank=4))   # wraps Linear / Int8Linear / Int4Linear
    ...train: only the adapters have requires_grad...
    adapters = trainable_state(model)                # {"layers.0.lora_a": ..., ...}
    merged = merge_lora(model)                       # new module, adapters folded into fp32

LoRA (Hu et al. 2021): y = base(x) + (alpha / r) x A^T B^T with A (r, in) and B (out, r); B
starts at zero, so an attached model computes exactly what its base does. A is drawn from a
generator seeded by `LoRAConfig.seed` in module-name order, so the coordinator and every device
build the same starting adapters from the same architecture (a federated round starts from
them). The base stays as it is, int8 or int4 in memory: the adapter's backward pass
dequantizes one layer's weight at a time to pass gradients on (`_FrozenQuantLinear`) and keeps
nothing for it, so training holds the quantized weights plus the adapters, their gradients and
optimizer state, and activations.

Why not `peft`: it knows torch's and bitsandbytes' layers, not fedota's `Int8Linear` /
`Int4Linear` (custom layers need its experimental dispatcher), and it pulls `transformers` and
`accelerate` onto the device; the adapter itself is the forty lines below.

`attach_lora` and `unfreeze_layers` change the model they are given (documented exception to
returning new values): a device cannot afford a second copy of its model to train.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedota.ml.quant import Int4Linear, Int8Linear, dequantize_int4, dequantize_int8

LINEAR_TYPES = (nn.Linear, Int8Linear, Int4Linear)


@dataclass(frozen=True)
class LoRAConfig:
    """Adapters' rank, scale (alpha / rank), target layers (fnmatch over module names) and seed.

    Raises:
        ValueError: rank < 1, alpha not positive, or no target patterns.
    """

    rank: int = 4
    alpha: float = 8.0
    targets: tuple[str, ...] = ("*",)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive int, got {self.rank!r}")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target pattern")


@dataclass(frozen=True)
class LayerSelection:
    """Train these layers themselves (fnmatch patterns over module names) instead of adapters.

    Raises:
        ValueError: no pattern.
    """

    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.patterns or not all(self.patterns):
            raise ValueError("a layer selection needs at least one non-empty pattern")


Trainable = LoRAConfig | LayerSelection


def parse_trainable(text: str) -> Trainable:
    """An operator's choice of what trains: `lora:RANK` (adapters on every linear layer) or
    `layers:PATTERN[,PATTERN...]` (those layers' own weights, fnmatch over module names).

    Raises:
        ValueError: anything else, saying what is accepted.
    """
    kind, _, value = text.strip().partition(":")
    if kind == "lora":
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"trainable lora:RANK needs a rank of at least 1, got {text!r}")
        return LoRAConfig(rank=int(value), alpha=2.0 * int(value))
    if kind == "layers":
        patterns = tuple(p.strip() for p in value.split(","))
        if not value or not all(patterns):
            raise ValueError(f"trainable layers: needs comma-separated patterns, got {text!r}")
        return LayerSelection(patterns)
    raise ValueError(f"trainable must be lora:RANK or layers:PATTERN[,PATTERN...], got {text!r}")


def describe_trainable(trainable: Trainable) -> str:
    """The `parse_trainable` text of a choice (LoRA's alpha and targets beyond it unsaid)."""
    if isinstance(trainable, LoRAConfig):
        return f"lora:{trainable.rank}"
    return "layers:" + ",".join(trainable.patterns)


def make_trainable(model: nn.Module, trainable: Trainable) -> list[str]:
    """Attach adapters or unfreeze layers (in place); the trainable parameters' names.

    Raises:
        ValueError: nothing in the model matches.
    """
    if isinstance(trainable, LoRAConfig):
        attach_lora(model, trainable)
        return [name for name, p in model.named_parameters() if p.requires_grad]
    return unfreeze_layers(model, trainable.patterns)


def _effective_weight(base: nn.Module) -> torch.Tensor:
    """The fp32 (out, in) matrix a frozen linear layer multiplies its input by."""
    if isinstance(base, Int8Linear):
        weight = dequantize_int8(base.weight, base.weight_scale)
    elif isinstance(base, Int4Linear):
        weight = dequantize_int4(base.int4_weight)
    else:
        return base.weight.detach().float()
    if base.input_scale is not None:
        weight = weight * base.input_scale[None, :]
    return weight


class _FrozenQuantLinear(torch.autograd.Function):
    """A frozen quantized layer in a graph: forward on its own kernels, backward dx = dy W.

    Nothing is saved for backward but the module itself; the weight is dequantized there.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        ctx.base = base
        with torch.no_grad():
            return base(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight = _effective_weight(ctx.base)
        return (grad.reshape(-1, grad.shape[-1]) @ weight).reshape(*grad.shape[:-1], -1), None


def frozen_linear(base: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """base(x) for a frozen linear layer, with gradients to x when x needs them."""
    if isinstance(base, Int8Linear | Int4Linear) and x.requires_grad and torch.is_grad_enabled():
        out: torch.Tensor = _FrozenQuantLinear.apply(x, base)
        return out
    return base(x)


class LoRALinear(nn.Module):
    """A frozen linear layer (fp32, int8 or int4) plus a trainable low-rank update."""

    def __init__(
        self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"LoRA wraps Linear, Int8Linear or Int4Linear, not {type(base)}")
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.scaling = alpha / rank
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform(a=sqrt(5)), as nn.Linear
        a = (torch.rand(rank, self.in_features, generator=generator) * 2 - 1) * bound
        self.lora_a = nn.Parameter(a)
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapter = (x @ self.lora_a.T) @ self.lora_b.T
        return frozen_linear(self.base, x) + self.scaling * adapter

    def merged_weight(self) -> torch.Tensor:
        """The fp32 weight that computes what base plus adapter compute."""
        with torch.no_grad():
            delta = self.scaling * (self.lora_b @ self.lora_a)
            return _effective_weight(self.base) + delta

    def extra_repr(self) -> str:
        return f"rank={self.lora_a.shape[0]}, scaling={self.scaling:g}"


def attach_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Wrap the target linear layers of `model` in adapters and freeze everything else.

    Changes `model` in place (see the module note); returns the wrapped modules' names.

    Raises:
        ValueError: no linear layer matches the targets, or the model already has adapters.
    """
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters")
    names = [
        name
        for name, module in model.named_modules()
        if name
        and isinstance(module, LINEAR_TYPES)
        and any(fnmatch.fnmatchcase(name, p) for p in config.targets)
    ]
    if not names:
        raise ValueError(f"no linear layer matches the LoRA targets {list(config.targets)}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    for name in sorted(names):
        adapter = LoRALinear(model.get_submodule(name), config.rank, config.alpha, generator)
        _replace(model, name, adapter)
    return sorted(names)


def unfreeze_layers(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Make the layers matching `patterns` trainable (quantized ones become fp32 Linear, from
    their dequantized weights) and freeze the rest. Changes `model` in place.

    Returns the trainable parameters' names.

    Raises:
        ValueError: no module matches.
    """
    matched = [
        name
        for name, module in model.named_modules()
        if name
        and any(fnmatch.fnmatchcase(name, p) for p in patterns)
        and (isinstance(module, LINEAR_TYPES) or any(module.parameters(recurse=False)))
    ]
    if not matched:
        raise ValueError(f"no layer matches {list(patterns)}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in matched:
        module = model.get_submodule(name)
        if isinstance(module, Int8Linear | Int4Linear):
            module = _to_float_linear(module, _effective_weight(module))
            _replace(model, name, module)
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters that train (adapters, or the unfrozen layers)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Set the trainable parameters from `state` (tensors or numpy arrays), all of them.

    Raises:
        ValueError: a name is missing or unknown, or a shape differs.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"trainable state mismatch: missing {missing[:3]}, unknown {extra[:3]}")
    with torch.no_grad():
        for name, parameter in params.items():
            value = torch.as_tensor(state[name], dtype=parameter.dtype)
            if value.shape != parameter.shape:
                raise ValueError(
                    f"{name} has shape {list(value.shape)}, the model's is {list(parameter.shape)}"
                )
            parameter.copy_(value)


def merge_lora(model: nn.Module) -> nn.Module:
    """A new module with every adapter folded into an fp32 Linear (W + alpha/r B A).

    The merged layer computes what base plus adapter computed (up to the base kernel's own
    rounding: int8 layers quantize activations, the merged fp32 layer does not).
    """
    merged = copy.deepcopy(model)
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            _replace(merged, name, _to_float_linear(module.base, module.merged_weight()))
    return merged


def _to_float_linear(base: nn.Module, weight: torch.Tensor) -> nn.Linear:
    bias = getattr(base, "bias", None)
    linear = nn.Linear(base.in_features, base.out_features, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


__all__ = [
    "LINEAR_TYPES",
    "LayerSelection",
    "LoRAConfig",
    "LoRALinear",
    "Trainable",
    "attach_lora",
    "describe_trainable",
    "frozen_linear",
    "load_trainable_state",
    "make_trainable",
    "merge_lora",
    "parse_trainable",
    "trainable_state",
    "unfreeze_layers",
]
