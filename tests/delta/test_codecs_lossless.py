"""The built-in lossless codecs (raw, zstd, bitdiff-planes, sparse) and their building blocks."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from delta_helpers import adam_like
from hypothesis import given
from hypothesis import strategies as st

from fedota.delta import PatchFormatError, Tensor
from fedota.delta.codecs import _planes, _zstd
from fedota.delta.codecs.base import Budget
from fedota.delta.codecs.bitdiff import BitdiffCodec
from fedota.delta.codecs.raw import RawCodec, ZstdCodec
from fedota.delta.codecs.sparse import SparseCodec, decode_varints, encode_varints

LOSSLESS = Budget()


@given(st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_varints_round_trip(values: list[int]) -> None:
    array = np.array(values, dtype=np.uint64)
    raw = encode_varints(array)
    assert decode_varints(raw, len(values)).tolist() == values
    assert len(raw) == sum(max(1, -(-v.bit_length() // 7)) for v in values)


@pytest.mark.parametrize(
    ("raw", "count"),
    [(b"\x80", 1), (b"\x01\x02", 1), (b"\x01", 2), (b"\xff" * 10 + b"\x01", 1), (b"", 1)],
    ids=["cut", "extra", "missing", "too long", "empty"],
)
def test_bad_varints_are_refused(raw: bytes, count: int) -> None:
    with pytest.raises(PatchFormatError):
        decode_varints(raw, count)


@pytest.mark.parametrize(
    ("dtype", "words"),
    [("F32", "<u4"), ("F16", "<u2"), ("BF16", "<u2"), ("I8", "u1"), ("I32", "<u4"), ("I4", "u1")],
)
def test_differences_invert_and_wrap(dtype: str, words: str, rng: np.random.Generator) -> None:
    info = np.iinfo(words)
    base = rng.integers(0, info.max, 1000, dtype=words, endpoint=True)
    target = rng.integers(0, info.max, 1000, dtype=words, endpoint=True)
    zigzag = _planes.difference(base, target, dtype)
    assert _planes.add_difference(base, zigzag, dtype).tolist() == target.tolist()


def test_a_one_ulp_change_is_a_small_integer_not_a_carry_chain() -> None:
    base = np.array([0x3F7FFFFF], np.uint32)  # just below 1.0
    target = np.array([0x3F800000], np.uint32)  # 1.0: XOR would be 0x00FFFFFF
    assert _planes.difference(base, target, "F32").tolist() == [2]  # zigzag(+1)
    assert _planes.difference(target, base, "F32").tolist() == [1]  # zigzag(-1)


def test_int4_differs_nibble_by_nibble() -> None:
    base = np.array([0x0F, 0xF0], np.uint8)
    target = np.array([0x00, 0x00], np.uint8)  # low nibble 15 -> 0 (+1 mod 16); high likewise
    zigzag = _planes.difference(base, target, "I4")
    assert zigzag.tolist() == [0x02, 0x20]  # +1 in one nibble, the other untouched
    assert _planes.add_difference(base, zigzag, "I4").tolist() == [0x00, 0x00]


def test_bitdiff_beats_plain_zstd_on_a_fine_tune(rng: np.random.Generator) -> None:
    old, new = adam_like(rng, (256, 256))
    planes = BitdiffCodec().encode(old, new, LOSSLESS)
    plain = ZstdCodec().encode(old, new, LOSSLESS)
    assert planes is not None and plain is not None
    assert len(planes.payload) < 0.6 * len(plain.payload)


def test_bitdiff_elides_zero_planes() -> None:
    old = Tensor("F32", (1000,), np.ones(1000, np.float32))
    payload = BitdiffCodec().encode(old, old, LOSSLESS)
    assert payload is not None and len(payload.payload) == 4 * 9  # four empty plane headers


def test_sparse_applies_only_to_few_changes(rng: np.random.Generator) -> None:
    old = Tensor("F32", (100,), rng.normal(size=100).astype(np.float32))
    few = old.data.copy()
    few[:25] += 1
    many = old.data.copy()
    many[:26] += 1
    assert SparseCodec().encode(old, Tensor("F32", (100,), few), LOSSLESS) is not None
    assert SparseCodec().encode(old, Tensor("F32", (100,), many), LOSSLESS) is None


@pytest.mark.parametrize("codec", [BitdiffCodec(), SparseCodec()])
def test_base_relative_codecs_need_a_matching_base(codec: BitdiffCodec | SparseCodec) -> None:
    tensor = Tensor("F32", (2,), np.ones(2, np.float32))
    assert codec.encode(None, tensor, LOSSLESS) is None
    assert codec.encode(Tensor("F32", (1, 2), tensor.data), tensor, LOSSLESS) is None
    with pytest.raises(PatchFormatError, match="needs a base"):
        codec.decode(None, "F32", (2,), b"")


def test_raw_and_zstd_check_the_size() -> None:
    with pytest.raises(PatchFormatError, match="needs 8 bytes"):
        RawCodec().decode(None, "F32", (2,), b"\x00" * 7)
    frame = zstandard.ZstdCompressor().compress(b"\x00" * 12)
    with pytest.raises(PatchFormatError, match="declares 12"):
        ZstdCodec().decode(None, "F32", (2,), frame)


def test_zstd_frames_must_declare_their_size() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
    with pytest.raises(PatchFormatError, match="declares -1"):
        _zstd.decompress(frame, 3)
    with pytest.raises(PatchFormatError, match="bad zstd frame"):
        _zstd.decompress(b"\x00\x01", 3)
    good = _zstd.compress(b"abc")
    with pytest.raises(PatchFormatError, match="bad zstd frame"):
        _zstd.decompress(good + b"\x00", 3)
    assert _zstd.decompress(good, 3) == b"abc"
