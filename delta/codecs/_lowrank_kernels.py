"""Compiled loop of the low-rank factors' encoder (lowrank.py): rate-distortion optimised
rounding of a factor's entries. Encoder only; nothing a decoder runs.

Everything the loop calls lives in this file: numba's cache is keyed on the source file of
the cached function only.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def rdo_round(
    values: np.ndarray,
    weight: np.ndarray,
    token_of: np.ndarray,
    raw: np.ndarray,
    classes: int,
    limit: int,
    out: np.ndarray,
) -> None:
    """Round `values` (entries x columns, C order) into `out` (int32, same shape): each entry
    the nearest integer (clipped to +-limit) or, where that is farther from zero, the next one
    toward zero, whichever costs less in bits plus `weight[column]` times its squared error.

    Bits: the token (`token_of`, by zigzagged value) under its column's class table plus the
    raw bits (`raw`), the tables and classes those of the nearest integers: a column's class
    is twice the log2 of its RMS (clipped to 0..classes-1), its table the smoothed counts of
    its class's tokens (lowrank.write_factors' contexts).
    """
    rows, rank = values.shape
    alphabet = int(token_of.max()) + 1
    counts = np.zeros((rank, alphabet))
    squares = np.zeros(rank)
    for i in range(rows):
        for k in range(rank):
            v = min(max(np.rint(values[i, k]), -limit), limit)
            near = np.int64(v)
            counts[k, token_of[(near << 1) ^ (near >> 63)]] += 1.0
            squares[k] += v * v
    column_class = np.zeros(rank, dtype=np.int64)
    hist = np.full((classes, alphabet), 0.5)
    for k in range(rank):
        rms = max(np.sqrt(squares[k] / max(rows, 1)), 0.5)
        column_class[k] = min(max(np.int64(np.rint(2.0 * np.log2(rms))), 0), classes - 1)
        hist[column_class[k]] += counts[k]
    cost = np.empty((classes, alphabet))
    for c in range(classes):
        total = np.log2(hist[c].sum())
        for t in range(alphabet):
            cost[c, t] = total - np.log2(hist[c, t])
    for k in range(rank):  # column by column: one table, one weight
        table = cost[column_class[k]]
        bound = weight[k]
        # Branch-free: the decisions are coin flips a branch predictor would miss half of.
        for i in range(rows):
            x = values[i, k]
            near = np.int64(min(max(np.rint(x), -limit), limit))
            far = near - np.int64(near > 0) + np.int64(near < 0)
            zig_near = (near << 1) ^ (near >> 63)
            zig_far = (far << 1) ^ (far >> 63)
            saved = (
                table[token_of[zig_near]] + raw[zig_near] - table[token_of[zig_far]] - raw[zig_far]
            )
            # The squared error grows by 1 - 2d where the nearest integer is d away.
            move = (abs(near) > abs(x)) & (saved > bound * (1.0 - 2.0 * abs(near - x)))
            out[i, k] = near + np.int64(move) * (far - near)


__all__ = ["rdo_round"]
