"""Compiled entropy-coding loops: hybrid-uint tokens (entropy.py) with their raw bits packed
LSB first into 32-bit words, for diff-ans (lossless_ans.py) and quant-ans (quantized.py).

diff-ans, one pass per tensor part each way: from base and target words of the chosen rows,
each element's context (a lookup on the top bits of its base word), the token of the zigzagged
wrapping difference and the raw bits below it; decoding rANS-decodes each token under its
context, reads its raw bits, un-zigzags and adds to the base word, straight into the output.
Words are uint64 masked to the storage width, so one function serves 16- and 32-bit floats.

quant-ans: tokens of the coded residuals, their raw bits in chunks of BIT_CHUNK escaped values
(each chunk padded to whole words: bitio.pack_bits' layout), and the histograms its searches
estimate bits from.

Everything a loop calls lives in this file: numba's cache is keyed on the source file of the
cached function only, so a helper in another file could change without invalidating compiled
callers. The helpers take and return scalars only: an array argument costs a reference-count
update per call, which doubles a per-element loop's time; and each is one expression, since
several return statements compile to branches LLVM no longer turns into selects.
Values are uint64 throughout: numba, like numpy, turns a mix of signed and unsigned 64-bit
integers into float64, so operands are cast explicitly.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fedota.delta.codecs.rans import LANES, PRECISION

_LOW = 1 << 16  # the rANS state's lower bound (rans.py)
_WORD = np.uint64(0xFFFFFFFF)
OK, SHORT, LEFTOVER, BAD_STATE, NO_TABLE, TOO_LARGE = 0, 1, 2, 3, 4, 5
# Raw bits of quant-ans escapes are packed in chunks of this many escaped values, each chunk
# padded to whole 32-bit words (bitio.BIT_CHUNK).
BIT_CHUNK = 1 << 20


# --- scalar helpers ---------------------------------------------------------------------


@intrinsic
def _bit_length(typingctx, value):  # type: ignore[no-untyped-def]
    """Bits needed for an unsigned integer (0 for 0): one count-leading-zeros instruction
    (math.frexp, its portable stand-in, costs a library call per value)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        (word,) = args
        width = word.type.width
        zeros = builder.ctlz(word, ir.Constant(ir.IntType(1), 0))
        length = builder.sub(ir.Constant(word.type, width), zeros)
        return builder.zext(length, ir.IntType(64)) if width < 64 else length

    return types.int64(value), codegen


@numba.njit(cache=True)
def _hybrid(value: np.uint64, split: int, msb: int) -> tuple[int, int]:
    """(token, raw bit count) of `value`: itself below 2^split, else its magnitude class and
    the `msb` bits after its leading one; the raw bits are value's lowest `count` bits."""
    top = _bit_length(value) - 1
    count = top - msb
    mask = (np.uint64(1) << np.uint64(msb)) - np.uint64(1)
    lead = np.int64((value >> np.uint64(max(count, 0))) & mask)
    escaped = value >= np.uint64(1) << np.uint64(split)
    token = (np.int64(1) << split) + ((top - split) << msb) + lead
    return (token, count) if escaped else (np.int64(value), 0)


@numba.njit(cache=True)
def _unhybrid(token: int, split: int, msb: int) -> tuple[np.uint64, int]:
    """(value without its raw bits, raw bit count) of a token: value = lead | raw bits."""
    over = token - (1 << split)
    count = split + (over >> msb) - msb
    lead = np.uint64((1 << msb) | (over & ((1 << msb) - 1))) << np.uint64(max(count, 0))
    return (lead, count) if over >= 0 else (np.uint64(token), 0)


@numba.njit(cache=True)
def _push(buf: np.uint64, nbits: int, value: np.uint64, count: int) -> np.uint64:
    """`buf` with the low `count` (<= 32) bits of `value` appended above its `nbits` (< 32);
    the caller adds `count` to nbits and moves a full low word out once it reaches 32."""
    return buf | ((value & ((np.uint64(1) << np.uint64(count)) - np.uint64(1))) << np.uint64(nbits))


@numba.njit(cache=True)
def _low_bits(buf: np.uint64, count: int) -> np.uint64:
    return buf & ((np.uint64(1) << np.uint64(count)) - np.uint64(1))


@numba.njit(cache=True)
def _zigzag(value: int) -> np.uint64:
    """0, -1, 1, -2 -> 0, 1, 2, 3."""
    return np.uint64(value * 2) if value >= 0 else np.uint64(-2 * value - 1)


@numba.njit(cache=True)
def _unzigzag(value: np.uint64) -> np.uint64:
    """0, 1, 2, 3 -> 0, -1, 1, -2 as wrapping 64-bit words."""
    return (value >> np.uint64(1)) ^ (np.uint64(0) - (value & np.uint64(1)))


@numba.njit(cache=True)
def _difference(b: np.uint64, t: np.uint64, width: int) -> np.uint64:
    """Zigzag of the wrapping difference t - b of `width`-bit words."""
    mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    d = (t - b) & mask
    return ((d << np.uint64(1)) & mask) ^ ((np.uint64(0) - (d >> np.uint64(width - 1))) & mask)


@numba.njit(cache=True)
def _key(b: np.uint64, shift: int, index_mask: int) -> np.uint64:
    """The index into the context lookup of a base word: its top bits."""
    return (b >> np.uint64(shift)) & np.uint64(index_mask)


# --- diff-ans -----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def diff_tokenize(
    base: np.ndarray,
    target: np.ndarray,
    rows: np.ndarray,
    cols: int,
    lut: np.ndarray,
    shift: int,
    index_mask: int,
    width: int,
    split: int,
    msb: int,
    tokens: np.ndarray,
    contexts: np.ndarray,
    raw: np.ndarray,
    hist: np.ndarray,
) -> int:
    """Fill `tokens` and `contexts` (one per element of `rows`), `raw`, and count each token
    in `hist[context, token]`; return the number of raw words written (`raw` must hold one
    word per element plus one)."""
    buf = np.uint64(0)
    nbits = 0
    pos = 0
    k = 0
    for r in range(rows.size):
        start = rows[r] * cols
        for j in range(start, start + cols):
            b = np.uint64(base[j])
            zig = _difference(b, np.uint64(target[j]), width)
            ctx = lut[_key(b, shift, index_mask)]
            token, count = _hybrid(zig, split, msb)
            contexts[k] = ctx
            tokens[k] = token
            hist[ctx, token] += 1
            k += 1
            if count > 0:
                buf = _push(buf, nbits, zig, count)
                nbits += count
                if nbits >= 32:
                    raw[pos] = buf & _WORD
                    pos += 1
                    buf >>= np.uint64(32)
                    nbits -= 32
    if nbits:
        raw[pos] = buf
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def diff_histogram(
    base: np.ndarray,
    target: np.ndarray,
    positions: np.ndarray,
    lut: np.ndarray,
    shift: int,
    index_mask: int,
    width: int,
    split: int,
    msb: int,
    hist: np.ndarray,
) -> int:
    """Add each sampled element's token to `hist[context, token]`; return its raw bits."""
    raw_bits = 0
    for j in positions:
        b = np.uint64(base[j])
        token, count = _hybrid(_difference(b, np.uint64(target[j]), width), split, msb)
        hist[lut[_key(b, shift, index_mask)], token] += 1
        raw_bits += count
    return raw_bits


@numba.njit(cache=True, nogil=True)
def diff_decode(
    base: np.ndarray,
    rows: np.ndarray,
    cols: int,
    lut: np.ndarray,
    shift: int,
    index_mask: int,
    width: int,
    split: int,
    msb: int,
    words: np.ndarray,
    freq: np.ndarray,
    cum: np.ndarray,
    symbols: np.ndarray,
    raw: np.ndarray,
    out: np.ndarray,
) -> int:
    """Write base + difference for every element of `rows` into `out`; a status code."""
    lanes = min(LANES, rows.size * cols)
    if words.size == 0:
        state = np.full(lanes, _LOW, dtype=np.uint32)
        wpos = 0
    else:
        if words.size < 2 * lanes:
            return SHORT
        state = np.empty(lanes, dtype=np.uint32)
        for lane in range(lanes):
            state[lane] = np.uint32(words[2 * lane]) | (np.uint32(words[2 * lane + 1]) << 16)
        wpos = 2 * lanes
    width_mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    slot_mask = np.uint32((1 << PRECISION) - 1)
    escape = 1 << split
    buf = np.uint64(0)
    nbits = 0
    rpos = 0
    lane = 0
    for r in range(rows.size):
        start = rows[r] * cols
        for j in range(start, start + cols):
            b = np.uint64(base[j])
            ctx = lut[_key(b, shift, index_mask)]
            x = state[lane]
            slot = x & slot_mask
            token = symbols[ctx, slot]
            f = freq[ctx, token]
            if f == 0:
                return NO_TABLE
            x = f * (x >> np.uint32(PRECISION)) + slot - cum[ctx, token]
            if x < np.uint32(_LOW):
                if wpos >= words.size:
                    return SHORT
                x = (x << np.uint32(16)) | np.uint32(words[wpos])
                wpos += 1
            state[lane] = x
            lane = lane + 1 if lane + 1 < lanes else 0
            zig = np.uint64(token)
            if token >= escape:
                zig, count = _unhybrid(np.int64(token), split, msb)
                if nbits < count:
                    if rpos >= raw.size:
                        return SHORT
                    buf |= np.uint64(raw[rpos]) << np.uint64(nbits)
                    rpos += 1
                    nbits += 32
                zig |= _low_bits(buf, count)
                buf >>= np.uint64(count)
                nbits -= count
            out[j] = (b + _unzigzag(zig)) & width_mask
    if wpos != words.size or rpos != raw.size or buf != 0:
        return LEFTOVER
    for lane in range(lanes):
        if state[lane] != np.uint32(_LOW):
            return BAD_STATE
    return OK


# --- quant-ans ----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def quant_tokenize(
    symbols: np.ndarray, split: int, msb: int, tokens: np.ndarray, raw: np.ndarray, hist: np.ndarray
) -> int:
    """Tokens of the symbols into `tokens`, counted in `hist`, their raw bits into `raw` in
    BIT_CHUNK chunks of escaped values (each padded to a whole word); the raw words used."""
    buf = np.uint64(0)
    nbits = 0
    pos = 0
    escaped = 0
    for i in range(symbols.size):
        zig = np.uint64(symbols[i])
        token, count = _hybrid(zig, split, msb)
        tokens[i] = token
        hist[token] += 1
        if token >= 1 << split:
            buf = _push(buf, nbits, zig, count)
            nbits += count
            if nbits >= 32:
                raw[pos] = buf & _WORD
                pos += 1
                buf >>= np.uint64(32)
                nbits -= 32
            escaped += 1
            if escaped % BIT_CHUNK == 0 and nbits:
                raw[pos] = buf
                pos += 1
                buf = np.uint64(0)
                nbits = 0
    if nbits:
        raw[pos] = buf
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def quant_detokenize(
    tokens: np.ndarray, raw: np.ndarray, split: int, msb: int, limit: int, out: np.ndarray
) -> int:
    """Inverse of `quant_tokenize` into `out` (uint32): OK, SHORT (raw bits run out),
    LEFTOVER (raw words or nonzero padding left) or TOO_LARGE (a symbol >= `limit`)."""
    buf = np.uint64(0)
    nbits = 0
    pos = 0
    escaped = 0
    for i in range(tokens.size):
        value, count = _unhybrid(np.int64(tokens[i]), split, msb)
        if tokens[i] >= 1 << split:
            if escaped and escaped % BIT_CHUNK == 0:
                if buf != 0:
                    return LEFTOVER
                nbits = 0
            escaped += 1
            if nbits < count:
                if pos >= raw.size:
                    return SHORT
                buf |= np.uint64(raw[pos]) << np.uint64(nbits)
                pos += 1
                nbits += 32
            value |= _low_bits(buf, count)
            buf >>= np.uint64(count)
            nbits -= count
        if value >= np.uint64(limit):
            return TOO_LARGE
        out[i] = value
    if pos != raw.size or buf != 0:
        return LEFTOVER
    return OK


@numba.njit(cache=True, nogil=True)
def context_histogram(tokens: np.ndarray, contexts: np.ndarray, hist: np.ndarray) -> None:
    """Count each token under its context: hist[contexts[i], tokens[i]] += 1."""
    for i in range(tokens.size):
        hist[contexts[i], tokens[i]] += 1


@numba.njit(cache=True, nogil=True)
def token_histogram(
    symbols: np.ndarray, cols: int, row_weight: np.ndarray, split: int, msb: int, hist: np.ndarray
) -> float:
    """Add the tokens of rows of symbols to `hist`, each weighted by its row's weight; return
    their raw bits, weighted alike."""
    raw_bits = 0.0
    for row in range(symbols.size // cols):
        weight = row_weight[row]
        for j in range(row * cols, row * cols + cols):
            token, count = _hybrid(np.uint64(symbols[j]), split, msb)
            hist[token] += weight
            raw_bits += weight * count
    return raw_bits


@numba.njit(cache=True, nogil=True)
def factor_tokens(
    values: np.ndarray, contexts: np.ndarray, split: int, msb: int, hist: np.ndarray
) -> int:
    """Count the tokens of signed `values` (zigzagged) under their `contexts` in `hist`;
    return their raw bits."""
    raw_bits = 0
    for i in range(values.size):
        token, count = _hybrid(_zigzag(np.int64(values[i])), split, msb)
        hist[contexts[i], token] += 1
        raw_bits += count
    return raw_bits


__all__ = [
    "BAD_STATE", "BIT_CHUNK", "LEFTOVER", "NO_TABLE", "OK", "SHORT", "TOO_LARGE",
    "context_histogram", "diff_decode", "diff_histogram", "diff_tokenize", "factor_tokens",
    "quant_detokenize", "quant_tokenize", "token_histogram",
]  # fmt: skip
