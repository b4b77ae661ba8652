"""Codec 2, bitdiff-planes (lossless): zigzagged wrapping difference of the storage words, split
into byte planes, each plane zstd'd (or stored raw, or elided when all zero).

Fine-tunes move most weights by a few units in the last place, so the differences are small
integers: their high planes are nearly all zero and compress to almost nothing, and the low
planes (near noise) are stored as they are. Works for every dtype, floats and integers alike
(packed int4 nibble by nibble), whenever the base tensor has the target's dtype and shape.
"""

from __future__ import annotations

from typing import ClassVar

from fedota.delta.codecs import _planes
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import STORAGE, Tensor, storage_words


class BitdiffCodec:
    """Byte planes of the zigzag integer difference, zstd per plane."""

    codec_id: ClassVar[int] = 2
    name: ClassVar[str] = "bitdiff"
    lossy: ClassVar[bool] = False

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """The planes of target - base; None without a base of the same dtype and shape."""
        if base is None or (base.dtype, base.shape) != (target.dtype, target.shape):
            return None
        zigzag = _planes.difference(_planes.words(base), _planes.words(target), target.dtype)
        return Encoded(_planes.pack_planes(zigzag), target)

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """Base words plus the decoded difference.

        Raises:
            PatchFormatError: no matching base, or a malformed payload.
        """
        if base is None or (base.dtype, base.shape) != (dtype, shape):
            raise PatchFormatError(f"{self.name} needs a base tensor of {dtype}{list(shape)}")
        width = STORAGE[dtype].itemsize
        zigzag = _planes.unpack_planes(memoryview(payload), storage_words(dtype, shape), width)
        result = _planes.add_difference(_planes.words(base), zigzag, dtype)
        return Tensor(dtype, shape, result.view(STORAGE[dtype]))


register(BitdiffCodec())

__all__ = ["BitdiffCodec"]
