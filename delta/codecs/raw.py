"""Codecs 0 (raw) and 1 (zstd): the target's own bytes, needing no base.

The fall-backs: the only codecs for an added tensor or one whose dtype or shape changed, and
the ceiling every other codec must beat (so a patch is never larger than shipping the target).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fedota.delta.codecs import _zstd
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import STORAGE, Tensor, storage_words


class RawCodec:
    """The target's storage bytes as they are."""

    codec_id: ClassVar[int] = 0
    name: ClassVar[str] = "raw"
    lossy: ClassVar[bool] = False

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """Always applies."""
        return Encoded(target.data.tobytes(), target)

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """The payload read as storage words.

        Raises:
            PatchFormatError: the payload is not exactly the tensor's byte size.
        """
        return Tensor(dtype, shape, _words(dtype, shape, payload))


class ZstdCodec:
    """One zstd frame of the target's storage bytes."""

    codec_id: ClassVar[int] = 1
    name: ClassVar[str] = "zstd"
    lossy: ClassVar[bool] = False

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """Always applies."""
        return Encoded(_zstd.compress(target.data.view(np.uint8)), target)

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """The decompressed payload read as storage words.

        Raises:
            PatchFormatError: a bad frame, or not exactly the tensor's byte size.
        """
        size = storage_words(dtype, shape) * STORAGE[dtype].itemsize
        return Tensor(dtype, shape, _words(dtype, shape, _zstd.decompress(payload, size)))


def _words(dtype: str, shape: tuple[int, ...], data: bytes) -> np.ndarray:
    storage = STORAGE[dtype]
    size = storage_words(dtype, shape) * storage.itemsize
    if len(data) != size:
        raise PatchFormatError(f"{dtype}{list(shape)} needs {size} bytes, payload has {len(data)}")
    # A read-only view of immutable bytes: no copy (apply's speed is mostly memory traffic).
    return np.frombuffer(data, storage)


register(RawCodec())
register(ZstdCodec())

__all__ = ["RawCodec", "ZstdCodec"]
