"""Byte and bit fields of codec payloads: a bounded reader, a writer, LEB128 varints and packed
raw bit fields, all vectorised with numpy.

Every read checks its length against the bytes that remain and every value against a caller's
bound before anything is allocated from it, so a hostile payload raises PatchFormatError and
never an IndexError, a MemoryError or a huge allocation.
"""

from __future__ import annotations

import struct

import numpy as np

from fedota.delta.errors import PatchFormatError, PatchTruncated

# Raw bit fields are packed in chunks of this many values, each padded to whole 32-bit words,
# so packing and unpacking need only chunk-sized temporaries.
BIT_CHUNK = 1 << 20
_MAX_VARINT_BYTES = 9  # 63 bits


def _varint_bytes(values: np.ndarray) -> np.ndarray:
    """LEB128 length of each value in [0, 2^52) (int64 array)."""
    width = np.frexp(values.astype(np.float64))[1]  # bit length, exact below 2^53
    return np.maximum(1, (width + 6) // 7).astype(np.int64)


class Writer:
    """Appends fields to a growing payload."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self._parts.append(struct.pack("<B", value))

    def f32(self, value: float) -> None:
        self._parts.append(struct.pack("<f", value))

    def f64(self, value: float) -> None:
        self._parts.append(struct.pack("<d", value))

    def raw(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def block(self, data: bytes) -> None:
        """A varint length, then the bytes."""
        self.varint(len(data))
        self.raw(data)

    def varint(self, value: int) -> None:
        if not 0 <= value < 1 << 52:
            raise ValueError("varints must lie in [0, 2^52)")
        data = bytearray()
        while value >= 0x80:
            data.append((value & 0x7F) | 0x80)
            value >>= 7
        data.append(value)
        self._parts.append(bytes(data))

    def svarint(self, value: int) -> None:
        """A signed int as the varint of its zigzag (0, -1, 1 -> 0, 1, 2)."""
        self.varint(2 * value if value >= 0 else -2 * value - 1)

    def varints(self, values: np.ndarray) -> None:
        """Many non-negative ints as LEB128, vectorised."""
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        if values.size and (int(values.min()) < 0 or int(values.max()) >= 1 << 52):
            raise ValueError("varints must lie in [0, 2^52)")
        sizes = _varint_bytes(values)
        starts = np.cumsum(sizes) - sizes
        out = np.zeros(int(sizes.sum()), dtype=np.uint8)
        for k in range(int(sizes.max()) if sizes.size else 0):
            live = sizes > k
            group = (values[live] >> (7 * k)) & 0x7F
            more = np.where(sizes[live] > k + 1, 0x80, 0)
            out[starts[live] + k] = group | more
        self._parts.append(out.tobytes())

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads fields from a payload, checking every length and bound."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = memoryview(data).cast("B")
        self._pos = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._pos

    def take(self, count: int) -> memoryview:
        """The next `count` bytes.

        Raises:
            PatchTruncated: fewer remain.
        """
        if count < 0 or count > self.left:
            raise PatchTruncated(f"field of {count} bytes, {self.left} left in the payload")
        view = self._data[self._pos : self._pos + count]
        self._pos += count
        return view

    def u8(self) -> int:
        return int(self.take(1)[0])

    def f32(self) -> float:
        return float(struct.unpack("<f", self.take(4))[0])

    def f64(self) -> float:
        return float(struct.unpack("<d", self.take(8))[0])

    def block(self, limit: int) -> memoryview:
        """A varint length (at most `limit`) and that many bytes."""
        return self.take(self.varint(limit))

    def varint(self, limit: int) -> int:
        """One varint no larger than `limit`.

        Raises:
            PatchFormatError: too long, too large, or the payload ends inside it.
        """
        value = 0
        for k in range(_MAX_VARINT_BYTES):
            if self._pos >= len(self._data):
                raise PatchTruncated("payload ends inside a varint")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << (7 * k)
            if byte < 0x80:
                if value > limit:
                    raise PatchFormatError(f"field {value} exceeds its bound {limit}")
                return value
        raise PatchFormatError("varint longer than 9 bytes")

    def rest(self) -> memoryview:
        """The bytes not read yet, without consuming them (see `skip`)."""
        return self._data[self._pos :]

    def skip(self, count: int) -> None:
        """Consume `count` bytes another parser read from `rest`."""
        self.take(count)

    def svarint(self, low: int, high: int) -> int:
        """A signed varint (zigzag) within [low, high]."""
        raw = self.varint(2 * max(abs(low), abs(high)) + 1)
        value = raw >> 1 if raw % 2 == 0 else -(raw >> 1) - 1
        if not low <= value <= high:
            raise PatchFormatError(f"field {value} outside [{low}, {high}]")
        return value

    def varints(self, count: int, limit: int) -> np.ndarray:
        """`count` varints, each at most `limit`, as int64.

        Raises:
            PatchFormatError: a value over `limit`, a varint over 9 bytes, or the payload ends.
        """
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        window = np.frombuffer(
            self._data[self._pos : self._pos + min(self.left, _MAX_VARINT_BYTES * count)],
            dtype=np.uint8,
        )
        ends = np.flatnonzero(window < 0x80)[:count]
        if ends.size < count:
            raise PatchTruncated(f"payload ends inside {count} varints")
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts + 1
        if int(lengths.max()) > _MAX_VARINT_BYTES:
            raise PatchFormatError("varint longer than 9 bytes")
        values = np.zeros(count, dtype=np.int64)
        for k in range(int(lengths.max())):
            live = lengths > k
            values[live] |= (window[starts[live] + k].astype(np.int64) & 0x7F) << (7 * k)
        if int(values.max()) > limit:
            raise PatchFormatError(f"field {int(values.max())} exceeds its bound {limit}")
        self._pos += int(ends[-1]) + 1
        return values

    def finish(self) -> None:
        """Raises PatchFormatError if bytes are left over."""
        if self.left:
            raise PatchFormatError(f"{self.left} bytes left over after the payload's last field")


def packed_size(nbits: np.ndarray) -> int:
    """Bytes `pack_bits` produces for fields of these widths."""
    total = 0
    for start in range(0, nbits.size, BIT_CHUNK):
        total += 4 * ((int(nbits[start : start + BIT_CHUNK].sum()) + 31) // 32)
    return total


def pack_bits(values: np.ndarray, nbits: np.ndarray) -> bytes:
    """The low `nbits[i]` (<= 32) bits of each `values[i]`, LSB first, chunk by chunk."""
    out: list[bytes] = []
    for start in range(0, nbits.size, BIT_CHUNK):
        width = nbits[start : start + BIT_CHUNK].astype(np.int64)
        value = values[start : start + BIT_CHUNK].astype(np.uint64)
        offset = np.cumsum(width) - width
        n_words = (int(width.sum()) + 31) // 32
        word = offset >> 5
        shifted = value << (offset & 31).astype(np.uint64)
        # Fields never overlap, so the sum of each word's pieces is their OR; float64 sums of
        # values below 2^32 are exact.
        # A zero-width field may start at the very end (word == n_words): room for it too.
        low = np.bincount(word, (shifted & 0xFFFFFFFF).astype(np.float64), minlength=n_words + 2)
        high = np.bincount(word + 1, (shifted >> 32).astype(np.float64), minlength=n_words + 2)
        out.append((low + high)[:n_words].astype("<u4").tobytes())
    return b"".join(out)


def unpack_bits(src: Reader, nbits: np.ndarray) -> np.ndarray:
    """Read fields of widths `nbits` (<= 32 each) written by `pack_bits`, as uint64.

    Raises:
        PatchTruncated: the payload holds fewer bits than the widths need.
    """
    out = np.empty(nbits.size, dtype=np.uint64)
    for start in range(0, nbits.size, BIT_CHUNK):
        width = nbits[start : start + BIT_CHUNK].astype(np.int64)
        n_words = (int(width.sum()) + 31) // 32
        words = np.zeros(n_words + 2, dtype=np.uint64)
        words[:n_words] = np.frombuffer(src.take(4 * n_words), "<u4")
        offset = np.cumsum(width) - width
        word = offset >> 5
        window = words[word] | (words[word + 1] << np.uint64(32))
        mask = (np.uint64(1) << width.astype(np.uint64)) - np.uint64(1)
        out[start : start + BIT_CHUNK] = (window >> (offset & 31).astype(np.uint64)) & mask
    return out


__all__ = ["BIT_CHUNK", "Reader", "Writer", "pack_bits", "packed_size", "unpack_bits"]
