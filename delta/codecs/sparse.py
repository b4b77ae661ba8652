"""Codec 3, sparse (lossless): only the storage words that changed.

For updates that touch few weights (a merged LoRA on some layers, a partial fine-tune, a fixed
row): the gaps between changed positions as LEB128 varints, zstd'd, then the changed words'
zigzag differences as byte planes (codec 2's layout). Applies when at most a quarter of the
words changed; past that, codec 2's zero planes cost less than positions.

Payload: changed count u64 | varint bytes u64 | zstd frame length u64 | frame | planes.
"""

from __future__ import annotations

import struct
from typing import ClassVar

import numpy as np

from fedota.delta.codecs import _planes, _zstd
from fedota.delta.codecs.base import Budget, Encoded, register
from fedota.delta.errors import PatchFormatError
from fedota.delta.tensor import STORAGE, Tensor, storage_words

_HEAD = struct.Struct("<QQQ")
MAX_FRACTION = 4  # applies when changed words <= words / MAX_FRACTION
# Evenly spread words looked at first: when more than half of them changed, more than a quarter
# of all words almost surely did, and the codec declines without comparing every word.
_PROBE = 4096
_VARINT_MAX = 10  # bytes of a LEB128 uint64


class SparseCodec:
    """Changed positions (varint gaps) and their differences."""

    codec_id: ClassVar[int] = 3
    name: ClassVar[str] = "sparse"
    lossy: ClassVar[bool] = False

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """None without a base of the same dtype and shape, or when too many words changed."""
        if base is None or (base.dtype, base.shape) != (target.dtype, target.shape):
            return None
        old, new = _planes.words(base), _planes.words(target)
        probe = slice(None, None, max(1, old.size // _PROBE))
        if 2 * np.count_nonzero(old[probe] != new[probe]) > old[probe].size:
            return None
        changed = old != new
        if np.count_nonzero(changed) * MAX_FRACTION > old.size:
            return None
        positions = np.flatnonzero(changed)
        gaps = np.diff(positions, prepend=-1) - 1
        varints = encode_varints(gaps.astype(np.uint64))
        frame = _zstd.compress(varints)
        planes = _planes.pack_planes(
            _planes.difference(old[positions], new[positions], target.dtype)
        )
        head = _HEAD.pack(positions.size, len(varints), len(frame))
        return Encoded(head + frame + planes, target)

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """The base with the listed words replaced.

        Raises:
            PatchFormatError: no matching base, or a malformed payload.
        """
        if base is None or (base.dtype, base.shape) != (dtype, shape):
            raise PatchFormatError(f"{self.name} needs a base tensor of {dtype}{list(shape)}")
        view = memoryview(payload)
        if len(view) < _HEAD.size:
            raise PatchFormatError("sparse payload shorter than its header")
        count, varint_len, frame_len = _HEAD.unpack_from(view)
        total = storage_words(dtype, shape)
        # The encoder's own invariants bound what decoding may allocate: at most a quarter of
        # the words, each gap (< total) in at most ceil(bits(total) / 7) varint bytes.
        gap_bytes = max(1, -(-total.bit_length() // 7))
        if (
            count * MAX_FRACTION > total
            or varint_len > count * gap_bytes
            or frame_len > len(view) - _HEAD.size
        ):
            raise PatchFormatError("sparse payload header out of bounds")
        frame = view[_HEAD.size : _HEAD.size + frame_len]
        gaps = decode_varints(_zstd.decompress(frame, varint_len), count)
        # Bound the sum in float64 first (it cannot wrap), then check the exact last position.
        if count and float(np.sum(gaps, dtype=np.float64)) + count > total:
            raise PatchFormatError("sparse positions run past the tensor")
        positions = np.cumsum(gaps + np.uint64(1), dtype=np.uint64) - np.uint64(1)
        if count and int(positions[-1]) >= total:
            raise PatchFormatError("sparse positions run past the tensor")
        old = _planes.words(base)
        width = STORAGE[dtype].itemsize
        diffs = _planes.unpack_planes(view[_HEAD.size + frame_len :], count, width)
        result = old.copy()
        result[positions] = _planes.add_difference(old[positions], diffs, dtype)
        return Tensor(dtype, shape, result.view(STORAGE[dtype]))


def encode_varints(values: np.ndarray) -> bytes:
    """LEB128 (7 bits per byte, low first, high bit = more follows) of uint64 values."""
    sizes = np.ones(values.size, dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += values >= np.uint64(1 << shift)
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    for index in range(int(sizes.max(initial=0))):
        live = sizes > index
        chunk = (values[live] >> np.uint64(7 * index)) & np.uint64(0x7F)
        more = np.where(sizes[live] > index + 1, 0x80, 0).astype(np.uint64)
        out[starts[live] + index] = (chunk | more).astype(np.uint8)
    return out.tobytes()


def decode_varints(data: bytes, count: int) -> np.ndarray:
    """Exactly `count` LEB128 values (uint64) filling `data`.

    Raises:
        PatchFormatError: a different count, a value longer than 10 bytes, or a cut-off value.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size != count or (raw.size and (ends.size == 0 or ends[-1] != raw.size - 1)):
        raise PatchFormatError(f"expected {count} varints in {raw.size} bytes")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if int(lengths.max()) > _VARINT_MAX:
        raise PatchFormatError("a varint is longer than 10 bytes")
    shifts = (np.arange(raw.size) - np.repeat(starts, lengths)) * 7
    parts = (raw & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
    return np.add.reduceat(parts, starts)


register(SparseCodec())

__all__ = ["SparseCodec", "decode_varints", "encode_varints"]
