"""Quantized drop-in replacements for `nn.Linear`: int8 per-channel and int4 group-wise.

Both hold their weights quantized in memory at run time and keep a plain state_dict
(`weight`, `weight_scale`, optional `weight_offset`, `input_scale`, `bias`) so a checkpoint
round trip rebuilds them exactly. Frozen: their weights are buffers, never trained (LoRA
adapters train on top).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedota.ml.quant import kernels
from fedota.ml.quant.codec import (
    Int4Weight,
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
)
from fedota.ml.quant.kernels import int4_linear


class Int8Linear(nn.Module):
    """y = (x * input_scale) @ (q * scale).T + bias with int8 q (N, K), fp32 scale (N,).

    Frozen (the weights are buffers); when the input needs gradients (adapters trained on top)
    the weight is dequantized per call so they flow through.

    Activations are quantized too, each row alone to 8 bits (int8 x int8 products, see
    kernels.py); without the C library the weight is dequantized per call (weight-only).
    `input_scale` (K,) is SmoothQuant's per-channel division of the input, folded into q.
    """

    def __init__(
        self,
        q: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight", q.to(torch.int8).contiguous())
        self.register_buffer("weight_scale", scale.to(torch.float32).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer(
            "input_scale", None if input_scale is None else input_scale.float().contiguous()
        )
        self._refresh()

    @classmethod
    def from_float(cls, linear: nn.Linear, input_scale: torch.Tensor | None = None) -> Int8Linear:
        """Quantize an fp32 Linear (its weight times 1/input_scale per input channel)."""
        weight = linear.weight.detach().float()
        if input_scale is not None:
            weight = weight / input_scale[None, :]
        quantized = quantize_int8(weight)
        return cls(quantized.q, quantized.scale, linear.bias, input_scale)

    def _refresh(self) -> None:
        self._rowsum = self.weight.to(torch.int32).sum(dim=1, dtype=torch.int32).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != torch.float32 or not rows.is_contiguous():
            rows = rows.to(torch.float32).contiguous()
        out = None
        if not (rows.requires_grad and torch.is_grad_enabled()):
            out = kernels.int8_linear(
                rows, self.weight, self.weight_scale, self._rowsum, self.bias, self.input_scale
            )
        if out is None:  # no kernels, or gradients must flow to the input (LoRA on top)
            if self.input_scale is not None:
                rows = rows * self.input_scale
            out = F.linear(rows, dequantize_int8(self.weight, self.weight_scale), self.bias)
        return out if len(shape) == 2 else out.reshape(*shape[:-1], self.out_features)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int8 per-channel"


class Int4Linear(nn.Module):
    """y = x @ w.T + bias with w group-wise int4, packed two per byte (see codec.py)."""

    def __init__(
        self,
        packed: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor | None,
        group_size: int,
        bias: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = packed.shape[0], packed.shape[1] * 2
        self.group_size = group_size
        self.register_buffer("weight", packed.contiguous())
        self.register_buffer("weight_scale", scale.to(torch.float32).contiguous())
        self.register_buffer(
            "weight_offset", None if offset is None else offset.to(torch.float32).contiguous()
        )
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer(
            "input_scale", None if input_scale is None else input_scale.float().contiguous()
        )

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        group_size: int = 32,
        *,
        symmetric: bool = False,
        input_scale: torch.Tensor | None = None,
    ) -> Int4Linear:
        """Quantize an fp32 Linear (its weight times 1/input_scale per input channel: scaling
        the channels with large activations up before quantizing keeps them precise, as AWQ
        does).

        Raises:
            ValueError: in_features is not a multiple of the group size.
        """
        weight = linear.weight.detach().float()
        if input_scale is not None:
            weight = weight / input_scale[None, :]
        w = quantize_int4(weight, group_size, symmetric=symmetric)
        return cls(w.packed, w.scale, w.offset, group_size, linear.bias, input_scale)

    @property
    def int4_weight(self) -> Int4Weight:
        return Int4Weight(self.weight, self.weight_scale, self.weight_offset, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        if self.input_scale is not None:
            rows = rows * self.input_scale
        if rows.requires_grad and torch.is_grad_enabled():  # gradients flow to the input
            weight = dequantize_int4(self.int4_weight)
            out = F.linear(rows, weight, self.bias)
            return out.reshape(*shape[:-1], self.out_features)
        out = int4_linear(
            rows,
            self.weight,
            self.weight_scale,
            self.weight_offset,
            self.bias,
            self.group_size,
        )
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.weight_offset is None else "asymmetric"
        return (
            f"in={self.in_features}, out={self.out_features}, int4 group {self.group_size} {kind}"
        )


__all__ = ["Int4Linear", "Int8Linear"]
