"""Static rANS over many per-context frequency tables, compiled with numba.

Why our own coder: the patch codecs code one symbol per weight under a context the decoder
computes per element. `constriction` decodes about 49 M symbols/s per core here and needs the
symbols grouped by context (a sort) first, which caps apply at about 60 MB/s of fp32 model; this
loop decodes each symbol under its own context in place, several times faster.

The coder is the byte-aligned rANS of Duda (arXiv:1311.2540) in the form of Giesen's ryg_rans,
with a 32-bit state kept in [2^16, 2^32), 16-bit renormalisation words and min(LANES, n)
states for n symbols, interleaved round-robin (symbol i uses state i % lanes) so consecutive
symbols do not wait on one another. Every table is normalised to exactly 2^PRECISION by
`normalize`, integer arithmetic only, so encoder and decoder build the same table on every
machine.

Stream layout (little-endian 16-bit words): the final state of each lane, two words each, low
word first, then the renormalisation words in the order the decoder reads them. The encoder
starts every lane at 2^16; the decoder checks that every lane ends there and that no word is
left over, so a corrupted stream is caught (the payload hash catches the rest). A stream of
only initial states (every symbol had probability 1) is written as no words at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from fedota.delta.errors import PatchFormatError

PRECISION = 12
TOTAL = 1 << PRECISION
LANES = 4
_LOW = 1 << 16
# Status codes the kernels return (numba functions do not raise our exceptions).
_OK, _SHORT, _LEFTOVER, _BAD_STATE, _NO_TABLE = 0, 1, 2, 3, 4


def normalize(counts: np.ndarray) -> np.ndarray:
    """Frequencies (int64) that sum to exactly 2^PRECISION, every seen symbol at least 1.

    Deterministic: scale down with floor, lift zeros to 1, then give the surplus to (or take the
    deficit from) the most frequent symbols, lowest index first on ties.

    Raises:
        PatchFormatError: more distinct symbols than the precision holds, or a negative count.
    """
    return _normalize_all(np.asarray(counts, dtype=np.int64).reshape(1, -1))[0]


def _normalize_all(counts: np.ndarray) -> np.ndarray:
    """`normalize` of each row of a (tables, alphabet) int64 array, in one compiled pass."""
    seen = (counts > 0).sum(axis=1)
    if bool((seen > TOTAL).any()) or bool((counts < 0).any()):
        raise PatchFormatError(
            f"a table has {int(seen.max())} symbols, at most {TOTAL} fit its precision"
        )
    freq = np.zeros_like(counts)
    _normalize_rows(np.ascontiguousarray(counts), freq)
    return freq


@numba.njit(cache=True, nogil=True)
def _normalize_rows(counts: np.ndarray, freq: np.ndarray) -> None:
    """`normalize` of each row into `freq` (zeroed), compiled: scale with floor, lift seen
    symbols to 1, then settle the difference from 2^PRECISION on the most frequent first."""
    for row in range(counts.shape[0]):
        total = 0
        for count in counts[row]:
            total += count
        if total == 0:
            continue
        deficit = TOTAL
        for a in range(counts.shape[1]):
            if counts[row, a] > 0:
                freq[row, a] = max(counts[row, a] * TOTAL // total, 1)
                deficit -= freq[row, a]
        order = np.argsort(-freq[row], kind="mergesort")  # stable: lowest index first on ties
        for index in order:
            if deficit == 0:
                break
            change = deficit if deficit > 0 else -min(-deficit, freq[row, index] - 1)
            freq[row, index] += change
            deficit -= change


def build_tables(
    tables: Sequence[np.ndarray], *, slots: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack normalised tables as the kernels want them.

    Returns:
        (freq (T, A) uint32, cumulative start (T, A) uint32, symbol of each slot (T, 2^P)
        uint16, or (1, 1) zeros when not `slots`, which only the decoder needs; a table with no
        symbols has all-zero frequencies and is refused when used).

    Raises:
        PatchFormatError: a table with more distinct symbols than the precision holds, or a
            negative count.
    """
    alphabet = max((t.size for t in tables), default=1) or 1
    counts = np.zeros((max(len(tables), 1), alphabet), dtype=np.int64)
    for row, table in enumerate(tables):
        counts[row, : table.size] = table
    freq = _normalize_all(counts).astype(np.uint32)
    cum = np.zeros_like(freq)
    np.cumsum(freq[:, :-1], axis=1, out=cum[:, 1:])
    if not slots:
        return freq, cum, np.zeros((1, 1), dtype=np.uint16)
    symbols = np.zeros((freq.shape[0], TOTAL), dtype=np.uint16)
    _fill_slots(freq, cum, symbols)
    return freq, cum, symbols


@numba.njit(cache=True, nogil=True)
def _fill_slots(freq: np.ndarray, cum: np.ndarray, symbols: np.ndarray) -> None:
    """The symbol of each of a table's 2^PRECISION slots (tables without symbols stay 0)."""
    for row in range(freq.shape[0]):
        for a in range(freq.shape[1]):
            for slot in range(cum[row, a], cum[row, a] + freq[row, a]):
                symbols[row, slot] = a


@numba.njit(cache=True, nogil=True)
def _encode(
    tokens: np.ndarray, contexts: np.ndarray, freq: np.ndarray, cum: np.ndarray
) -> tuple[np.ndarray, int]:
    n = tokens.size
    lanes = min(LANES, n)
    out = np.empty(n + 2 * lanes, dtype=np.uint16)
    head = out.size
    state = np.full(lanes, _LOW, dtype=np.uint64)
    lane = (n - 1) % lanes if n else 0
    for i in range(n - 1, -1, -1):
        ctx = contexts[i]
        symbol = tokens[i]
        f = np.uint64(freq[ctx, symbol])
        if f == 0:
            return out, -1
        x = state[lane]
        if x >= f << np.uint64(32 - PRECISION):
            head -= 1
            out[head] = np.uint16(x & np.uint64(0xFFFF))
            x >>= np.uint64(16)
        state[lane] = ((x // f) << np.uint64(PRECISION)) + (x % f) + np.uint64(cum[ctx, symbol])
        lane = lane - 1 if lane else lanes - 1
    for lane in range(lanes - 1, -1, -1):
        head -= 2
        out[head] = np.uint16(state[lane] & np.uint64(0xFFFF))
        out[head + 1] = np.uint16(state[lane] >> np.uint64(16))
    return out, head


@numba.njit(cache=True, nogil=True)
def _decode(
    words: np.ndarray,
    contexts: np.ndarray,
    freq: np.ndarray,
    cum: np.ndarray,
    symbols: np.ndarray,
    out: np.ndarray,
) -> int:
    lanes = min(LANES, out.size)
    if words.size < 2 * lanes:
        return _SHORT
    state = np.empty(lanes, dtype=np.uint32)
    for lane in range(lanes):
        state[lane] = np.uint32(words[2 * lane]) | (np.uint32(words[2 * lane + 1]) << 16)
    pos = 2 * lanes
    mask = np.uint32(TOTAL - 1)
    lane = 0
    for i in range(out.size):
        ctx = contexts[i]
        x = state[lane]
        slot = x & mask
        symbol = symbols[ctx, slot]
        f = freq[ctx, symbol]
        if f == 0:
            return _NO_TABLE
        x = f * (x >> np.uint32(PRECISION)) + slot - cum[ctx, symbol]
        if x < np.uint32(_LOW):
            if pos >= words.size:
                return _SHORT
            x = (x << np.uint32(16)) | np.uint32(words[pos])
            pos += 1
        state[lane] = x
        out[i] = symbol
        lane = lane + 1 if lane + 1 < lanes else 0
    if pos != words.size:
        return _LEFTOVER
    for lane in range(lanes):
        if state[lane] != np.uint32(_LOW):
            return _BAD_STATE
    return _OK


def _context_array(contexts: np.ndarray | int | None, n: int) -> np.ndarray:
    if contexts is None or isinstance(contexts, int):
        return np.zeros(n, dtype=np.uint8)
    if contexts.dtype.kind not in "ui" or contexts.size != n:
        raise ValueError("contexts must be one small unsigned integer per token")
    return np.ascontiguousarray(contexts)


def encode(tokens: np.ndarray, contexts: np.ndarray | None, tables: Sequence[np.ndarray]) -> bytes:
    """rANS-code `tokens[i]` under `tables[contexts[i]]` (contexts None: all under tables[0]).

    Raises:
        ValueError: a token the table of its context does not have (caller bug).
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    ctx = _context_array(contexts, tokens.size)
    freq, cum, _ = build_tables(tables if contexts is not None else tables[:1], slots=False)
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= freq.shape[1]):
        raise ValueError("a token is outside its table")
    if tokens.size and int(ctx.max()) >= freq.shape[0]:
        raise ValueError("a context has no table")
    out, head = _encode(tokens, ctx, freq, cum)
    if head < 0:
        raise ValueError("a token has zero frequency in its context's table")
    words = out[head:]
    if np.array_equal(words, _initial_states(words.size // 2)):
        return b""
    return words.astype("<u2").tobytes()


def _initial_states(lanes: int) -> np.ndarray:
    return np.tile(np.array([_LOW & 0xFFFF, _LOW >> 16], dtype=np.uint16), lanes)


def decode(
    stream: bytes | memoryview, contexts: np.ndarray | int, tables: Sequence[np.ndarray]
) -> np.ndarray:
    """Inverse of `encode`: the tokens (int32), given the same contexts (or, for a single
    context, the number of tokens) and tables.

    Raises:
        PatchFormatError: a ragged, short or over-long stream, a context without a table, or a
            stream that does not end where the encoder started.
    """
    if len(stream) % 2:
        raise PatchFormatError(f"rANS stream of {len(stream)} bytes is not whole 16-bit words")
    n = contexts if isinstance(contexts, int) else int(contexts.size)
    ctx = _context_array(contexts, n)
    freq, cum, symbols = build_tables(tables[:1] if isinstance(contexts, int) else tables)
    if n and int(ctx.max()) >= freq.shape[0]:
        raise PatchFormatError(f"context {int(ctx.max())} has no table")
    words = np.frombuffer(stream, dtype="<u2")
    if words.size == 0:
        words = _initial_states(min(LANES, n))
    out = np.empty(n, dtype=np.int32)
    status = _decode(words, ctx, freq, cum, symbols, out)
    if status != _OK:
        raise PatchFormatError(
            {
                _SHORT: "rANS stream ends before its last symbol",
                _LEFTOVER: "rANS stream has data left after its last symbol",
                _BAD_STATE: "rANS stream does not end in its initial state",
                _NO_TABLE: "a context codes symbols but has no table",
            }[status]
        )
    return out


__all__ = ["LANES", "PRECISION", "build_tables", "decode", "encode", "normalize"]
