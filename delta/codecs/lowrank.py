"""Low-rank prediction of a weight matrix's change, with factors the decoder rebuilds exactly.

A linear layer's gradient is a sum of outer products (inputs x output gradients), and an
optimizer's few steps keep much of that structure: on a 30-step AdamW fine-tune of MiniLM the
top 8 singular values of a 384x384 delta hold 56% of its energy (7.7% for noise of the same
shape), the top 32 hold 85%. Sending rank-r factors (a "LoRA" of the delta) and coding only
what they miss saves ~1 bit per weight at the `--max-error fp16` budget, more at finer ones.

Exactness: the factors are small integers (|entry| < 2^15) and the rank is at most 128, so every
partial sum of their product is an integer below 2^53 that float64 holds exactly. Any summation
order, BLAS blocking or FMA therefore gives the same product on every machine: the prediction
is `rint(product * (scale / step))`, two correctly rounded IEEE float64 operations. When the
entries are small enough that no partial sum can reach 2^24 (the usual case), the product is
exact in float32 too, and is computed there at twice the speed.

Where the prediction was rounded up, its level more often lies below it than above, and vice
versa; the residual's sign is coded relative to that side (flipped where it was rounded up),
so one table fits both halves (`_quant_kernels.predicted`).

Factors come from a randomized SVD (Halko, Martinsson and Tropp 2011, two power iterations:
on MiniLM, patches 6% smaller with one than with none, 0.1% smaller again with two), split
so that each component's two vectors have the same norm, quantized at a resolution the
encoder picks. Equal norms, not equal entry scales: a rounding error in an entry of one side
moves the product by the norm of the other side's vector, so equal norms give every entry
the same error weight, which is where uniform rounding of both sides spends its bits best
(equal entry scales cost 0.3% of the MiniLM patch, from its 384x1536 matrices). The chosen
factors are then refined (`refine_factors`, 1.4% of the MiniLM patch): entries rounded
toward zero where the bits saved pay for the error, each side refitted to the delta's
decomposition given the other.

Payload (inside the quantized codec's): u8 rank; if rank > 0: f64 scale, u8 per-column scale
class for the left then the right factor, the context tables, the ANS stream (varint length +
words) and the raw bits of the factor tokens.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from fedota.delta.codecs import _coder_kernels as _kernels
from fedota.delta.codecs import _lowrank_kernels as _rdo
from fedota.delta.codecs import entropy
from fedota.delta.codecs.bitio import Reader, Writer, pack_bits, packed_size, unpack_bits
from fedota.delta.errors import PatchFormatError

MAX_RANK = 128
FACTOR_LIMIT = (1 << 15) - 1
_SPLIT, _MSB = 4, 1  # hybrid tokens for factor entries: exact below 16
_CLASSES = 16  # per-column scale classes (contexts)
_RATIO_RANGE = (2.0**-30, 2.0**10)
_SEED = 0x5EED  # the randomized SVD's test matrix; fixed so encoding is repeatable
_FLOAT32_EXACT = 1 << 24  # integers below this are exact in float32
_POWER_ITERATIONS = 2
# refine_factors: the weight of a factor's error against its bits, as a share of the residual
# coder's marginal bits per unit of error (MiniLM patch: 0.4 0.03% larger than 0.5, 0.7 the
# same; with one round, 0.35 and 1.0 0.1% larger than 0.5).
_RATE_SHARE = 0.5
# refine_factors' refits of both sides (MiniLM patch against none: 1 round 1.0% smaller, 2
# rounds 1.2%, 4 rounds 1.4%, 6 rounds 1.4%; each round costs ~0.015 s of CPU there).
_REFINE_ROUNDS = 4


@dataclass(frozen=True)
class Factors:
    """A rank-r prediction: left (rows x r) and right (cols x r) int32 factors whose product
    times `scale` approximates the delta in absolute units."""

    left: np.ndarray
    right: np.ndarray
    scale: float

    @property
    def rank(self) -> int:
        return int(self.left.shape[1])


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view a tensor is predicted in: (first dimension, the rest); 1 row if 1-D."""
    if len(shape) < 2:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ right.T, exact (see the module docstring): in float32 when no partial sum can
    reach 2^24 (bounded by sum_k max|left[:, k]| max|right[:, k]|), else in float64."""
    bound = np.abs(left).max(axis=0, initial=0).astype(np.int64) @ np.abs(right).max(
        axis=0, initial=0
    ).astype(np.int64)
    wide = np.float32 if bound < _FLOAT32_EXACT else np.float64
    return left.astype(wide) @ right.astype(wide).T


def ratio(factors: Factors, step: float) -> np.float64:
    """The factor product's unit in steps: scale / step, one IEEE division of exact operands."""
    return np.float64(factors.scale) / np.float64(np.float32(step))


def sane_ratio(factors: Factors, step: float) -> bool:
    """Whether `ratio` is in the range an encoder produces (its factors are quantized at a
    fraction of the step, ~2^-6..1): a decoder refuses anything else, so a hostile scale can
    neither overflow the prediction nor make it meaningless."""
    return bool(_RATIO_RANGE[0] <= ratio(factors, step) <= _RATIO_RANGE[1])


def decompose(delta: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top-`rank` SVD (u, s, vt) of a float32 matrix by randomized range finding.

    Encoder only: BLAS may round differently on another machine, which changes the factors
    chosen, never whether a payload decodes to the tensor the encoder reported.
    """
    rows, cols = delta.shape
    width = min(rank + 8, rows, cols)
    basis = _orthonormal(delta @ _test_matrix(cols, width))
    for _ in range(_POWER_ITERATIONS):  # each sharpens the spectrum the basis sees
        basis = _orthonormal(delta @ (delta.T @ basis))
    # SVD of the small projection basis.T @ delta through the eigenvectors of its Gram matrix.
    small = (basis.T @ delta).astype(np.float64)
    energy, vectors = np.linalg.eigh(small @ small.T)
    order = np.argsort(energy)[::-1][:rank]
    s = np.sqrt(np.maximum(energy[order], 0))
    u = basis @ vectors[:, order].astype(np.float32)
    vt = (vectors[:, order].T @ small) / np.maximum(s, 1e-300)[:, None]
    return u, s, vt.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _test_matrix(cols: int, width: int) -> np.ndarray:
    """The randomized SVD's Gaussian test matrix (fixed seed; shared, so read-only)."""
    test = np.random.default_rng(_SEED).standard_normal((cols, width)).astype(np.float32)
    test.setflags(write=False)
    return test


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns' span: Cholesky QR (Q = Y R^-1 with R^T R = Y^T Y),
    all matrix products, much faster than Householder QR on tall thin matrices; the tiny ridge
    keeps R invertible when columns are dependent (a zero or low-rank delta)."""
    wide = columns.astype(np.float64)
    gram = wide.T @ wide
    ridge = 1e-12 * max(float(np.trace(gram)), 1e-300) + 1e-300
    factor = np.linalg.cholesky(gram + ridge * np.eye(gram.shape[0]))
    return (wide @ np.linalg.inv(factor).T).astype(np.float32)


def quantize_factors(
    u: np.ndarray, s: np.ndarray, vt: np.ndarray, rank: int, resolution: float, unit: float
) -> Factors:
    """Integer factors of the top-`rank` part of u diag(s) vt, each component's vectors of
    equal norm (see the module docstring), rounded to nearest.

    `unit` is the delta unit the resolution is relative to (a provisional step): entries are
    quantized at `resolution` in units of sqrt(unit).
    """
    root = np.sqrt(s[:rank] / unit) / resolution
    return Factors(
        _clip(np.rint(u[:, :rank] * root)),
        _clip(np.rint(vt[:rank].T * root)),
        float(resolution * resolution * unit),
    )


def refine_factors(
    delta: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray, chosen: Factors
) -> Factors:
    """`chosen` (quantize_factors' factors of this decomposition of `delta`) refined for
    fewer bits at a small cost in error: the left factor rounded rate-distortion optimally,
    the right one refitted by least squares to the decomposition given it (which absorbs
    the part of the left's rounding error in its span) and rounded likewise, then the left
    one refitted and rounded given the right one, and so on (`_REFINE_ROUNDS`).

    Each entry keeps the nearest integer or the next toward zero, whichever costs less in
    factor bits plus `_RATE_SHARE` times the residual bits its product error would cost (at
    high rate, half a bit per doubling of the residual's energy): a weak component's entries,
    whose error weighs little, go to zero more often, the per-component precision that the
    single scale does not allow. Encoder only.
    """
    rank, scale = chosen.rank, chosen.scale
    energy = float(np.dot(delta.reshape(-1), delta.reshape(-1)))
    left_over = energy - float(np.sum(np.square(s[:rank], dtype=np.float64)))
    # Bits per unit of squared error in factor units (scale^2 in the delta's).
    weight = (
        _RATE_SHARE
        * delta.size
        * scale
        * scale
        / (2 * math.log(2) * max(left_over, 1e-30 * energy, 1e-300))
    )
    root = np.sqrt(s[:rank] / scale)
    right_norms = np.sum(np.square(vt[:rank].T * root, dtype=np.float64), axis=0)
    left = _rdo_round(u[:, :rank] * root, weight * right_norms)
    # The fits are to the whole decomposition (u s vt, all its components), not the delta:
    # a fraction of the time (MiniLM: 4 such rounds make a patch 0.03% smaller than 3 rounds
    # of fits to the delta, in 0.03 s less), but they lean on the decomposition's accuracy
    # (one power iteration fewer: 0.3% larger).
    scaled = u * s.astype(np.float32)
    right = _refit(left, scaled, vt, scale, weight)
    for _ in range(_REFINE_ROUNDS - 1):
        left = _refit(right, vt.T, scaled.T, scale, weight)
        right = _refit(left, scaled, vt, scale, weight)
    return Factors(left, right, scale)


def _refit(
    fixed: np.ndarray, outer: np.ndarray, inner: np.ndarray, scale: float, weight: float
) -> np.ndarray:
    """The other factor for `fixed` (rows of `outer` x rank): the least-squares fit of
    `outer` @ `inner` / `scale`, rounded by `_rdo_round` (each entry's error weighs its
    column of `fixed`'s squared norm times `weight`)."""
    narrow = fixed.astype(np.float32)
    gram = (narrow.T @ narrow).astype(np.float64)
    ridge = 1e-9 * max(float(np.trace(gram)), 1.0)  # keeps a zero column solvable
    inverse = np.linalg.inv(gram + ridge * np.eye(gram.shape[0])).astype(np.float32)
    other = inner.T @ ((outer.T @ narrow) @ (inverse / np.float32(scale)))
    return _rdo_round(other, weight * np.diag(gram))


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -FACTOR_LIMIT, FACTOR_LIMIT).astype(np.int32)


@functools.cache
def _token_costs() -> tuple[np.ndarray, np.ndarray]:
    """The factor token and raw bit count of every zigzagged entry (below 2^16)."""
    values = np.arange(1 << 16, dtype=np.uint32)
    tokens, escaped, counts, _ = entropy.tokenize(values, _SPLIT, _MSB)
    raw = np.zeros(values.size, dtype=np.uint8)
    raw[escaped] = counts
    return tokens.astype(np.uint8), raw


def _rdo_round(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Integers for real `values` (entries x columns): each the nearest or, where that one is
    farther from zero, the next toward zero, whichever costs less in bits (under the table
    `write_factors` would fit to the nearest integers) plus `weight[column]` times its
    squared error (`_lowrank_kernels.rdo_round`)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    out = np.empty(values.shape, dtype=np.int32)
    token_of, raw = _token_costs()
    weight = np.ascontiguousarray(weight, dtype=np.float64)
    _rdo.rdo_round(values, weight, token_of, raw, _CLASSES, FACTOR_LIMIT, out)
    return out


def _column_classes(factor: np.ndarray) -> np.ndarray:
    """Scale class of each column: twice the log2 of its RMS, clipped to 0..15."""
    rms = np.sqrt(np.mean(factor.astype(np.float64) ** 2, axis=0))
    return np.clip(np.rint(2 * np.log2(np.maximum(rms, 0.5))), 0, _CLASSES - 1).astype(np.uint8)


def _entries(factors: Factors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of both factors (row-major, left first), the context of each (its column's
    scale class) and the classes."""
    values = np.concatenate([factors.left.reshape(-1), factors.right.reshape(-1)])
    classes = np.concatenate([_column_classes(factors.left), _column_classes(factors.right)])
    contexts = np.concatenate(
        [
            np.tile(classes[: factors.rank], factors.left.shape[0]),
            np.tile(classes[factors.rank :], factors.right.shape[0]),
        ]
    )
    return values, contexts, classes


def factor_bits(factors: Factors) -> float:
    """Estimated bits `write_factors` spends (tables included)."""
    values, contexts, classes = _entries(factors)
    hist = np.zeros((_CLASSES, entropy.alphabet_size(_SPLIT, _MSB, 16)), dtype=np.int64)
    raw_bits = _kernels.factor_tokens(values, contexts, _SPLIT, _MSB, hist)
    return entropy.estimate_bits(hist) + raw_bits + 8 * (classes.size + 9)


def write_factors(out: Writer, factors: Factors | None) -> None:
    """Append the rank and, if any, the factors (see the module docstring)."""
    if factors is None or factors.rank == 0:
        out.u8(0)
        return
    out.u8(factors.rank)
    out.f64(factors.scale)
    values, contexts, classes = _entries(factors)
    out.raw(classes.tobytes())
    tokens, _, nraw, raw = entropy.tokenize(entropy.zigzag(values), _SPLIT, _MSB)
    alphabet = entropy.alphabet_size(_SPLIT, _MSB, 16)
    tables, _ = entropy.fit_tables(entropy.histograms(tokens, contexts, _CLASSES, alphabet))
    entropy.write_tables(out, tables)
    out.block(entropy.ans_encode(tokens, contexts, tables))
    out.raw(pack_bits(raw, nraw))


def read_factors(src: Reader, rows: int, cols: int) -> Factors | None:
    """Read what `write_factors` wrote for a rows x cols matrix.

    Raises:
        PatchFormatError: a rank, scale, class, table or entry out of bounds.
    """
    rank = src.u8()
    if rank == 0:
        return None
    if rank > min(MAX_RANK, rows, cols):
        raise PatchFormatError(f"rank {rank} exceeds min({MAX_RANK}, {rows}, {cols})")
    scale = src.f64()
    if not (math.isfinite(scale) and scale > 0):
        raise PatchFormatError(f"factor scale {scale} is not a positive finite number")
    classes = np.frombuffer(src.take(2 * rank), np.uint8)
    if int(classes.max()) >= _CLASSES:
        raise PatchFormatError(f"factor column class {int(classes.max())} >= {_CLASSES}")
    contexts = np.concatenate([np.tile(classes[:rank], rows), np.tile(classes[rank:], cols)])
    alphabet = entropy.alphabet_size(_SPLIT, _MSB, 16)  # |entries| < 2^15: zigzag < 2^16
    tables = entropy.read_tables(src, _CLASSES, alphabet)
    tokens = entropy.ans_decode(src.block(src.left), contexts, tables)
    escaped, nraw = entropy.escapes(tokens, _SPLIT, _MSB)
    if packed_size(nraw) > src.left:
        raise PatchFormatError("factor raw bits run past the payload")
    raw = unpack_bits(src, nraw)
    zig = entropy.detokenize(tokens, escaped, raw, _SPLIT, _MSB, "<u4")
    values = entropy.unzigzag(zig).view(np.int32)
    if int(np.abs(values).max(initial=0)) > FACTOR_LIMIT:
        raise PatchFormatError(f"factor entry beyond +-{FACTOR_LIMIT}")
    return Factors(
        values[: rows * rank].reshape(rows, rank), values[rows * rank :].reshape(cols, rank), scale
    )


__all__ = [
    "FACTOR_LIMIT",
    "MAX_RANK",
    "Factors",
    "decompose",
    "factor_bits",
    "matrix_shape",
    "product",
    "quantize_factors",
    "ratio",
    "read_factors",
    "refine_factors",
    "sane_ratio",
    "write_factors",
]
