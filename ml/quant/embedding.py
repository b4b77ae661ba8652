"""Quantized `nn.Embedding`: int8 with one scale per row, or int4 group-wise along each row.

A lookup touches a few rows, so rows are decoded on the fly (weight-only, no kernel needed).
"""

from __future__ import annotations

import torch
from torch import nn

from fedota.ml.quant.codec import Int4Weight, dequantize_int4, quantize_int4, quantize_int8


class QuantEmbedding(nn.Module):
    """Lookup table with int8 rows (`weight` int8 (V, D)) or packed int4 rows (uint8 (V, D/2))."""

    def __init__(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor | None = None,
        group_size: int | None = None,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        if weight.dtype not in (torch.int8, torch.uint8):
            raise ValueError(f"quantized embedding weights are int8/uint8, got {weight.dtype}")
        self.bits = 8 if weight.dtype == torch.int8 else 4
        self.num_embeddings = weight.shape[0]
        self.embedding_dim = weight.shape[1] * (1 if self.bits == 8 else 2)
        self.group_size = group_size
        self.padding_idx = padding_idx
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("weight_scale", scale.to(torch.float32).contiguous())
        self.register_buffer(
            "weight_offset", None if offset is None else offset.to(torch.float32).contiguous()
        )

    @classmethod
    def from_float(
        cls, embedding: nn.Embedding, bits: int, group_size: int = 32, *, symmetric: bool = False
    ) -> QuantEmbedding:
        """Quantize an fp32 Embedding to 8 or 4 bits.

        Raises:
            ValueError: bits other than 8/4, or (int4) a width not a multiple of the group size.
        """
        if bits == 8:
            q = quantize_int8(embedding.weight)
            return cls(q.q, q.scale, padding_idx=embedding.padding_idx)
        if bits == 4:
            w = quantize_int4(embedding.weight, group_size, symmetric=symmetric)
            return cls(w.packed, w.scale, w.offset, group_size, embedding.padding_idx)
        raise ValueError(f"embeddings quantize to 8 or 4 bits, not {bits}")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        if self.bits == 8:
            rows = self.weight[flat].to(torch.float32) * self.weight_scale[flat, None]
        else:
            offset = None if self.weight_offset is None else self.weight_offset[flat]
            assert self.group_size is not None
            rows = dequantize_int4(
                Int4Weight(self.weight[flat], self.weight_scale[flat], offset, self.group_size)
            )
        return rows.reshape(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        group = f", group {self.group_size}" if self.bits == 4 else ""
        return f"{self.num_embeddings}, {self.embedding_dim}, int{self.bits}{group}"


__all__ = ["QuantEmbedding"]
