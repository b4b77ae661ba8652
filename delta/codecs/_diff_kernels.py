"""Compiled inner loops of diff-ans (lossless_ans.py): one pass per tensor part each way.

Encoding: from base and target words of the chosen rows, each element's context (a lookup on
the top bits of its base word), its hybrid-uint token (entropy.py) of the zigzagged wrapping
difference, and the raw bits below the token, written LSB first into 32-bit words.
Decoding: rANS-decode each token under its context, read its raw bits, un-zigzag and add to
the base word, straight into the output: no temporaries of the tensor's size.

Words are handled as uint64 and masked to the storage width (`width_mask`), so one compiled
function serves 16- and 32-bit floats alike.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fedota.delta.codecs.rans import LANES, PRECISION

_LOW = 1 << 16
OK, SHORT, LEFTOVER, BAD_STATE, NO_TABLE = 0, 1, 2, 3, 4


@numba.njit(cache=True, nogil=True)
def tokenize(
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
    width_mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    sign_shift = np.uint64(width - 1)
    escape = np.uint64(1) << np.uint64(split)
    mant_mask = (np.uint64(1) << np.uint64(msb)) - np.uint64(1)
    buf = np.uint64(0)
    nbits = 0
    pos = 0
    k = 0
    for r in range(rows.size):
        start = rows[r] * cols
        for j in range(start, start + cols):
            b = np.uint64(base[j])
            d = (np.uint64(target[j]) - b) & width_mask
            zig = ((d << np.uint64(1)) & width_mask) ^ (
                width_mask if (d >> sign_shift) & np.uint64(1) else np.uint64(0)
            )
            ctx = lut[(b >> np.uint64(shift)) & np.uint64(index_mask)]
            contexts[k] = ctx
            if zig < escape:
                tokens[k] = zig
                hist[ctx, zig] += 1
            else:
                top = math.frexp(float(zig))[1] - 1
                nraw = top - msb
                mant = (zig >> np.uint64(nraw)) & mant_mask
                token = escape + np.uint64((top - split) << msb) + mant
                tokens[k] = token
                hist[ctx, token] += 1
                if nraw:
                    buf |= (zig & ((np.uint64(1) << np.uint64(nraw)) - np.uint64(1))) << np.uint64(
                        nbits
                    )
                    nbits += nraw
                    if nbits >= 32:
                        raw[pos] = buf & np.uint64(0xFFFFFFFF)
                        pos += 1
                        buf >>= np.uint64(32)
                        nbits -= 32
            k += 1
    if nbits:
        raw[pos] = buf
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def histogram(
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
    width_mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    sign_shift = np.uint64(width - 1)
    escape = np.uint64(1) << np.uint64(split)
    mant_mask = (np.uint64(1) << np.uint64(msb)) - np.uint64(1)
    raw_bits = 0
    for j in positions:
        b = np.uint64(base[j])
        d = (np.uint64(target[j]) - b) & width_mask
        zig = ((d << np.uint64(1)) & width_mask) ^ (
            width_mask if (d >> sign_shift) & np.uint64(1) else np.uint64(0)
        )
        ctx = lut[(b >> np.uint64(shift)) & np.uint64(index_mask)]
        if zig < escape:
            hist[ctx, zig] += 1
        else:
            top = math.frexp(float(zig))[1] - 1
            mant = (zig >> np.uint64(top - msb)) & mant_mask
            hist[ctx, escape + np.uint64((top - split) << msb) + mant] += 1
            raw_bits += top - msb
    return raw_bits


@numba.njit(cache=True, nogil=True)
def decode(
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
    n = rows.size * cols
    lanes = min(LANES, n)
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
    escape = 1 << split
    slot_mask = np.uint32((1 << PRECISION) - 1)
    buf = np.uint64(0)
    nbits = 0
    rpos = 0
    lane = 0
    for r in range(rows.size):
        start = rows[r] * cols
        for j in range(start, start + cols):
            b = np.uint64(base[j])
            ctx = lut[(b >> np.uint64(shift)) & np.uint64(index_mask)]
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
            if token < escape:
                zig = np.uint64(token)
            else:
                over = int(token) - escape
                nraw = split + (over >> msb) - msb
                lead = np.uint64((1 << msb) | (over & ((1 << msb) - 1)))
                if nbits < nraw:
                    if rpos >= raw.size:
                        return SHORT
                    buf |= np.uint64(raw[rpos]) << np.uint64(nbits)
                    rpos += 1
                    nbits += 32
                low = buf & ((np.uint64(1) << np.uint64(nraw)) - np.uint64(1))
                buf >>= np.uint64(nraw)
                nbits -= nraw
                zig = (lead << np.uint64(nraw)) | low
            d = (zig >> np.uint64(1)) ^ (np.uint64(0) - (zig & np.uint64(1)))
            out[j] = (b + d) & width_mask
    if wpos != words.size or rpos != raw.size or buf != 0:
        return LEFTOVER
    for lane in range(lanes):
        if state[lane] != np.uint32(_LOW):
            return BAD_STATE
    return OK


__all__ = [
    "BAD_STATE", "LEFTOVER", "NO_TABLE", "OK", "SHORT", "decode", "histogram", "tokenize",
]  # fmt: skip
