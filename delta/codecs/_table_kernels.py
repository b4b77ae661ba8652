"""Compiled helpers of entropy.py: parsing stored frequency tables, fitting them, and
estimating coded bits.

Each loops over small integers where numpy would need a call per table or several passes over
a mostly empty (contexts x alphabet) array.
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
    how many counts are at least one half). Counts may be weighted (floats)."""
    bits = 0.0
    distinct = 0
    for row in range(hist.shape[0]):
        total = 0.0
        for value in hist[row]:
            total += value
        if total <= 0:
            continue
        log_total = math.log2(total)
        for value in hist[row]:
            if value > 0:
                bits += value * (log_total - math.log2(value))
            if value >= 0.5:
                distinct += 1
    return bits, distinct


@numba.njit(cache=True)
def _varint_bytes(value: int) -> int:
    """LEB128 bytes of a value below 2^21."""
    return 1 + (value >= 1 << 7) + (value >= 1 << 14)


@numba.njit(cache=True, nogil=True)
def fit_tables(hist: np.ndarray, precisions: np.ndarray, tables: np.ndarray) -> float:
    """For each context (row of `hist`), the table (written into `tables`, zeroed) that
    minimises its symbols' coded bits plus its own storage (entropy.write_tables): the counts
    scaled to about 2^precision in total, seen tokens kept at 1 or more, for the precision
    among `precisions` (ascending) that costs least; a precision too small to give every seen
    token a count is skipped, except the last. Returns the total estimated bits."""
    contexts, alphabet = hist.shape
    total_cost = 0.0
    for c in range(contexts):
        total = 0
        seen = 0
        length = 0
        for a in range(alphabet):
            if hist[c, a] > 0:
                total += hist[c, a]
                seen += 1
                length = a + 1
        floor = math.log2(max(seen, 1))
        best_cost = np.inf
        best_precision = -1
        for index in range(precisions.size):
            precision = precisions[index]
            if precision < floor + 1 and index < precisions.size - 1:
                continue
            scale = (1 << precision) / max(total, 1)
            table_total = 0
            for a in range(alphabet):
                if hist[c, a] > 0:
                    table_total += max(np.int64(np.rint(hist[c, a] * scale)), 1)
            log_total = math.log2(max(table_total, 1))
            bits = 0.0
            count_bytes = 0
            gap_bytes = 0
            previous = -1
            for a in range(alphabet):
                if hist[c, a] > 0:
                    count = max(np.int64(np.rint(hist[c, a] * scale)), 1)
                    bits += hist[c, a] * (log_total - math.log2(count))
                    count_bytes += _varint_bytes(count - 1)
                    gap_bytes += _varint_bytes(a - previous - 1)
                    previous = a
            if length == 0:
                table_bytes = 1
            elif seen == length:
                table_bytes = _varint_bytes(length) + 1 + count_bytes
            else:
                table_bytes = _varint_bytes(length) + _varint_bytes(seen) + gap_bytes + count_bytes
            cost = bits + 8 * table_bytes
            if cost < best_cost:
                best_cost = cost
                best_precision = precision
        scale = (1 << best_precision) / max(total, 1)
        for a in range(alphabet):
            tables[c, a] = max(np.int64(np.rint(hist[c, a] * scale)), 1) if hist[c, a] > 0 else 0
        total_cost += best_cost
    return total_cost


__all__ = [
    "BAD_END", "OK", "SHORT", "TOO_LARGE", "TOO_LONG", "entropy_bits", "fit_tables", "parse_tables",
]  # fmt: skip
