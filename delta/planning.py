"""Per-tensor error budgets for a diff mode (the issue's `--lossless`, `--max-error fp16`,
`--max-rel-error E`).

- lossless: no budget (every tensor bit for bit).
- fp16: per float tensor with a base of its dtype and shape, the released tensor may be as far
  (squared L2, float32 values) from the requested one as rounding the requested one to fp16 is,
  and no further, row by row, than each row's own rounding cost or change (see
  `fp16_mode_budget`, which also holds vectors to a tenth of their change).
  An F16 or BF16 tensor is already at or below fp16's precision: rounding it to its own dtype
  costs nothing, so its budget is 0 (lossless) rather than a step that could do no better.
  A tensor holding NaN/Inf, or values fp16 cannot hold (overflow), stays lossless too: its
  fp16 error is not a finite L2 budget.
- rel E: one global quantization step s, the largest whose total squared error over every
  eligible tensor is at most E^2 * sum ||target - base||^2 (the issue: "L2 error of the delta
  relative to the delta, over the model"; the sum runs over every finite float tensor with a
  base of its dtype and shape). The search is the lossy codecs' own (`budget.step_for_error`
  over their `error_at_step`), so it measures exactly what they will release; tensors they
  refuse count 0 there and are carried losslessly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedota.delta.budget import float32_view, step_for_error
from fedota.delta.codecs import _quant_kernels as kernels
from fedota.delta.codecs.base import Budget, RowChange
from fedota.delta.codecs.lowrank import matrix_shape
from fedota.delta.tensor import FLOATS, Tensor

_CHUNK = 1 << 20  # elements per float64 partial sum: bounded temporaries on huge tensors
VECTOR_SHARE = 0.1


def plan_budgets(
    base: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    *,
    lossless: bool = False,
    max_error: Literal["fp16"] | None = None,
    max_rel_error: float | None = None,
    lossy_codecs: bool = True,
) -> dict[str, Budget]:
    """Budget per tensor name (names absent get Budget(): lossless). With `lossy_codecs`
    False (none among the candidates) the modes are checked but every budget is lossless.

    Raises:
        ValueError: more than one mode, an unknown `max_error`, or `max_rel_error` not > 0.
    """
    chosen = [lossless, max_error is not None, max_rel_error is not None]
    if sum(chosen) > 1:
        raise ValueError("choose one of lossless, max_error and max_rel_error")
    if max_error is not None:
        if max_error != "fp16":
            raise ValueError(f"max_error must be 'fp16', got {max_error!r}")
        if not lossy_codecs:
            return {}
        names = _eligible(base, target)
        return {name: fp16_mode_budget(base[name], target[name]) for name in names}
    if max_rel_error is not None:
        if not (isinstance(max_rel_error, int | float) and 0 < max_rel_error < math.inf):
            raise ValueError(f"max_rel_error must be a positive number, got {max_rel_error!r}")
        if not lossy_codecs:
            return {}
        names, carried, changes, energy = [], [], {}, 0.0
        for name in _eligible(base, target):
            old, new = base[name], target[name]
            rows = matrix_shape(new.shape)[0] if new.numel else 1
            change = RowChange(np.zeros(rows), np.zeros(rows))
            normal = kernels.scan(
                float32_view(old), float32_view(new), max(1, new.numel // rows), change.energy,
                change.peak,
            )  # fmt: skip
            if normal or (_finite(old) and _finite(new)):
                names.append(name)
                energy += float(change.energy.sum())
                if normal and new.numel:  # what the lossy codecs carry (lossy_applicable)
                    carried.append((old, new))
                    changes[name] = change
        if energy == 0.0:
            return {}
        limit = float(max_rel_error) ** 2 * energy
        step = step_for_error(carried, limit, checked=True, changes=list(changes.values()))
        if step is None:
            return {}
        return {name: Budget(step=step, change=changes.get(name)) for name in names}
    return {}


def fp16_budget(tensor: Tensor) -> Budget:
    """||t - fp16(t)||^2 in float32 values (0, lossless, for F16/BF16 and non-finite tensors)."""
    rows = _fp16_rows(None, tensor)
    return Budget() if rows is None else Budget(max_error_sq=float(rows.rounding.sum()))


def fp16_mode_budget(base: Tensor, target: Tensor) -> Budget:
    """The `--max-error fp16` budget of one tensor: its fp16 rounding cost, spent where rounding
    would spend it.

    Rounding to fp16 spreads unbiased noise over every row; a budget of the same L2 size may
    instead drop a coherent update. Two places where that hurts, measured on a MiniLM
    fine-tune (1 - cosine of sentence embeddings, trained vs released):
    - an embedding matrix whose update sits in the few rows of the tokens in use: its whole
      change is below its fp16 rounding cost, so the update was dropped (1.1e-5, 30x the fp16
      cast's 3.5e-7). Here each row may lose at most the smaller of its own fp16 rounding cost
      and its whole change: rows that only weight decay moved may stay, moved rows are kept.
    - vectors (LayerNorm scales, biases: a sliver of the bytes) whose update is about as large
      as their rounding cost: their error is also held to VECTOR_SHARE of their own change.
    Never more than `fp16_budget`, so the mode's promise holds as stated.
    """
    rows = _fp16_rows(base, target)
    if rows is None:
        return Budget()
    rounding, change = rows.rounding, rows.change
    allowed = float(np.minimum(rounding, change).sum())
    if rounding.size == 1:
        allowed = min(allowed, VECTOR_SHARE**2 * float(change.sum()))
    return Budget(
        max_error_sq=min(allowed, float(rounding.sum())),
        change=RowChange(change) if rows.normal else None,
    )


@dataclass(frozen=True)
class _Fp16Rows:
    """Per row (the first dimension; one row for vectors), float64 sums over float32 values:
    the target's fp16 rounding cost and its change from the base (the lossy codec's `energy`);
    whether no value of either is subnormal."""

    rounding: np.ndarray
    change: np.ndarray
    normal: bool


def _fp16_rows(base: Tensor | None, target: Tensor) -> _Fp16Rows | None:
    """`_Fp16Rows` of the target against the base (zero change without one). None for
    F16/BF16 (rounding costs nothing), empty tensors and values that are not finite or that
    fp16 cannot hold."""
    if target.dtype not in ("F32", "F64") or target.numel == 0:
        return None
    values = float32_view(target)
    old = values if base is None else float32_view(base)
    rows = matrix_shape(target.shape)[0]
    rounding, change = np.empty(rows), np.empty(rows)
    found = kernels.fp16_rows(
        values, values.view(np.uint32), old, values.size // rows, kernels.FP16_QUANTUM,
        rounding, change,
    )  # fmt: skip
    if not found & kernels.FP16_HOLDS:
        return None
    return _Fp16Rows(rounding, change, bool(found & kernels.ALL_NORMAL))


def _eligible(base: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> list[str]:
    """Float tensors present in both with the same dtype and shape."""
    return [
        name
        for name in sorted(target)
        if name in base
        and target[name].dtype in FLOATS
        and (base[name].dtype, base[name].shape) == (target[name].dtype, target[name].shape)
    ]


def _finite(tensor: Tensor) -> bool:
    values = float32_view(tensor)
    return all(np.isfinite(values[i : i + _CHUNK]).all() for i in range(0, values.size, _CHUNK))


__all__ = ["VECTOR_SHARE", "fp16_budget", "fp16_mode_budget", "plan_budgets"]
