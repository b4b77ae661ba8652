"""safetensors files in numpy, without torch: a validating lazy reader and a streaming writer.

Format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, then the
data region the offsets index. The reader trusts nothing: the header size is capped, every
tensor's offsets must lie in the file, tile the data region exactly (contiguous, no overlap, no
gap) and match shape x itemsize. Tensors come out lazily as views of a read-only mmap, so reading
a model costs page cache, not heap.

Packed int4 (`I4`, see tensor.py) is a U8 tensor in the file, listed in the metadata key
`fedota.packed_int4` (JSON list of names). Its logical shape is in `fedota.packed_int4_shapes`
(JSON object name -> shape) when present, else the U8 shape with the last dimension doubled.
The writer stores the U8 tensor with the last dimension halved when it is even (so readers that
know only the list agree) and flat otherwise, and always writes both keys.

The writer is our own (40 lines, not the `safetensors` package's `serialize_file`): the
package's API changed incompatibly in 0.8 (raw `TensorSpec` pointers instead of byte dicts), and
ours streams, so a streaming apply writes one tensor at a time. Tests read our files back with
the `safetensors` package (numpy and torch) to prove the format.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fedota.delta.atomic import atomic_write
from fedota.delta.errors import ModelFormatError, TargetMismatch, UnsupportedTensor
from fedota.delta.hashing import model_hash
from fedota.delta.limits import DEFAULT_LIMITS, Limits
from fedota.delta.tensor import STORAGE, Tensor, storage_words

INT4_KEY = "fedota.packed_int4"
INT4_SHAPES_KEY = "fedota.packed_int4_shapes"
_METADATA = "__metadata__"
_U64 = struct.Struct("<Q")
# dtypes a file may declare (I4 is not a file dtype: it travels as U8 plus metadata).
FILE_DTYPES = frozenset(STORAGE) - {"I4"}

Spec = tuple[str, tuple[int, ...]]


class SafetensorsFile(Mapping[str, Tensor]):
    """A safetensors file as a read-only mapping name -> Tensor, backed by mmap.

    Tensors are views of the mapping (no copy); they stay valid after `close`, which only drops
    this object's reference. Use as a context manager or call `close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> None:
        """Open and validate the header.

        Raises:
            OSError: the file cannot be opened or mapped.
            ModelFormatError: the header or layout is invalid.
            UnsupportedTensor: a dtype this library does not handle.
        """
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 8:
                raise ModelFormatError(f"{self.path}: {size} bytes is too short for safetensors")
            (header_len,) = _U64.unpack(handle.read(8))
            if header_len > min(limits.max_header, size - 8):
                raise ModelFormatError(
                    f"{self.path}: header of {header_len} bytes exceeds the file or the limit"
                )
            raw = handle.read(header_len)
            self._start = 8 + header_len
            self._specs, self._offsets, self.metadata = _parse_header(
                raw, size - self._start, limits
            )
            self._map: mmap.mmap | None = None
            if size > self._start:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def spec(self, name: str) -> Spec:
        """A tensor's (dtype, logical shape) without touching its data.

        Raises:
            KeyError: no tensor of that name.
        """
        return self._specs[name]

    def __getitem__(self, name: str) -> Tensor:
        dtype, shape = self._specs[name]
        words = storage_words(dtype, shape)
        if words == 0 or self._map is None:
            return Tensor(dtype, shape, np.empty(0, STORAGE[dtype]))
        offset = self._start + self._offsets[name]
        return Tensor(dtype, shape, np.frombuffer(self._map, STORAGE[dtype], words, offset))

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def close(self) -> None:
        """Drop the mapping (the OS unmaps it once no tensor view refers to it)."""
        self._map = None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Tensor]:
    """Every tensor of a safetensors file (mmap views, so this costs no heap).

    Raises:
        OSError, ModelFormatError, UnsupportedTensor: as `SafetensorsFile`.
    """
    with SafetensorsFile(path, limits=limits) as model:
        return dict(model)


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
    expected_hash: str | None = None,
) -> None:
    """Write a model atomically; with `expected_hash`, only after re-reading it verified.

    Raises:
        OSError: cannot write the directory or the file.
        TargetMismatch: the written file does not hash to `expected_hash` (nothing is left).
        ValueError: a tensor name is reserved (`__metadata__`).
    """
    specs = [(name, tensors[name].dtype, tensors[name].shape) for name in sorted(tensors)]
    with atomic_write(path) as handle:
        writer = SafetensorsWriter(handle, specs, metadata=metadata)
        for name, _, _ in specs:
            writer.write(name, tensors[name])
        writer.finish()
        if expected_hash is not None:
            handle.flush()
            actual = model_hash(load(handle.name))
            if actual != expected_hash:
                raise TargetMismatch(expected_hash, actual)


class SafetensorsWriter:
    """Writes a safetensors file whose tensors are declared up front, then given in any order.

    The header (and so every offset) comes from the specs, so each tensor is written at its
    place as soon as it exists; peak memory is one tensor.
    """

    def __init__(
        self,
        handle: BinaryIO,
        specs: Sequence[tuple[str, str, tuple[int, ...]]],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write the header.

        Raises:
            ValueError: a reserved or repeated name, or a reserved metadata key.
            OSError: the write fails.
        """
        meta = dict(metadata or {})
        if INT4_KEY in meta or INT4_SHAPES_KEY in meta:
            raise ValueError(f"metadata keys {INT4_KEY!r}/{INT4_SHAPES_KEY!r} are the writer's")
        int4 = {name: list(shape) for name, dtype, shape in specs if dtype == "I4"}
        if int4:
            meta[INT4_KEY] = json.dumps(sorted(int4))
            meta[INT4_SHAPES_KEY] = json.dumps(int4, sort_keys=True)
        # safetensors' own order: widest dtype first, then by name, so every offset is aligned.
        order = sorted(specs, key=lambda s: (-STORAGE[s[1]].itemsize, s[0]))
        header: dict[str, Any] = {_METADATA: meta} if meta else {}
        self._places: dict[str, tuple[int, str, tuple[int, ...]]] = {}
        position = 0
        for name, dtype, shape in order:
            if name == _METADATA or name in header:
                raise ValueError(f"tensor name {name!r} is reserved or repeated")
            size = storage_words(dtype, shape) * STORAGE[dtype].itemsize
            file_dtype = "U8" if dtype == "I4" else dtype
            header[name] = {
                "dtype": file_dtype,
                "shape": _file_shape(dtype, shape, size),
                "data_offsets": [position, position + size],
            }
            self._places[name] = (position, dtype, shape)
            position += size
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the package pads it
        self._handle = handle
        self._start = handle.tell() + 8 + len(raw)
        self._pending = set(self._places)
        handle.write(_U64.pack(len(raw)) + raw)

    def write(self, name: str, tensor: Tensor) -> None:
        """Write one declared tensor at its offset.

        Raises:
            ValueError: an undeclared name, a dtype/shape other than declared, or written twice.
            OSError: the write fails.
        """
        if name not in self._pending:
            raise ValueError(f"tensor {name!r} is not declared or already written")
        position, dtype, shape = self._places[name]
        if (tensor.dtype, tensor.shape) != (dtype, shape):
            raise ValueError(f"{name}: declared {dtype}{list(shape)}, got {tensor.dtype}")
        self._handle.seek(self._start + position)
        self._handle.write(np.ascontiguousarray(tensor.data).view(np.uint8).data)
        self._pending.discard(name)

    def finish(self) -> None:
        """Check every declared tensor was written and flush.

        Raises:
            ValueError: some tensors were never written.
        """
        if self._pending:
            raise ValueError(f"{len(self._pending)} declared tensors were not written")
        self._handle.flush()


def _file_shape(dtype: str, shape: tuple[int, ...], size: int) -> list[int]:
    if dtype != "I4":
        return list(shape)
    if shape and shape[-1] % 2 == 0:
        return [*shape[:-1], shape[-1] // 2]
    return [size]


def _parse_header(
    raw: bytes, data_size: int, limits: Limits
) -> tuple[dict[str, Spec], dict[str, int], dict[str, str]]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFormatError(f"safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ModelFormatError("safetensors header is not a JSON object")
    metadata = header.pop(_METADATA, {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelFormatError("safetensors __metadata__ must map strings to strings")
    if len(header) > limits.max_tensors:
        raise ModelFormatError(f"{len(header)} tensors exceed the limit {limits.max_tensors}")
    specs: dict[str, Spec] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        dtype, shape, begin, end = _parse_entry(name, entry, limits)
        spans.append((begin, end, name))
        specs[name] = (dtype, shape)
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise ModelFormatError(f"tensor {name!r} starts at {begin}, expected {position}")
        position = end
    if position != data_size:
        raise ModelFormatError(f"tensors cover {position} bytes of a {data_size}-byte data region")
    _apply_int4(specs, metadata, limits)
    return specs, {name: begin for begin, _, name in spans}, metadata


def _parse_entry(name: str, entry: object, limits: Limits) -> tuple[str, tuple[int, ...], int, int]:
    if len(name.encode("utf-8")) > limits.max_name_bytes:
        raise ModelFormatError(f"tensor name of {len(name)} characters exceeds the limit")
    if not isinstance(entry, dict):
        raise ModelFormatError(f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise ModelFormatError(f"tensor {name!r}: dtype missing")
    if dtype not in FILE_DTYPES:
        raise UnsupportedTensor(f"tensor {name!r}: dtype {dtype!r} is not supported")
    if not _int_list(shape) or len(shape) > limits.max_rank:
        raise ModelFormatError(f"tensor {name!r}: shape must be at most {limits.max_rank} ints")
    if not _int_list(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise ModelFormatError(f"tensor {name!r}: data_offsets must be [begin, end]")
    numel = math.prod(shape)
    if numel > limits.max_elements:
        raise ModelFormatError(f"tensor {name!r}: {numel} elements exceed the limit")
    if offsets[1] - offsets[0] != numel * STORAGE[dtype].itemsize:
        raise ModelFormatError(f"tensor {name!r}: {dtype}{shape} does not fill its byte range")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _apply_int4(specs: dict[str, Spec], metadata: Mapping[str, str], limits: Limits) -> None:
    if INT4_KEY not in metadata:
        return
    try:
        names = json.loads(metadata[INT4_KEY])
        shapes = json.loads(metadata.get(INT4_SHAPES_KEY, "{}"))
    except (ValueError, RecursionError):
        raise ModelFormatError(f"metadata {INT4_KEY} is not valid JSON") from None
    if not isinstance(names, list) or not isinstance(shapes, dict):
        raise ModelFormatError(f"metadata {INT4_KEY} must be a list, {INT4_SHAPES_KEY} an object")
    for name in names:
        if not isinstance(name, str) or specs.get(name, ("",))[0] != "U8":
            raise ModelFormatError(f"{INT4_KEY} names {name!r}, which is not a U8 tensor")
        stored = specs[name][1]
        shape = shapes.get(name)
        if shape is None:
            if not stored:
                raise ModelFormatError(f"int4 tensor {name!r} is 0-d and has no logical shape")
            shape = [*stored[:-1], stored[-1] * 2]
        if (
            not _int_list(shape)
            or len(shape) > limits.max_rank
            or storage_words("I4", tuple(shape)) != math.prod(stored)
        ):
            raise ModelFormatError(f"int4 tensor {name!r}: shape {shape} does not fit its bytes")
        specs[name] = ("I4", tuple(shape))


def _int_list(value: object) -> bool:
    return isinstance(value, list) and all(
        type(item) is int and 0 <= item < 1 << 63 for item in value
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


__all__ = ["INT4_KEY", "INT4_SHAPES_KEY", "SafetensorsFile", "SafetensorsWriter", "load", "save"]
