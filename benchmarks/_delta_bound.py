"""How far the `--max-error fp16` patch is from the rate its own model allows: for every tensor
the lossy codecs predicted with low-rank factors, the Shannon lower bound on coding the residual
(the delta minus the factors' prediction) at the tensor's error budget, under the codec's own
contexts (the prediction's magnitude, capped at 15 steps, with the residual's sign taken
relative to the prediction's).

The bound, per element: h(residual | context) - log2(2 pi e D) / 2, D the budget per element
(the tensor's `--max-error fp16` budget as the codec got it, `planning.fp16_mode_budget`, over
its size), h estimated from histograms at sqrt(D) / 4 with the Miller-Madow correction (finer
bins or no correction bias it low by up to 0.06 bits on MiniLM's matrices; at this width
halving the sample moves it under 0.005 bits, and halving the bins 0.002). No quantizer and
entropy coder with these factors and contexts codes the residual in fewer bits at that error;
`ratio_at_bound` is the patch with every such residual coded at its bound and everything else
(factors, tables, other tensors) as it is.

It reads the lossy payloads' factors with the codec's own readers (fedota.delta.codecs): below
the public API that `_delta_library.py` keeps to, on purpose, since the bound is about them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_CONTEXT_CAP = 15  # the codec's coarsest prediction context (quantized.py)
_BINS_PER_DEVIATION = 4
_LOSSY_PREDICTED = {5, 6, 7}  # quant-ans, quant-ctx, quant-tcq
_QUANTIZER_BYTE = 7  # codec 7's payload has a quantizer byte after the version


def _differential_entropy(values: np.ndarray, width: float) -> float:
    """Bits per value of the differential entropy, from a histogram at bin `width` with the
    Miller-Madow correction for the bins a finite sample leaves empty."""
    counts = np.bincount(np.round((values - values.min()) / width).astype(np.int64))
    seen = counts[counts > 0]
    share = seen / values.size
    correction = (seen.size - 1) / (2 * values.size * math.log(2))
    return float(-(share * np.log2(share)).sum() + correction + math.log2(width))


def _bound_bits(residual: np.ndarray, levels: np.ndarray, per_element: float) -> float:
    """The residual's Shannon lower bound in bits, conditioned on the prediction's level."""
    context = np.minimum(np.abs(levels), _CONTEXT_CAP).astype(np.int64)
    oriented = np.where(levels < 0, -residual, residual)
    width = math.sqrt(per_element) / _BINS_PER_DEVIATION
    floor = 0.5 * math.log2(2 * math.pi * math.e * per_element)
    bits = 0.0
    for value in np.unique(context):
        chosen = oriented[context == value]
        bits += chosen.size * max(0.0, _differential_entropy(chosen, width) - floor)
    return bits


def _payload_parts(codec: int, payload: bytes, rows: int, cols: int) -> tuple[Any, float, int]:
    """(factors or None, step, bytes up to the end of the factors) of a lossy payload."""
    from fedota.delta.codecs import lowrank
    from fedota.delta.codecs.bitio import Reader

    src = Reader(payload)
    src.u8()  # version
    if codec == _QUANTIZER_BYTE:
        src.u8()
    step = src.f32()
    src.u8(), src.u8(), src.u8()  # offset, token split, token msb
    factors = lowrank.read_factors(src, rows, cols)
    return factors, float(step), len(payload) - src.left


def rate_bound(base: dict[str, Any], target: dict[str, Any], patch: bytes) -> dict[str, Any]:
    """The bound's figures for an fp16 patch of `base` -> `target` (name -> Tensor)."""
    from fedota.delta import Patch
    from fedota.delta.codecs import lowrank
    from fedota.delta.planning import fp16_mode_budget

    parsed = Patch.from_bytes(patch)
    total = sum(t.data.nbytes for t in target.values())
    weights = coded = factor = residual = bound = 0.0
    tensors = 0
    for entry, payload in zip(parsed.entries, parsed.payloads, strict=True):
        if entry.codec_id not in _LOSSY_PREDICTED or entry.dtype != "F32":
            continue
        rows, cols = lowrank.matrix_shape(tuple(entry.shape))
        factors, step, head = _payload_parts(entry.codec_id, payload, rows, cols)
        if factors is None:
            continue
        trained = target[entry.name].data.astype(np.float64)
        delta = (trained - base[entry.name].data).reshape(rows, cols)
        prediction = (factors.left.astype(np.float64) @ factors.right.T) * factors.scale
        budget = fp16_mode_budget(base[entry.name], target[entry.name]).max_error_sq
        if not 0 < budget < math.inf:  # lossless: nothing to spend
            continue
        levels = np.rint(prediction / step).reshape(-1)
        tensors += 1
        weights += delta.size
        coded += 8 * len(payload)
        factor += 8 * head
        residual += 8 * (len(payload) - head)
        bound += _bound_bits((delta - prediction).reshape(-1), levels, budget / delta.size)
    if not tensors:
        return {"skipped": "no tensor was coded with low-rank factors"}
    per_weight = {
        "coded": coded / weights,
        "factors_and_header": factor / weights,
        "residual": residual / weights,
        "residual_bound": bound / weights,
    }
    return {
        "tensors": tensors,
        "weights": int(weights),
        "bits_per_weight": {k: round(v, 4) for k, v in per_weight.items()},
        "ratio": round(len(patch) / total, 6),
        "ratio_at_bound": round((len(patch) - (residual - bound) / 8) / total, 6),
    }
