"""Storage-word arithmetic shared by the lossless codecs: wrapping differences, zigzag, planes.

The difference of two bit patterns as wrapping integers of the storage width, not their XOR:
a small change of a float flips a carry chain under XOR (0x3f7fffff ^ 0x3f800000 = 0x00ffffff)
but is a small integer as a difference (1), so the high planes stay zero. Zigzag folds the sign
into the low bit (0, -1, 1, -2 -> 0, 1, 2, 3) so small negative differences are small too.
Packed int4 differs nibble by nibble, mod 16, so a change in one value never carries into its
neighbour.
"""

from __future__ import annotations

import struct

import numpy as np

from fedota.delta.codecs import _zstd
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import Tensor

_RAW, _ZSTD, _ZERO = 0, 1, 2
_PLANE = struct.Struct("<BQ")
# Signed nibble (0..15 read as -8..7) -> zigzag, and back, as 256-entry tables over whole bytes.
_ZZ4 = np.array([0, 2, 4, 6, 8, 10, 12, 14, 15, 13, 11, 9, 7, 5, 3, 1], dtype=np.uint8)
_UNZZ4 = np.argsort(_ZZ4).astype(np.uint8)
_BYTES = np.arange(256, dtype=np.uint8)
_ZZ_I4 = _ZZ4[_BYTES & 15] | (_ZZ4[_BYTES >> 4] << 4)
_UNZZ_I4 = _UNZZ4[_BYTES & 15] | (_UNZZ4[_BYTES >> 4] << 4)


def words(tensor: Tensor) -> np.ndarray:
    """The storage as unsigned integers of its width (a view, no copy)."""
    return tensor.data.view(f"<u{tensor.data.itemsize}")


def difference(base: np.ndarray, target: np.ndarray, dtype: str) -> np.ndarray:
    """Zigzagged wrapping difference target - base of unsigned storage words (same width)."""
    if dtype == "I4":
        low = (target - base) & 0x0F
        high = ((target & 0xF0) - (base & 0xF0)) & 0xF0
        return _ZZ_I4[low | high]
    delta = target - base  # unsigned: wraps mod 2^bits, exactly what we want
    bits = delta.dtype.itemsize * 8
    sign = (delta.view(f"<i{delta.dtype.itemsize}") >> (bits - 1)).view(delta.dtype)
    return (delta << 1) ^ sign


def add_difference(base: np.ndarray, zigzag: np.ndarray, dtype: str) -> np.ndarray:
    """Inverse of `difference`: the target words from the base words and the zigzag words."""
    if dtype == "I4":
        delta = _UNZZ_I4[zigzag]
        return (((base & 0xF0) + (delta & 0xF0)) & 0xF0) | ((base + delta) & 0x0F)
    signed = (zigzag & 1).view(f"<i{zigzag.dtype.itemsize}")
    delta = (zigzag >> 1) ^ (-signed).view(zigzag.dtype)
    return base + delta


def pack_planes(values: np.ndarray) -> bytes:
    """Unsigned words split into byte planes (low byte first), each stored zero, raw or zstd.

    Layout: per plane a mode byte and a u64 length, then the planes' bytes in order.
    """
    width = values.dtype.itemsize
    grid = values.view(np.uint8).reshape(-1, width)
    heads, bodies = [], []
    for index in range(width):
        plane = np.ascontiguousarray(grid[:, index])
        if not plane.any():
            mode, body = _ZERO, b""
        else:
            body = _zstd.compress(plane)
            mode = _ZSTD
            if len(body) >= plane.size:
                mode, body = _RAW, plane.tobytes()
        heads.append(_PLANE.pack(mode, len(body)))
        bodies.append(body)
    return b"".join(heads + bodies)


def unpack_planes(payload: memoryview, count: int, width: int) -> np.ndarray:
    """`count` unsigned words of `width` bytes from `pack_planes` output (the whole payload).

    Raises:
        PatchFormatError: bad mode, lengths that do not add up, or a bad zstd frame.
    """
    head_size = width * _PLANE.size
    if len(payload) < head_size:
        raise PatchFormatError(f"plane table needs {head_size} bytes, payload has {len(payload)}")
    heads = [_PLANE.unpack_from(payload, i * _PLANE.size) for i in range(width)]
    if sum(length for _, length in heads) != len(payload) - head_size:
        raise PatchFormatError("plane lengths do not add up to the payload")
    grid = np.empty((count, width), dtype=np.uint8)
    position = head_size
    for index, (mode, length) in enumerate(heads):
        body = payload[position : position + length]
        position += length
        if mode == _ZERO and length == 0:
            grid[:, index] = 0
        elif mode == _RAW and length == count:
            grid[:, index] = np.frombuffer(body, np.uint8)
        elif mode == _ZSTD:
            grid[:, index] = np.frombuffer(_zstd.decompress(body, count), np.uint8)
        else:
            raise PatchFormatError(f"plane {index}: mode {mode} with {length} bytes")
    return grid.reshape(-1).view(f"<u{width}")


__all__ = ["add_difference", "difference", "pack_planes", "unpack_planes", "words"]
