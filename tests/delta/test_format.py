"""Patch format v1: what is written is what is parsed, and each rule of the parser holds."""

from __future__ import annotations

import hashlib
import io
import struct

import numpy as np
import pytest
from delta_fuzz import index_end, reseal, sample

from fedota.delta import (
    Entry,
    Limits,
    Op,
    Patch,
    PatchFormatError,
    PatchIntegrityError,
    PatchTooLarge,
    PatchTruncated,
    Tensor,
    diff,
    read_header,
)
from fedota.delta.format import HEADER_SIZE, MAGIC, make_header

HASH = "ab" * 32


def test_a_patch_reads_back_as_written() -> None:
    _, patch = sample()
    raw = patch.to_bytes()
    parsed = Patch.from_bytes(raw)
    assert parsed.header == patch.header
    assert parsed.payloads == patch.payloads
    assert raw.startswith(MAGIC)
    assert parsed.target is None


def test_the_header_is_read_from_a_stream_and_leaves_it_at_the_payloads() -> None:
    _, patch = sample()
    raw = patch.to_bytes()
    handle = io.BytesIO(raw)
    header = read_header(handle, len(raw))
    assert handle.tell() == len(raw) - header.payload_total


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"X", "magic"),
        (8, struct.pack("<H", 2), "version 2"),
        (10, struct.pack("<H", 1), "flags"),
    ],
)
def test_magic_version_and_flags_are_checked(offset: int, value: bytes, message: str) -> None:
    _, patch = sample()
    raw = bytearray(patch.to_bytes())
    raw[offset : offset + len(value)] = value
    with pytest.raises(PatchFormatError, match=message):
        Patch.from_bytes(reseal(bytes(raw), index_end(patch)))


def test_a_changed_index_fails_its_digest() -> None:
    _, patch = sample()
    raw = bytearray(patch.to_bytes())
    raw[HEADER_SIZE + 3] ^= 1  # a letter of the first name
    with pytest.raises(PatchIntegrityError, match="index"):
        Patch.from_bytes(bytes(raw))


def test_bytes_after_the_last_payload_are_refused() -> None:
    _, patch = sample()
    with pytest.raises(PatchFormatError, match="follow the last payload"):
        Patch.from_bytes(patch.to_bytes() + b"\x00")


def test_limits_are_enforced_before_reading_on() -> None:
    _, patch = sample()
    raw = patch.to_bytes()
    cases = [
        (Limits(max_total=len(raw) - 1), "exceeds the limit"),
        (Limits(max_tensors=len(patch.entries) - 1), "tensors exceed"),
        (Limits(max_header=10), "index of"),
        (Limits(max_name_bytes=3), "name of"),
        (Limits(max_rank=1), "rank 2"),
        (Limits(max_elements=299), "elements exceed"),
        (Limits(max_payload=100), "payload of"),
    ]
    for limits, message in cases:
        with pytest.raises(PatchTooLarge, match=message):
            Patch.from_bytes(raw, limits=limits)


def test_limits_must_be_non_negative_ints() -> None:
    with pytest.raises(ValueError, match="max_rank"):
        Limits(max_rank=-1)


def test_names_must_increase() -> None:
    entries = [Entry("b", Op.UNCHANGED, "F32", (1,)), Entry("a", Op.UNCHANGED, "F32", (1,))]
    with pytest.raises(PatchFormatError, match="names must increase"):
        make_header(HASH, HASH, entries)
    with pytest.raises(PatchFormatError, match="names must increase"):
        make_header(HASH, HASH, [entries[0], entries[0]])


def test_entries_without_a_payload_declare_none() -> None:
    entry = Entry("a", Op.REMOVED, "F32", (1,), codec_id=0, payload_len=4)
    with pytest.raises(PatchFormatError, match="carries no payload"):
        make_header(HASH, HASH, [entry])


def test_a_truncated_payload_is_truncated_not_anything_else() -> None:
    _, patch = sample()
    raw = patch.to_bytes()
    with pytest.raises(PatchTruncated, match="remain"):
        Patch.from_bytes(raw[:-1])


def test_diff_refuses_a_patch_its_devices_would_refuse() -> None:
    model = {"w": Tensor("F32", (4,), np.zeros(4, np.float32))}
    other = {"w": Tensor("F32", (4,), np.ones(4, np.float32))}
    with pytest.raises(PatchTooLarge):
        diff(model, other, limits=Limits(max_elements=3))


def test_payload_hashes_are_sha256_of_the_payload() -> None:
    _, patch = sample()
    for entry, payload in zip(patch.entries, patch.payloads, strict=True):
        assert entry.payload_sha256 == hashlib.sha256(payload).digest()
        assert entry.payload_len == len(payload)
