"""Patch format v1: the bytes of a patch, written and parsed without trusting a single length.

Layout (docs/patch-format.md is the reference; every integer little-endian):

    magic 8 | version u16 | flags u16 | entry count u32 | base hash 32 | target hash 32
    | index length u64 | index (entries) | index SHA-256 32 | payloads, in entry order

An entry is: name length u16, name UTF-8, op u8, dtype u8, codec u8, rank u8, rank x u64 dims,
payload length u64, payload SHA-256 32. Names strictly increase (no duplicates, one canonical
order: the model hash's). The index digest covers everything before it, so a tampered index is
refused before anything is decoded; a payload's hash is checked before it is decoded. Every count
and length is bounded by `Limits` and by the bytes that remain before it is used.
"""

from __future__ import annotations

import enum
import hashlib
import io
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from fedota.delta.errors import (
    PatchFormatError,
    PatchIntegrityError,
    PatchTooLarge,
    PatchTruncated,
)
from fedota.delta.limits import DEFAULT_LIMITS, Limits
from fedota.delta.tensor import Tensor

MAGIC = b"\x89fedota\n"  # 0x89 and \n catch 7-bit and text-mode mangling, as PNG's does
VERSION = 1
_FIXED = struct.Struct("<8sHHI32s32sQ")
_ENTRY_HEAD = struct.Struct("<BBBB")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_ENTRY_TAIL = struct.Struct("<Q32s")
HEADER_SIZE = _FIXED.size
EMPTY_SHA256 = hashlib.sha256(b"").digest()

# dtype <-> one byte in the patch (never renumbered).
DTYPE_CODES: dict[str, int] = {
    "F64": 1, "F32": 2, "F16": 3, "BF16": 4, "I64": 5, "I32": 6,
    "I16": 7, "I8": 8, "U8": 9, "BOOL": 10, "I4": 11,
}  # fmt: skip
_DTYPES = {code: name for name, code in DTYPE_CODES.items()}


class Op(enum.IntEnum):
    """What happens to one tensor: every tensor of base and target has one entry."""

    UNCHANGED = 0  # target = base tensor; no payload
    CHANGED = 1  # payload decodes the target (against the base when dtype and shape agree)
    ADDED = 2  # only in the target; payload decodes it without a base
    REMOVED = 3  # only in the base; no payload (dtype/shape are the base's, for `info`)


@dataclass(frozen=True)
class Entry:
    """One tensor's line in the patch index (dtype and shape are the target's, or the base's for
    a removed tensor)."""

    name: str
    op: Op
    dtype: str
    shape: tuple[int, ...]
    codec_id: int = 0
    payload_len: int = 0
    payload_sha256: bytes = EMPTY_SHA256

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def has_payload(self) -> bool:
        return self.op in (Op.CHANGED, Op.ADDED)


@dataclass(frozen=True)
class PatchHeader:
    """Everything before the payloads: hashes (hex) and the index."""

    base_hash: str
    target_hash: str
    entries: tuple[Entry, ...]
    version: int = VERSION
    flags: int = 0

    @property
    def payload_total(self) -> int:
        return sum(entry.payload_len for entry in self.entries)

    def index_bytes(self) -> bytes:
        """The header through the index digest (what precedes the payloads)."""
        index = b"".join(_pack_entry(entry) for entry in self.entries)
        fixed = _FIXED.pack(
            MAGIC,
            self.version,
            self.flags,
            len(self.entries),
            bytes.fromhex(self.base_hash),
            bytes.fromhex(self.target_hash),
            len(index),
        )
        return fixed + index + hashlib.sha256(fixed + index).digest()


@dataclass(frozen=True)
class Patch:
    """A patch: header, one payload per entry (b"" when it has none) and, when `diff` made it,
    the exact target it reproduces (None for a parsed patch)."""

    header: PatchHeader
    payloads: tuple[bytes, ...]
    target: Mapping[str, Tensor] | None = None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.header.entries

    @property
    def base_hash(self) -> str:
        return self.header.base_hash

    @property
    def target_hash(self) -> str:
        return self.header.target_hash

    def write(self, handle: BinaryIO) -> int:
        """Write the patch's bytes; returns how many."""
        head = self.header.index_bytes()
        handle.write(head)
        for payload in self.payloads:
            handle.write(payload)
        return len(head) + sum(len(p) for p in self.payloads)

    def to_bytes(self) -> bytes:
        """The patch file's bytes."""
        out = io.BytesIO()
        self.write(out)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Patch:
        """Parse a whole patch held in memory (payload hashes are checked at apply).

        Raises:
            PatchFormatError (PatchTruncated, PatchTooLarge), PatchIntegrityError: see read_header.
        """
        view = memoryview(data)
        handle = io.BytesIO(view)
        header = read_header(handle, len(data), limits=limits)
        position = handle.tell()
        payloads = []
        for entry in header.entries:
            payloads.append(bytes(view[position : position + entry.payload_len]))
            position += entry.payload_len
        return cls(header, tuple(payloads))


def make_header(
    base_hash: str, target_hash: str, entries: Sequence[Entry], *, limits: Limits = DEFAULT_LIMITS
) -> PatchHeader:
    """A header for these entries, checked exactly as a device's parser will check it.

    Raises:
        PatchTooLarge: the patch would exceed `limits` (a device would refuse it).
        PatchFormatError: entries out of order or inconsistent.
    """
    header = PatchHeader(base_hash, target_hash, tuple(entries))
    raw = header.index_bytes()
    read_header(io.BytesIO(raw), len(raw) + header.payload_total, limits=limits)
    return header


def read_header(handle: BinaryIO, size: int, *, limits: Limits = DEFAULT_LIMITS) -> PatchHeader:
    """Read and check a patch's header and index; `handle` is left at the first payload.

    `size` is the patch's total byte length (a file's size): the payload lengths must add up
    to exactly what follows the index.

    Raises:
        PatchTruncated: the data ends before the declared header, index or payloads.
        PatchTooLarge: a count or length exceeds `limits`.
        PatchFormatError: bad magic, version, flags or field; trailing bytes.
        PatchIntegrityError: the index does not match its digest.
    """
    if size > limits.max_total:
        raise PatchTooLarge(f"patch of {size} bytes exceeds the limit {limits.max_total}")
    fixed = _read_exact(handle, HEADER_SIZE, "header")
    magic, version, flags, count, base, target, index_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise PatchFormatError("not a fedota patch (bad magic)")
    if version != VERSION:
        raise PatchFormatError(f"patch format version {version} is not supported (need 1)")
    if flags != 0:
        raise PatchFormatError(f"unknown patch flags {flags:#06x}")
    if count > limits.max_tensors:
        raise PatchTooLarge(f"{count} tensors exceed the limit {limits.max_tensors}")
    remaining = size - HEADER_SIZE - 32
    if index_len > limits.max_header:
        raise PatchTooLarge(f"index of {index_len} bytes exceeds the limit {limits.max_header}")
    if index_len > remaining:
        raise PatchTruncated(f"index of {index_len} bytes, but {max(remaining, 0)} remain")
    index = _read_exact(handle, index_len, "index")
    digest = _read_exact(handle, 32, "index digest")
    if hashlib.sha256(fixed + index).digest() != digest:
        raise PatchIntegrityError("the patch index does not match its SHA-256 (tampered?)")
    entries = tuple(_parse_entries(index, count, limits))
    total = sum(entry.payload_len for entry in entries)
    available = remaining - index_len
    if total > available:
        raise PatchTruncated(f"payloads declare {total} bytes, but {available} remain")
    if total < available:
        raise PatchFormatError(f"{available - total} bytes follow the last payload")
    return PatchHeader(base.hex(), target.hex(), entries, version, flags)


def _parse_entries(index: bytes, count: int, limits: Limits) -> Iterator[Entry]:
    cursor = _Cursor(index)
    previous: str | None = None
    for _ in range(count):
        (name_len,) = cursor.unpack(_U16)
        if name_len > limits.max_name_bytes:
            raise PatchTooLarge(f"tensor name of {name_len} bytes exceeds the limit")
        try:
            name = cursor.take(name_len).decode("utf-8")
        except UnicodeDecodeError:
            raise PatchFormatError("a tensor name is not valid UTF-8") from None
        if previous is not None and name <= previous:
            raise PatchFormatError(f"entry {name!r} after {previous!r}: names must increase")
        previous = name
        op, dtype_code, codec_id, rank = cursor.unpack(_ENTRY_HEAD)
        if rank > limits.max_rank:
            raise PatchTooLarge(f"{name}: rank {rank} exceeds the limit {limits.max_rank}")
        shape = struct.unpack(f"<{rank}Q", cursor.take(8 * rank))
        payload_len, sha = cursor.unpack(_ENTRY_TAIL)
        yield _check_entry(name, op, dtype_code, codec_id, shape, payload_len, sha, limits)
    if cursor.left:
        raise PatchFormatError(f"{cursor.left} unused bytes at the end of the index")


def _check_entry(
    name: str,
    op: int,
    dtype_code: int,
    codec_id: int,
    shape: tuple[int, ...],
    payload_len: int,
    sha: bytes,
    limits: Limits,
) -> Entry:
    if op not in Op._value2member_map_:
        raise PatchFormatError(f"{name}: unknown op {op}")
    if dtype_code not in _DTYPES:
        raise PatchFormatError(f"{name}: unknown dtype code {dtype_code}")
    numel = math.prod(shape)
    if numel > limits.max_elements:
        raise PatchTooLarge(f"{name}: {numel} elements exceed the limit {limits.max_elements}")
    if payload_len > limits.max_payload:
        raise PatchTooLarge(f"{name}: payload of {payload_len} bytes exceeds the limit")
    entry = Entry(name, Op(op), _DTYPES[dtype_code], shape, codec_id, payload_len, sha)
    if not entry.has_payload and (codec_id, payload_len, sha) != (0, 0, EMPTY_SHA256):
        raise PatchFormatError(f"{name}: an {entry.op.name.lower()} entry carries no payload")
    return entry


def _pack_entry(entry: Entry) -> bytes:
    name = entry.name.encode("utf-8")
    return b"".join(
        (
            _U16.pack(len(name)),
            name,
            _ENTRY_HEAD.pack(
                int(entry.op), DTYPE_CODES[entry.dtype], entry.codec_id, len(entry.shape)
            ),
            struct.pack(f"<{len(entry.shape)}Q", *entry.shape),
            _ENTRY_TAIL.pack(entry.payload_len, entry.payload_sha256),
        )
    )


class _Cursor:
    """Reads fields off the index, refusing to read past its end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._pos

    def take(self, count: int) -> bytes:
        if count > self.left:
            raise PatchTruncated(f"the index ends inside an entry ({count} > {self.left} bytes)")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))


def _read_exact(handle: BinaryIO, count: int, what: str) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise PatchTruncated(f"the patch ends inside its {what} ({len(data)} of {count} bytes)")
    return data


__all__ = [
    "DTYPE_CODES",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "Entry",
    "Op",
    "Patch",
    "PatchHeader",
    "make_header",
    "read_header",
]
