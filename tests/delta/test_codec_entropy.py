"""The entropy-coding building blocks: zigzag, hybrid tokens, raw bit fields, varints,
frequency tables and context-grouped ANS, and how they refuse malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedota.delta.codecs import entropy
from fedota.delta.codecs.bitio import BIT_CHUNK, Reader, Writer, pack_bits, unpack_bits
from fedota.delta.errors import PatchFormatError

CONFIGS = [(0, 0), (2, 2), (4, 1), (8, 2), (10, 2)]


@given(hnp.arrays(st.sampled_from([np.int32, np.int16]), st.integers(0, 64)))
def test_zigzag_round_trips_and_keeps_small_values_small(values: np.ndarray) -> None:
    folded = entropy.zigzag(values)
    assert folded.dtype.kind == "u" and folded.dtype.itemsize == values.dtype.itemsize
    assert np.array_equal(entropy.unzigzag(folded), values)
    small = np.abs(values.astype(np.int64)) < 1000
    assert np.all(folded[small] <= 2 * np.abs(values[small].astype(np.int64)))


@pytest.mark.parametrize(("split", "msb"), CONFIGS)
@given(values=hnp.arrays(np.uint32, st.integers(0, 200)))
def test_hybrid_tokens_round_trip_through_raw_bits(
    split: int, msb: int, values: np.ndarray
) -> None:
    tokens, escaped, nraw, raw = entropy.tokenize(values, split, msb)
    assert int(tokens.max(initial=0)) < entropy.alphabet_size(split, msb, 32)
    found, widths = entropy.escapes(tokens, split, msb)
    assert np.array_equal(found, escaped) and np.array_equal(widths, nraw)
    unpacked = unpack_bits(Reader(pack_bits(raw, nraw)), widths)
    assert np.array_equal(entropy.detokenize(tokens, found, unpacked, split, msb, "<u4"), values)


def test_small_values_are_their_own_tokens() -> None:
    values = np.arange(300, dtype=np.uint32)
    tokens, escaped, _, _ = entropy.tokenize(values, 8, 2)
    assert np.array_equal(tokens[:256], values[:256])
    assert np.array_equal(escaped, np.arange(256, 300))


def test_bit_fields_cross_chunk_and_word_boundaries() -> None:
    rng = np.random.default_rng(5)
    widths = rng.integers(0, 33, BIT_CHUNK + 77).astype(np.int64)
    values = rng.integers(0, 2**32, widths.size, dtype=np.uint64) & ((1 << widths) - 1).astype(
        np.uint64
    )
    packed = pack_bits(values, widths)
    source = Reader(packed)
    assert np.array_equal(unpack_bits(source, widths), values)
    source.finish()


@pytest.mark.parametrize("widths", [[32, 0], [0], [31, 1, 0, 0], [5, 27, 0], []], ids=str)
def test_zero_width_fields_at_a_word_boundary(widths: list[int]) -> None:
    nbits = np.array(widths, dtype=np.int64)
    values = ((np.uint64(1) << nbits.astype(np.uint64)) - np.uint64(1)) & np.uint64(0xABCDEF12)
    source = Reader(pack_bits(values, nbits))
    assert np.array_equal(unpack_bits(source, nbits), values)
    source.finish()


@given(st.lists(st.tuples(st.integers(0, 32), st.integers(0, 2**32 - 1)), max_size=40))
def test_any_bit_fields_round_trip(fields: list[tuple[int, int]]) -> None:
    nbits = np.array([w for w, _ in fields], dtype=np.int64)
    values = np.array([v & ((1 << w) - 1) for w, v in fields], dtype=np.uint64)
    source = Reader(pack_bits(values, nbits))
    assert np.array_equal(unpack_bits(source, nbits), values)
    source.finish()


def test_bit_fields_refuse_a_short_payload() -> None:
    widths = np.full(10, 32, dtype=np.int64)
    with pytest.raises(PatchFormatError):
        unpack_bits(Reader(bytes(39)), widths)


@given(st.lists(st.integers(0, 2**52 - 1), max_size=40), st.integers(-1000, 1000))
def test_varints_round_trip(values: list[int], signed: int) -> None:
    out = Writer()
    out.varints(np.array(values, dtype=np.int64))
    out.svarint(signed)
    source = Reader(out.getvalue())
    assert source.varints(len(values), 2**52).tolist() == values
    assert source.svarint(-1000, 1000) == signed
    source.finish()


@pytest.mark.parametrize(
    ("raw", "count", "limit"),
    [(b"\x80", 1, 10), (b"\x05", 1, 4), (b"\x01", 2, 10), (b"\xff" * 9 + b"\x01", 1, 2**62)],
    ids=["cut", "over the bound", "missing", "too long"],
)
def test_bad_varints_are_refused(raw: bytes, count: int, limit: int) -> None:
    with pytest.raises(PatchFormatError):
        Reader(raw).varints(count, limit)


def test_reader_refuses_leftovers_and_overruns() -> None:
    source = Reader(b"\x01\x02")
    assert source.u8() == 1
    with pytest.raises(PatchFormatError):
        source.finish()
    with pytest.raises(PatchFormatError):
        source.take(2)


def _skewed(rng: np.random.Generator, size: int, contexts: int) -> tuple[np.ndarray, np.ndarray]:
    ctx = rng.integers(0, contexts, size)
    tokens = np.minimum(rng.geometric(0.4, size) - 1 + ctx, 40).astype(np.int32)
    return tokens, ctx.astype(np.uint8)


def test_tables_round_trip_and_estimates_match_the_stream(rng: np.random.Generator) -> None:
    tokens, ctx = _skewed(rng, 50_000, 5)
    tables, estimate = entropy.fit_tables(entropy.histograms(tokens, ctx, 5, 41))
    out = Writer()
    entropy.write_tables(out, tables)
    stored = out.getvalue()
    read = entropy.read_tables(Reader(stored), 5, 41)
    assert all(np.array_equal(a, b) for a, b in zip(tables, read, strict=True))
    stream = entropy.ans_encode(tokens, ctx, tables)
    assert abs(len(stream) + len(stored) - estimate / 8) < 0.01 * estimate / 8 + 16
    assert np.array_equal(entropy.ans_decode(stream, ctx, read), tokens)
    # within 1% of the empirical conditional entropy
    hist = entropy.histograms(tokens, ctx, 5, 41).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ideal = np.nansum(hist * np.log2(hist.sum(axis=1, keepdims=True) / hist)) / 8
    assert len(stream) < 1.01 * ideal + 16


def _coded_bits(hist: np.ndarray, table: np.ndarray) -> float:
    """Bits of a context's symbols under a table of counts, plus the table's stored bytes."""
    out = Writer()
    entropy.write_tables(out, [table])
    counts = np.zeros(hist.size)
    counts[: table.size] = table
    seen = hist > 0
    bits = float(np.sum(hist[seen] * np.log2(table.sum() / counts[seen])))
    return bits + 8 * len(out.getvalue())


def test_each_table_is_the_cheapest_precision_for_its_context(rng: np.random.Generator) -> None:
    """fit_tables scales each context's counts to one of a few totals; the one it picks costs
    no more (symbols plus the table's own bytes) than any other it may pick."""
    hist = (rng.pareto(1.0, (12, 90)) * (rng.random((12, 90)) < 0.6) * 50).astype(np.int64)
    hist[0, :] = 0
    hist[1, 3] = 10**7
    tables, _ = entropy.fit_tables(hist)
    for row, chosen in zip(hist, tables, strict=True):
        if not row.any():
            assert chosen.size == 0
            continue
        seen = row > 0
        assert np.array_equal(chosen[: row.size] > 0, seen[: chosen.size]) and chosen.size <= 90
        cost = _coded_bits(row, chosen)
        for precision in (5, 7, 9, 11, 12):
            if precision < np.log2(seen.sum()) + 1 and precision != 12:
                continue
            scaled = np.where(seen, np.maximum(np.rint(row * (2**precision / row.sum())), 1), 0)
            other = scaled[: np.flatnonzero(seen)[-1] + 1].astype(np.int64)
            assert cost <= _coded_bits(row, other) + 1e-6


def test_a_single_context_needs_no_context_array(rng: np.random.Generator) -> None:
    tokens, _ = _skewed(rng, 1000, 1)
    tables, _ = entropy.fit_tables(entropy.histograms(tokens, None, 1, 41))
    stream = entropy.ans_encode(tokens, None, tables)
    assert np.array_equal(entropy.ans_decode(stream, tokens.size, tables), tokens)


def test_empty_contexts_and_empty_streams(rng: np.random.Generator) -> None:
    tables, _ = entropy.fit_tables(np.zeros((3, 4), dtype=np.int64))
    assert all(t.size == 0 for t in tables)
    empty = np.zeros(0, dtype=np.uint8)
    assert (
        entropy.ans_decode(
            entropy.ans_encode(np.zeros(0, np.int32), empty, tables), empty, tables
        ).size
        == 0
    )


@pytest.mark.parametrize(
    "stream",
    [b"\x01\x02\x03", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00" * 3, b"\xff" * 64],
    ids=["ragged", "zero word", "leftover", "garbage"],
)
def test_bad_streams_raise_patch_format_error(stream: bytes) -> None:
    tables = [np.array([5, 3, 1])]
    with pytest.raises(PatchFormatError):
        entropy.ans_decode(stream, np.zeros(4, np.uint8), tables)


def test_a_context_without_a_table_is_refused() -> None:
    with pytest.raises(PatchFormatError):
        entropy.ans_decode(b"", np.zeros(3, np.uint8), [np.zeros(0, np.int64)])


@pytest.mark.parametrize(
    "raw",
    [b"\x05\x00", b"\x90\x03", b"\x03\x02\x00\x00\x05\x00", b"\x03\x02\x04\x00\x05\x00"],
    ids=["cut dense", "too long", "gaps past the end", "gaps short of the end"],
)
def test_bad_tables_raise_patch_format_error(raw: bytes) -> None:
    with pytest.raises(PatchFormatError):
        entropy.read_tables(Reader(raw), 1, 100)


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_random_table_bytes_never_crash(raw: bytes) -> None:
    try:
        tables = entropy.read_tables(Reader(raw), 3, 50)
    except PatchFormatError:
        return
    assert all(t.size <= 50 and np.all(t >= 0) for t in tables)
