"""The uplink wire format: a device's model update, compressed, as bytes both sides can read.

    spec = UplinkSpec.parse("topk:0.01+int8")      # or "none", "int8", "topk:0.01"
    sent = encode(update, spec)                     # sent.payload: bytes; sent.decoded: arrays
    update_seen = decode(sent.payload, expected)    # == sent.decoded, bit for bit

An update is a mapping name -> float32 array (the change of the trainable tensors in one
round). `encode` returns what the server will decode along with the bytes, so a device keeps
the exact residual for error feedback (EF-SGD, Karimireddy et al. 2019): residual = what it
meant to send - what the server sees. The format is numpy-only (no torch) so the coordinator
and the device read it with the same code.

Layout (little-endian): magic b"FDUP" | version u8 | tensor count u32 | per tensor: name
length u16 | name UTF-8 | rank u8 | rank x u64 dims | mode u8 | payload length u64 | payload.

Modes per tensor:
  0 dense fp32: n float32.
  1 dense int8: ceil(n / 256) float32 block scales, then n int8 (symmetric, round to nearest).
  2 top-k fp32: k u64 | varint bytes u64 | zstd frame length u64 | frame of LEB128 gaps
    between the k kept positions (fedota.delta's sparse codec layout) | k float32 values.
  3 top-k int8: as 2, with the k values as mode 1's block scales and int8s.

Top-k keeps the ceil(fraction x n) largest magnitudes of each tensor (at least one), as deep
gradient compression does per layer (Lin et al. 2018), so no tensor goes silent for a round.
Every count and length read from a payload is checked against `UplinkLimits`, the expected
shapes and the bytes that remain before anything is allocated.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedota.delta.codecs import _zstd
from fedota.delta.codecs.sparse import decode_varints, encode_varints
from fedota.delta.errors import PatchFormatError

# The key of the uint8 array holding a payload in a Flower ArrayRecord (both sides read it).
RECORD_KEY = "uplink"
MAGIC = b"FDUP"
VERSION = 1
BLOCK = 256  # values per int8 scale
_HEAD = struct.Struct("<4sBI")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_MODE = struct.Struct("<BQ")
_SPARSE_HEAD = struct.Struct("<QQQ")
_F32 = np.dtype("<f4")

DENSE_F32, DENSE_INT8, TOPK_F32, TOPK_INT8 = 0, 1, 2, 3


class UplinkFormatError(Exception):
    """An uplink payload is not well-formed, or does not fit the expected tensors."""


@dataclass(frozen=True)
class UplinkLimits:
    """Caps on what a payload may declare (checked before allocating).

    Attributes:
        max_tensors: tensors in one update.
        max_name_bytes: UTF-8 bytes of one tensor name.
        max_rank: dimensions of one tensor.
        max_elements: elements of one tensor.
        max_total_elements: elements of the whole update.
    """

    max_tensors: int = 4096
    max_name_bytes: int = 512
    max_rank: int = 8
    max_elements: int = 1 << 28
    max_total_elements: int = 1 << 30


DEFAULT_UPLINK_LIMITS = UplinkLimits()


@dataclass(frozen=True)
class UplinkSpec:
    """How a device compresses its update: int8 quantization, top-k, both, or neither.

    Attributes:
        int8: quantize the (kept) values to int8 with one scale per block of 256.
        topk: the fraction of each tensor's values kept (largest magnitudes), or None for all.
    """

    int8: bool = False
    topk: float | None = None

    def __post_init__(self) -> None:
        if self.topk is not None and not (0.0 < self.topk <= 1.0):
            raise ValueError(f"the top-k fraction must lie in (0, 1], got {self.topk}")

    @classmethod
    def parse(cls, text: str) -> UplinkSpec:
        """ "none", "int8", "topk:F" or "topk:F+int8" (the CLI's --uplink).

        Raises:
            ValueError: anything else, or a fraction outside (0, 1].
        """
        parts = text.strip().lower().split("+")
        if parts == ["none"]:
            return cls()
        rest = [part for part in parts if part != "int8"]
        fraction = None
        if len(rest) == 1 and rest[0].startswith("topk:") and len(parts) - len(rest) <= 1:
            try:
                fraction = float(rest[0].removeprefix("topk:"))
            except ValueError:
                fraction = None
            if fraction is None:
                raise ValueError(f"top-k fraction in {text!r} is not a number")
        elif rest or len(parts) != 1 or len(parts) - len(rest) > 1:
            raise ValueError(
                f"uplink must be none, int8, topk:FRACTION or topk:FRACTION+int8, got {text!r}"
            )
        return cls(int8=len(rest) < len(parts), topk=fraction)

    def __str__(self) -> str:
        if self.topk is None:
            return "int8" if self.int8 else "none"
        return f"topk:{self.topk:g}" + ("+int8" if self.int8 else "")


@dataclass(frozen=True)
class EncodedUpdate:
    """The bytes sent and the update the receiver decodes from them (float32, bit for bit)."""

    payload: bytes
    decoded: dict[str, np.ndarray]


def encode(update: Mapping[str, np.ndarray], spec: UplinkSpec) -> EncodedUpdate:
    """Compress an update (name -> float32 array) per `spec`.

    Raises:
        ValueError: a value is not finite, a name is empty or too long, or an array is not
            float32-convertible (caller misuse: a diverged update must not be sent).
    """
    parts = [_HEAD.pack(MAGIC, VERSION, len(update))]
    decoded: dict[str, np.ndarray] = {}
    for name in sorted(update):
        values = np.asarray(update[name], dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"update tensor {name!r} holds non-finite values")
        raw_name = name.encode("utf-8")
        if not raw_name or len(raw_name) > DEFAULT_UPLINK_LIMITS.max_name_bytes:
            raise ValueError(f"tensor name {name!r} must be 1..512 UTF-8 bytes")
        mode, payload, restored = _encode_tensor(values.reshape(-1), spec)
        parts.append(_U16.pack(len(raw_name)) + raw_name + bytes([values.ndim]))
        parts.append(b"".join(_U64.pack(d) for d in values.shape))
        parts.append(_MODE.pack(mode, len(payload)) + payload)
        decoded[name] = restored.reshape(values.shape)
    return EncodedUpdate(b"".join(parts), decoded)


def decode(
    payload: bytes,
    expected: Mapping[str, tuple[int, ...]] | None = None,
    *,
    limits: UplinkLimits = DEFAULT_UPLINK_LIMITS,
) -> dict[str, np.ndarray]:
    """The update (name -> float32 array) a payload carries.

    With `expected` (name -> shape), the payload must hold exactly those tensors and shapes;
    this is checked as each header is read, so a hostile payload allocates nothing beyond them.

    Raises:
        UplinkFormatError: bad magic or version, a length past the end or a limit, a name or
            shape that differs from `expected`, a malformed sparse or int8 section.
    """
    view = memoryview(payload)
    if len(view) < _HEAD.size:
        raise UplinkFormatError("uplink payload shorter than its header")
    magic, version, count = _HEAD.unpack_from(view)
    if magic != MAGIC:
        raise UplinkFormatError("not an uplink payload (bad magic)")
    if version != VERSION:
        raise UplinkFormatError(f"uplink version {version} is not supported (only {VERSION})")
    if count > limits.max_tensors or (expected is not None and count != len(expected)):
        wanted = limits.max_tensors if expected is None else len(expected)
        raise UplinkFormatError(f"uplink declares {count} tensors, expected {wanted} at most")
    reader = _Reader(view, _HEAD.size)
    out: dict[str, np.ndarray] = {}
    total = 0
    previous = ""
    for _ in range(count):
        name = reader.name(limits)
        if name <= previous:
            raise UplinkFormatError("uplink tensor names are not in strictly increasing order")
        previous = name
        shape = reader.shape(limits)
        if expected is not None and (name not in expected or tuple(expected[name]) != shape):
            raise UplinkFormatError(f"uplink tensor {name!r}{list(shape)} is not expected")
        size = math.prod(shape)
        total += size
        if size > limits.max_elements or total > limits.max_total_elements:
            raise UplinkFormatError(f"uplink tensor {name!r} of {size} elements exceeds limits")
        mode, length = reader.mode()
        body = reader.take(length, name)
        out[name] = _decode_tensor(mode, body, size, name).reshape(shape)
    if reader.offset != len(view):
        raise UplinkFormatError(f"{len(view) - reader.offset} bytes after the last tensor")
    return out


def fp32_bytes(update: Mapping[str, np.ndarray]) -> int:
    """What the update would take as plain float32 values (the baseline for ratios)."""
    return sum(4 * int(np.asarray(v).size) for v in update.values())


def _encode_tensor(values: np.ndarray, spec: UplinkSpec) -> tuple[int, bytes, np.ndarray]:
    if spec.topk is None:
        if not spec.int8:
            return DENSE_F32, values.astype(_F32).tobytes(), values.copy()
        body, restored = _int8_encode(values)
        return DENSE_INT8, body, restored
    k = min(values.size, max(1, math.ceil(spec.topk * values.size))) if values.size else 0
    positions = np.sort(np.argpartition(np.abs(values), values.size - k)[values.size - k :])
    positions = positions.astype(np.uint64)
    gaps = np.diff(positions.astype(np.int64), prepend=-1) - 1
    varints = encode_varints(gaps.astype(np.uint64))
    frame = _zstd.compress(varints)
    head = _SPARSE_HEAD.pack(k, len(varints), len(frame)) + frame
    kept = values[positions.astype(np.int64)]
    if spec.int8:
        body, restored_kept = _int8_encode(kept)
        mode = TOPK_INT8
    else:
        body, restored_kept = kept.astype(_F32).tobytes(), kept.copy()
        mode = TOPK_F32
    restored = np.zeros_like(values)
    restored[positions.astype(np.int64)] = restored_kept
    return mode, head + body, restored


def _int8_encode(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    blocks = -(-values.size // BLOCK)
    padded = np.zeros(blocks * BLOCK, dtype=np.float32)
    padded[: values.size] = values
    rows = padded.reshape(blocks, BLOCK)
    scales = (np.abs(rows).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
    restored = (q.astype(np.float32) * scales[:, None]).reshape(-1)[: values.size]
    return scales.astype(_F32).tobytes() + q.reshape(-1)[: values.size].tobytes(), restored


def _int8_decode(body: memoryview, size: int, name: str) -> np.ndarray:
    blocks = -(-size // BLOCK)
    if len(body) != 4 * blocks + size:
        raise UplinkFormatError(
            f"int8 section of {name!r} has {len(body)} bytes, expected {4 * blocks + size}"
        )
    scales = np.frombuffer(body[: 4 * blocks], dtype=_F32).astype(np.float32)
    q = np.frombuffer(body[4 * blocks :], dtype=np.int8).astype(np.float32)
    return q * np.repeat(scales, BLOCK)[:size]


def _decode_tensor(mode: int, body: memoryview, size: int, name: str) -> np.ndarray:
    if mode == DENSE_F32:
        if len(body) != 4 * size:
            raise UplinkFormatError(f"{name!r} has {len(body)} bytes, expected {4 * size}")
        return np.frombuffer(body, dtype=_F32).astype(np.float32)
    if mode == DENSE_INT8:
        return _int8_decode(body, size, name)
    if mode not in (TOPK_F32, TOPK_INT8):
        raise UplinkFormatError(f"{name!r} has unknown mode {mode}")
    if len(body) < _SPARSE_HEAD.size:
        raise UplinkFormatError(f"top-k section of {name!r} shorter than its header")
    k, varint_len, frame_len = _SPARSE_HEAD.unpack_from(body)
    # A gap is below `size`, so it fits in ceil(bits(size) / 7) varint bytes.
    gap_bytes = max(1, -(-size.bit_length() // 7))
    if k > size or varint_len > k * gap_bytes or frame_len > len(body) - _SPARSE_HEAD.size:
        raise UplinkFormatError(f"top-k header of {name!r} out of bounds")
    frame = body[_SPARSE_HEAD.size : _SPARSE_HEAD.size + frame_len]
    try:
        gaps = decode_varints(_zstd.decompress(frame, varint_len), k)
    except PatchFormatError as exc:
        raise UplinkFormatError(f"top-k positions of {name!r}: {exc}") from None
    if k and float(np.sum(gaps, dtype=np.float64)) + k > size:
        raise UplinkFormatError(f"top-k positions of {name!r} run past the tensor")
    positions = (np.cumsum(gaps + np.uint64(1), dtype=np.uint64) - np.uint64(1)).astype(np.int64)
    rest = body[_SPARSE_HEAD.size + frame_len :]
    if mode == TOPK_INT8:
        kept = _int8_decode(rest, k, name)
    else:
        if len(rest) != 4 * k:
            raise UplinkFormatError(f"top-k values of {name!r}: {len(rest)} bytes for {k}")
        kept = np.frombuffer(rest, dtype=_F32).astype(np.float32)
    out = np.zeros(size, dtype=np.float32)
    out[positions] = kept
    return out


class _Reader:
    """Reads fields off a payload, refusing any length past its end."""

    def __init__(self, view: memoryview, offset: int) -> None:
        self.view, self.offset = view, offset

    def take(self, length: int, what: str) -> memoryview:
        if length > len(self.view) - self.offset:
            raise UplinkFormatError(f"uplink payload ends inside {what!r}")
        chunk = self.view[self.offset : self.offset + length]
        self.offset += length
        return chunk

    def name(self, limits: UplinkLimits) -> str:
        (length,) = _U16.unpack(self.take(_U16.size, "a name length"))
        if not 0 < length <= limits.max_name_bytes:
            raise UplinkFormatError(f"uplink tensor name of {length} bytes")
        try:
            return bytes(self.take(length, "a name")).decode("utf-8")
        except UnicodeDecodeError:
            raise UplinkFormatError("uplink tensor name is not UTF-8") from None

    def shape(self, limits: UplinkLimits) -> tuple[int, ...]:
        rank = self.take(1, "a rank")[0]
        if rank > limits.max_rank:
            raise UplinkFormatError(f"uplink tensor of rank {rank} (limit {limits.max_rank})")
        dims = self.take(_U64.size * rank, "a shape")
        shape = tuple(_U64.unpack_from(dims, i * _U64.size)[0] for i in range(rank))
        if any(d > limits.max_elements for d in shape):
            raise UplinkFormatError(f"uplink tensor dimension beyond {limits.max_elements}")
        return shape

    def mode(self) -> tuple[int, int]:
        mode, length = _MODE.unpack(self.take(_MODE.size, "a mode"))
        return int(mode), int(length)


__all__ = [
    "DEFAULT_UPLINK_LIMITS",
    "RECORD_KEY",
    "EncodedUpdate",
    "UplinkFormatError",
    "UplinkLimits",
    "UplinkSpec",
    "decode",
    "encode",
    "fp32_bytes",
]
