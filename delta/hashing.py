"""A model's identity: SHA-256 over its canonical tensors, whatever the file layout.

DESIGN.md "Formats and contracts": two equal models hash equally. The canonical stream is a
domain tag, then, for every tensor in sorted name order (code point order, which is also the
order of the UTF-8 bytes), four length-prefixed fields: the UTF-8 name, the dtype name (ASCII,
e.g. `BF16`), the shape (rank, then each dimension) and the storage bytes (little-endian; packed
int4 as its packed bytes). Every integer is an unsigned 64-bit little-endian. The prefixes make
the stream unambiguous, so no two different models give the same stream. Tensor bytes are fed to
SHA-256 straight from their buffers (an mmap'd file stays on disk), never concatenated.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

import numpy as np

from fedota.delta.tensor import Tensor

DOMAIN = b"fedota-model-v1\x00"
_U64 = struct.Struct("<Q")


class ModelHasher:
    """The model hash, computed one tensor at a time (for streaming apply).

    Tensors must be added in strictly increasing name order; `hexdigest` gives the hash.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256(DOMAIN)
        self._last: str | None = None

    def add(self, name: str, tensor: Tensor) -> None:
        """Feed one tensor.

        Raises:
            ValueError: `name` does not sort after the previous one.
        """
        if self._last is not None and name <= self._last:
            raise ValueError(f"tensor {name!r} added after {self._last!r}: names must increase")
        self._last = name
        sha = self._sha
        for field in (name.encode("utf-8"), tensor.dtype.encode("ascii")):
            sha.update(_U64.pack(len(field)))
            sha.update(field)
        sha.update(_U64.pack(len(tensor.shape)))
        sha.update(b"".join(_U64.pack(dim) for dim in tensor.shape))
        sha.update(_U64.pack(tensor.nbytes))
        # hashlib takes any contiguous buffer and drops the GIL on large ones.
        sha.update(np.ascontiguousarray(tensor.data).view(np.uint8))

    def digest(self) -> bytes:
        """The 32-byte hash of what was added so far."""
        return self._sha.digest()

    def hexdigest(self) -> str:
        """The hash as 64 lower-case hex digits."""
        return self._sha.hexdigest()


def model_hash(tensors: Mapping[str, Tensor]) -> str:
    """The hex SHA-256 identity of a model (name -> Tensor), independent of file layout."""
    hasher = ModelHasher()
    for name in sorted(tensors):
        hasher.add(name, tensors[name])
    return hasher.hexdigest()


__all__ = ["DOMAIN", "ModelHasher", "model_hash"]
