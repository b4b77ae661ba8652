"""Weight codecs as pure tensor functions: int8 per output channel, int4 group-wise, nibble packing.

int8: symmetric, one fp32 scale per output row, `w ~ scale[n] * q[n, k]`, q in [-127, 127].
int4: one fp32 scale per group of `group_size` consecutive inputs of a row. Symmetric groups map
[-amax, amax] to [-7, 7]; asymmetric groups map [min, max] to the 16 levels [-8, 7] and keep a
float offset, `w ~ scale * q + offset`. Either way every element is within scale / 2 of its
weight. Packed int4 is fedota.delta's `I4`: two signed nibbles per byte, the even column in the
low nibble, so a packed row of K values is K / 2 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INT4_GROUP_SIZES = (32, 64, 128)
_TINY = 1e-12


@dataclass(frozen=True)
class Int8Weight:
    """An int8 per-channel weight: `q` (N, K) int8 and `scale` (N,) fp32."""

    q: torch.Tensor
    scale: torch.Tensor


@dataclass(frozen=True)
class Int4Weight:
    """A group-wise int4 weight: `packed` (N, K/2) uint8, `scale` and `offset` (N, K/G) fp32.

    `offset` is None for symmetric groups.
    """

    packed: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor | None
    group_size: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.packed.shape[1] * 2)


def quantize_int8(weight: torch.Tensor) -> Int8Weight:
    """Symmetric int8 with one scale per row (output channel).

    Raises:
        ValueError: the weight is not a 2-D float tensor.
    """
    w = _matrix(weight)
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=_TINY)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q.contiguous(), scale.contiguous())


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The fp32 weight an int8 per-channel weight stands for."""
    return q.to(torch.float32) * scale.to(torch.float32)[:, None]


def quantize_int4(
    weight: torch.Tensor, group_size: int = 32, *, symmetric: bool = False
) -> Int4Weight:
    """Group-wise int4 along each row, packed two per byte.

    Raises:
        ValueError: not a 2-D float tensor, a group size other than 32/64/128, or a row length
            that is not a multiple of the group size.
    """
    w = _matrix(weight)
    n, k = w.shape
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"int4 group size must be one of {INT4_GROUP_SIZES}, got {group_size}")
    if k % group_size:
        raise ValueError(f"int4 needs rows a multiple of the group size {group_size}, got {k}")
    groups = w.reshape(n, k // group_size, group_size)
    if symmetric:
        scale = (groups.abs().amax(dim=2) / 7.0).clamp(min=_TINY)
        q = torch.round(groups / scale[..., None]).clamp(-7, 7)
        offset = None
    else:
        low, high = groups.amin(dim=2), groups.amax(dim=2)
        scale = ((high - low) / 15.0).clamp(min=_TINY)
        # Level -8 sits on the group's minimum: w = scale * q + offset with offset = low + 8 scale.
        q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15) - 8
        offset = (low + 8.0 * scale).contiguous()
    packed = pack_int4(q.reshape(n, k).to(torch.int8))
    return Int4Weight(packed, scale.contiguous(), offset, group_size)


def dequantize_int4(weight: Int4Weight) -> torch.Tensor:
    """The fp32 weight a packed int4 weight stands for."""
    n, k = weight.shape
    q = unpack_int4(weight.packed).to(torch.float32).reshape(n, -1, weight.group_size)
    w = q * weight.scale[..., None]
    if weight.offset is not None:
        w = w + weight.offset[..., None]
    return w.reshape(n, k)


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Pack signed 4-bit values (int8 in [-8, 7], last dim even) two per byte, low nibble first.

    Raises:
        ValueError: odd last dimension, a non-integer dtype or a value out of [-8, 7].
    """
    if values.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64):
        raise ValueError(f"int4 values must be an integer tensor, got {values.dtype}")
    if values.ndim == 0 or values.shape[-1] % 2:
        raise ValueError(f"int4 packing needs an even last dimension, got {tuple(values.shape)}")
    if values.numel() and (values.min() < -8 or values.max() > 7):
        raise ValueError("int4 values must lie in [-8, 7]")
    nibbles = (values.to(torch.int16) & 0xF).to(torch.uint8)
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The signed values of packed int4 bytes as int8 (last dimension doubled).

    Raises:
        ValueError: the tensor is not uint8.
    """
    if packed.dtype != torch.uint8:
        raise ValueError(f"packed int4 must be uint8, got {packed.dtype}")
    signed = packed.view(torch.int8)
    low = (signed << 4) >> 4  # arithmetic shift sign-extends the low nibble
    high = signed >> 4
    return torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    if weight.ndim != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a 2-D float weight, got {weight.dim()}-D {weight.dtype}")
    return weight.detach().to(torch.float32)


__all__ = [
    "INT4_GROUP_SIZES",
    "Int4Weight",
    "Int8Weight",
    "dequantize_int4",
    "dequantize_int8",
    "pack_int4",
    "quantize_int4",
    "quantize_int8",
    "unpack_int4",
]
