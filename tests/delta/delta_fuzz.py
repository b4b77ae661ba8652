"""Mutations of a small real patch, shared by the fuzz tests and their memory-capped subprocess.

`resealed` variants recompute the index digest (and payload hashes) after the mutation, as an
attacker who controls the patch file can: they get past the integrity checks and exercise the
bounds of the parser and of every codec's decoder.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from fedota.delta import Patch, PatchHeader, Tensor, diff
from fedota.delta.format import HEADER_SIZE

Model = dict[str, Tensor]


BUILTIN = ("raw", "zstd", "bitdiff", "sparse")


def sample(codecs: tuple[str, ...] = BUILTIN, lossy: bool = False) -> tuple[Model, Patch]:
    """A base and a patch to it that uses every op and, by default, codecs 0-3 (with other
    `codecs`, whichever of them applies; `lossy` diffs with max_error="fp16")."""
    rng = np.random.default_rng(7)
    old = rng.normal(0, 0.02, 300).astype(np.float32)
    nudged = (old * np.float32(1.0001)).astype(np.float32)
    few = old.copy()
    few[[3, 200]] = 1.0
    base = {
        "dense": Tensor("F32", (10, 30), old),
        "few": Tensor("F32", (300,), old),
        "gone": Tensor("I8", (4,), np.arange(4, dtype=np.int8)),
        "int4": Tensor("I4", (5,), np.array([0x12, 0x34, 0x05], np.uint8)),
        "same": Tensor("F16", (), np.array([1.5], np.float16)),
        "zeros": Tensor("F32", (64,), old[:64]),
    }
    target = {
        "added": Tensor("BF16", (2, 1), np.array([0x3F80, 0x7FC0], np.uint16)),
        "dense": Tensor("F32", (10, 30), nudged),
        "few": Tensor("F32", (300,), few),
        "int4": Tensor("I4", (5,), np.array([0x13, 0x34, 0x0F], np.uint8)),
        "same": base["same"],
        "zeros": Tensor("F32", (64,), np.zeros(64, np.float32)),
    }
    mode: dict[str, Any] = {"max_error": "fp16"} if lossy else {"lossless": True}
    patch = diff(base, target, codecs=codecs, **mode)
    if codecs == BUILTIN:
        assert {e.codec_id for e in patch.entries if e.has_payload} == {0, 1, 2, 3}
    return base, patch


def index_end(patch: Patch) -> int:
    """Offset of the index digest (the end of the region it covers)."""
    return len(patch.header.index_bytes()) - 32


def reseal(raw: bytes, end: int) -> bytes:
    """`raw` with the digest at `end` recomputed over everything before it."""
    if len(raw) < end + 32:
        return raw
    return raw[:end] + hashlib.sha256(raw[:end]).digest() + raw[end + 32 :]


def truncations(raw: bytes) -> Iterator[bytes]:
    for cut in range(len(raw)):
        yield raw[:cut]


def header_mutations(raw: bytes, end: int) -> Iterator[bytes]:
    """Every bit of the header and index flipped, and every byte set to 0x00/0xFF: raw and
    resealed."""
    for offset in range(end):
        for value in ({raw[offset] ^ (1 << bit) for bit in range(8)} | {0x00, 0xFF}) - {
            raw[offset]
        }:
            mutated = raw[:offset] + bytes([value]) + raw[offset + 1 :]
            yield mutated
            yield reseal(mutated, end)


def huge_lengths(raw: bytes, end: int) -> Iterator[bytes]:
    """Each length and count field of the header set to huge values, resealed."""
    huge64 = (2**64 - 1, 2**63, 2**40, 2**32)
    for offset, layout, values in (
        (HEADER_SIZE - 8, "<Q", huge64),  # index length
        (12, "<I", (2**32 - 1, 2**31, 2**20 + 1)),  # entry count
    ):
        for value in values:
            yield reseal(_put(raw, offset, layout, value), end)
    # Inside the first entry: name length u16, then after the name rank u8, dims, payload len.
    (name_len,) = struct.unpack_from("<H", raw, HEADER_SIZE)
    yield reseal(_put(raw, HEADER_SIZE, "<H", 0xFFFF), end)
    rank_at = HEADER_SIZE + 2 + name_len + 3
    yield reseal(_put(raw, rank_at, "<B", 0xFF), end)
    rank = raw[rank_at]
    for dim in range(rank):
        for value in huge64:
            yield reseal(_put(raw, rank_at + 1 + 8 * dim, "<Q", value), end)
    for value in huge64:
        yield reseal(_put(raw, rank_at + 1 + 8 * rank, "<Q", value), end)


def payload_mutations(patch: Patch) -> Iterator[bytes]:
    """Each payload with bytes flipped, cut or extended, its hash (and the digest) updated:
    only the codecs' own checks stand between these bytes and a decoder."""
    for index, entry in enumerate(patch.entries):
        payload = patch.payloads[index]
        if not entry.has_payload:
            continue
        offsets = _offsets(len(payload))
        variants = [payload[:cut] for cut in offsets]
        variants += [payload + b"\x00", payload + b"\xff" * 9]
        for offset in offsets:
            for value in {payload[offset] ^ 0x01, payload[offset] ^ 0x80, 0x00, 0xFF} - {
                payload[offset]
            }:
                variants.append(payload[:offset] + bytes([value]) + payload[offset + 1 :])
        for variant in variants:
            yield _with_payload(patch, index, variant)


def _offsets(size: int) -> list[int]:
    """Every offset of the first 96 bytes (where payload headers and lengths live), then about
    64 more spread over the rest, and the last byte."""
    head = range(min(size, 96))
    rest = range(96, size, max(1, (size - 96) // 64))
    return sorted({*head, *rest, size - 1} - {-1})


def _with_payload(patch: Patch, index: int, payload: bytes) -> bytes:
    entry = replace(
        patch.entries[index],
        payload_len=len(payload),
        payload_sha256=hashlib.sha256(payload).digest(),
    )
    entries = list(patch.entries)
    entries[index] = entry
    payloads = list(patch.payloads)
    payloads[index] = payload
    header = PatchHeader(patch.base_hash, patch.target_hash, tuple(entries))
    return Patch(header, tuple(payloads)).to_bytes()


def _put(raw: bytes, offset: int, layout: str, value: int) -> bytes:
    size = struct.calcsize(layout)
    return raw[:offset] + struct.pack(layout, value) + raw[offset + size :]
