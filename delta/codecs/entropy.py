"""Shared entropy-coding helpers: hybrid integer tokens, raw bit fields, per-context frequency
tables and context-modelled rANS (rans.py).

The codecs built on these (lossless_ans, quantized) all turn a tensor into one small-alphabet
*token* per element, each coded under the model of a *context* the decoder can compute before
decoding (from the base tensor and earlier payload fields), plus raw bits for what the tokens
leave out. Conventions:

- Integers become tokens as JPEG XL's "hybrid uint" does (ISO/IEC 18181-1, HybridUintConfig with
  lsb_in_token = 0): a value below 2^split is its own token; a larger value v of bit length n+1
  becomes the token (split, n, the `msb` bits after the leading one) and its n - msb lower bits
  go raw. Small values are modelled exactly, large ones by magnitude class.
- Tables are integer counts, stored in the payload; both sides normalise them with the same
  integer arithmetic (rans.normalize), so the decoder never fits a model and every machine
  builds the same one.
- Each symbol is coded under its own context's table in one compiled loop (no grouping).

Everything read back is bounded before use; malformed input raises PatchFormatError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedota.delta.codecs import _table_kernels as _tables
from fedota.delta.codecs import rans
from fedota.delta.codecs.bitio import Reader, Writer
from fedota.delta.errors import PatchFormatError, PatchTruncated

# Largest single quantized count in a stored table (tables use at most 2^16 total precision).
MAX_COUNT = 1 << 20
# Quantization precisions (log2 of the table total) the encoder tries for each table.
_PRECISIONS = np.array([5, 7, 9, 11, rans.PRECISION])


# --- zigzag and hybrid tokens ---------------------------------------------------------------


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed integers to unsigned of the same width: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    bits = values.dtype.itemsize * 8
    unsigned = values.view(f"u{values.dtype.itemsize}")
    return (unsigned << 1) ^ (values >> (bits - 1)).view(unsigned.dtype)


def unzigzag(values: np.ndarray) -> np.ndarray:
    """Inverse of `zigzag`: unsigned words back to signed of the same width."""
    half = values >> values.dtype.type(1)
    sign = values & values.dtype.type(1)
    np.negative(sign, out=sign)  # unsigned: 1 -> all ones
    np.bitwise_xor(half, sign, out=half)
    return half.view(f"i{values.dtype.itemsize}")


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bit length of unsigned integers below 2^53 (0 for 0), as int64."""
    # frexp is exact on integers that float64 holds exactly: v = m * 2^e with 0.5 <= m < 1.
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def alphabet_size(split: int, msb: int, value_bits: int) -> int:
    """How many tokens a hybrid config needs for values below 2^value_bits."""
    return (1 << split) + max(0, value_bits - split) * (1 << msb)


def tokenize(
    values: np.ndarray, split: int, msb: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid-uint tokens of unsigned values below 2^32.

    Returns:
        (tokens int32 per value, positions of the escaped values (>= 2^split), their raw bit
        counts int64, their raw bits uint64).
    """
    if not 0 <= msb <= split <= 16:
        raise ValueError(f"need 0 <= msb <= split <= 16, got split={split} msb={msb}")
    tokens = values.astype(np.int32) if values.dtype.itemsize < 4 else values.astype(np.int64)
    escaped = np.flatnonzero(values >= (1 << split))
    wide = values[escaped].astype(np.uint64)
    top = bit_length(wide) - 1  # index of the leading one
    nraw = top - msb
    mantissa = (wide >> nraw.astype(np.uint64)).astype(np.int64) & ((1 << msb) - 1)
    tokens[escaped] = (1 << split) + ((top - split) << msb) + mantissa
    raw = wide & ((np.uint64(1) << nraw.astype(np.uint64)) - np.uint64(1))
    return tokens.astype(np.int32, copy=False), escaped, nraw, raw


def escapes(tokens: np.ndarray, split: int, msb: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of escape tokens and how many raw bits follow each (int64)."""
    escaped = np.flatnonzero(tokens >= (1 << split))
    over = tokens[escaped].astype(np.int64) - (1 << split)
    return escaped, split + (over >> msb) - msb


def detokenize(
    tokens: np.ndarray, escaped: np.ndarray, raw: np.ndarray, split: int, msb: int, dtype: str
) -> np.ndarray:
    """Values (unsigned `dtype`) from tokens, the escape positions and their raw bits (inverse
    of `tokenize`); every value must fit `dtype`."""
    values = tokens.astype(dtype)
    over = tokens[escaped].astype(np.int64) - (1 << split)
    nraw = (split + (over >> msb) - msb).astype(np.uint64)
    lead = ((1 << msb) | (over & ((1 << msb) - 1))).astype(np.uint64)
    values[escaped] = ((lead << nraw) | raw).astype(dtype)
    return values


# --- frequency tables -----------------------------------------------------------------------


def histograms(
    tokens: np.ndarray, contexts: np.ndarray | None, n_contexts: int, alphabet: int
) -> np.ndarray:
    """Counts of each token under each context, shape (n_contexts, alphabet), int64
    (contexts None: every token under context 0)."""
    if contexts is None:
        return np.bincount(tokens, minlength=alphabet)[None, :alphabet].copy()
    flat = contexts.astype(np.int64) * alphabet + tokens
    return np.bincount(flat, minlength=n_contexts * alphabet).reshape(n_contexts, alphabet)


def fit_tables(hist: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Quantized tables for each context's histogram (rows of `hist`), each at the precision
    that minimises its coded bits plus its own storage (`_table_kernels.fit_tables`).

    Returns:
        (tables, estimated total bits of symbols and tables).
    """
    hist = np.ascontiguousarray(hist, dtype=np.int64)
    tables = np.zeros_like(hist)
    cost = _tables.fit_tables(hist, _PRECISIONS, tables)
    last = np.where(tables > 0, np.arange(hist.shape[1]), -1).max(axis=1, initial=-1)
    out = [row[: int(end) + 1] for row, end in zip(tables, last, strict=True)]
    return out, float(cost)


def estimate_bits(hist: np.ndarray) -> float:
    """Quick estimate of `fit_tables`' total: the empirical entropy of each context's counts
    (integers, or float64 weights) plus ~2 bytes per distinct token for its table (for
    searches; fit_tables is exact)."""
    hist = np.asarray(hist)
    counts = hist if hist.dtype == np.float64 else hist.astype(np.int64)
    bits, distinct = _tables.entropy_bits(np.ascontiguousarray(counts))
    return float(bits + 16 * distinct)


_EMPTY_TABLE = np.zeros(1, dtype=np.int64)


def write_tables(out: Writer, tables: Sequence[np.ndarray]) -> None:
    """Append tables: per table varint length L (0: empty), then either a 0 byte and L dense
    counts, or the count of nonzero entries and (gap, count) pairs; counts stored minus one."""
    fields: list[np.ndarray] = []
    for table in tables:
        nonzero = np.flatnonzero(table)
        if nonzero.size == 0:
            fields.append(_EMPTY_TABLE)
            continue
        length = int(nonzero[-1]) + 1
        if nonzero.size == length:
            fields.append(np.array([length, 0], dtype=np.int64))
            fields.append(np.asarray(table[:length], dtype=np.int64) - 1)
        else:
            pairs = np.empty((nonzero.size, 2), dtype=np.int64)
            pairs[:, 0] = np.diff(nonzero, prepend=-1) - 1
            pairs[:, 1] = table[nonzero] - 1
            fields.append(np.array([length, nonzero.size], dtype=np.int64))
            fields.append(pairs.reshape(-1))
    if fields:
        out.varints(np.concatenate(fields))


_TABLE_ERRORS = {
    _tables.SHORT: "payload ends inside its tables",
    _tables.TOO_LONG: "a table field is a varint longer than 9 bytes",
    _tables.TOO_LARGE: "a table length, gap or count exceeds its bound",
    _tables.BAD_END: "a table's entries do not end where its length says",
}


def read_tables(src: Reader, n_tables: int, alphabet: int) -> list[np.ndarray]:
    """Read `n_tables` tables written by `write_tables`, tokens below `alphabet`.

    Raises:
        PatchFormatError: a length, gap or count out of bounds, or the payload ends early.
    """
    data = np.frombuffer(src.rest(), dtype=np.uint8)
    # Every table takes at least one byte: refuse a count the payload cannot hold before
    # allocating for it.
    if n_tables > data.size:
        raise PatchTruncated(f"{n_tables} tables cannot fit in {data.size} bytes")
    tables = np.zeros((n_tables, alphabet), dtype=np.int64)
    consumed, status = _tables.parse_tables(data, n_tables, alphabet, MAX_COUNT, tables)
    if status == _tables.SHORT:
        raise PatchTruncated(_TABLE_ERRORS[status])
    if status != _tables.OK:
        raise PatchFormatError(_TABLE_ERRORS[status])
    src.skip(consumed)
    ends = np.where(tables > 0, np.arange(alphabet), -1).max(axis=1, initial=-1) + 1
    return [row[: int(end)] for row, end in zip(tables, ends, strict=True)]


# --- context-modelled rANS ------------------------------------------------------------------


def ans_encode(
    tokens: np.ndarray, contexts: np.ndarray | None, tables: Sequence[np.ndarray]
) -> bytes:
    """rANS-code `tokens[i]` under `tables[contexts[i]]` (contexts None: all under tables[0]);
    see rans.py for the stream."""
    return rans.encode(tokens, contexts, tables)


def ans_decode(
    stream: bytes | memoryview, contexts: np.ndarray | int, tables: Sequence[np.ndarray]
) -> np.ndarray:
    """Inverse of `ans_encode`: the tokens (int32), given the same contexts (or, for a single
    context, the number of tokens) and tables.

    Raises:
        PatchFormatError: a ragged or invalid stream, a context used without a table, or a
            stream that is not exactly consumed.
    """
    return rans.decode(stream, contexts, tables)


__all__ = [
    "alphabet_size",
    "ans_decode",
    "ans_encode",
    "bit_length",
    "detokenize",
    "escapes",
    "estimate_bits",
    "fit_tables",
    "histograms",
    "read_tables",
    "tokenize",
    "unzigzag",
    "write_tables",
    "zigzag",
]
