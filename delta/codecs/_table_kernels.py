"""Compiled helpers of entropy.py: parsing stored frequency tables and estimating coded bits.

Both loop over small integers where numpy would need a call per table or a pass over a mostly
empty (contexts x alphabet) array.
"""

from __future__ import annotations

import math

import numba
import numpy as np

OK, SHORT, TOO_LONG, TOO_LARGE, BAD_END = 0, 1, 2, 3, 4
_MAX_VARINT_BYTES = 9


@numba.njit(cache=True, nogil=True)
def _varint(data: np.ndarray, pos: int, limit: int) -> tuple[int, int, int]:
    """(value, next position, status) of the LEB128 varint at `pos`."""
    value = 0
    for k in range(_MAX_VARINT_BYTES):
        if pos >= data.size:
            return 0, pos, SHORT
        byte = int(data[pos])
        pos += 1
        value |= (byte & 0x7F) << (7 * k)
        if byte < 0x80:
            if value > limit:
                return 0, pos, TOO_LARGE
            return value, pos, OK
    return 0, pos, TOO_LONG


@numba.njit(cache=True, nogil=True)
def parse_tables(
    data: np.ndarray, n_tables: int, alphabet: int, max_count: int, tables: np.ndarray
) -> tuple[int, int]:
    """Fill `tables` (n_tables, alphabet), zeroed, from the format of entropy.write_tables;
    return (bytes consumed, status)."""
    pos = 0
    for t in range(n_tables):
        length, pos, status = _varint(data, pos, alphabet)
        if status != OK:
            return pos, status
        if length == 0:
            continue
        nonzero, pos, status = _varint(data, pos, length)
        if status != OK:
            return pos, status
        if nonzero == 0:
            for i in range(length):
                count, pos, status = _varint(data, pos, max_count - 1)
                if status != OK:
                    return pos, status
                tables[t, i] = count + 1
            continue
        at = -1
        for _ in range(nonzero):
            gap, pos, status = _varint(data, pos, length)
            if status != OK:
                return pos, status
            count, pos, status = _varint(data, pos, max_count - 1)
            if status != OK:
                return pos, status
            at += gap + 1
            if at >= length:
                return pos, BAD_END
            tables[t, at] = count + 1
        if at != length - 1:
            return pos, BAD_END
    return pos, OK


@numba.njit(cache=True, nogil=True)
def entropy_bits(hist: np.ndarray) -> tuple[float, int]:
    """(sum over rows of the empirical entropy of the row's counts, in bits, times its total;
    how many counts are nonzero)."""
    bits = 0.0
    distinct = 0
    for row in range(hist.shape[0]):
        total = 0
        for value in hist[row]:
            total += value
        if total == 0:
            continue
        log_total = math.log2(total)
        for value in hist[row]:
            if value > 0:
                bits += value * (log_total - math.log2(value))
                distinct += 1
    return bits, distinct


__all__ = ["BAD_END", "OK", "SHORT", "TOO_LARGE", "TOO_LONG", "entropy_bits", "parse_tables"]
