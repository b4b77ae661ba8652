"""Is an update fit to aggregate? Checked against the model's tensors, finiteness and norm.

A pure check over arrays (no I/O): the round records the verdict of every update it is offered,
so an operator sees which device was rejected and why (`campaigns show`). An update is the
change of the trainable tensors in one round (float deltas), weighted by its example count.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Arrays = Mapping[str, np.ndarray]


class RejectReason(enum.StrEnum):
    """Why an update was left out of a round; the value is what storage and the CLI show."""

    UNDECODABLE = "undecodable"
    DUPLICATE = "duplicate"
    MISSING_TENSOR = "missing-tensor"
    UNEXPECTED_TENSOR = "unexpected-tensor"
    WRONG_SHAPE = "wrong-shape"
    WRONG_DTYPE = "wrong-dtype"
    NOT_FINITE = "not-finite"
    NORM_TOO_LARGE = "norm-too-large"
    BAD_EXAMPLE_COUNT = "bad-example-count"
    ROUND_FULL = "round-full"


@dataclass(frozen=True)
class TensorSpec:
    """One trainable tensor's shape and numpy dtype name (e.g. "float32")."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ModelSpec:
    """The trainable tensors an update must carry, by name."""

    tensors: Mapping[str, TensorSpec]

    @classmethod
    def of(cls, arrays: Arrays) -> ModelSpec:
        """The spec of the global trainable arrays a round starts from."""
        return cls(
            {
                name: TensorSpec(tuple(int(d) for d in np.shape(a)), np.asarray(a).dtype.name)
                for name, a in arrays.items()
            }
        )

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: spec.shape for name, spec in self.tensors.items()}

    @property
    def numel(self) -> int:
        return sum(math.prod(spec.shape) for spec in self.tensors.values())


@dataclass(frozen=True)
class UpdateLimits:
    """What the server accepts from one device in one round.

    Attributes:
        max_norm: bound on the update's global L2 norm (over all tensors); None for none.
            With client-side DP the noise dominates the norm: see
            `privacy.noisy_update_norm_bound`.
        max_examples: the most examples one update may claim (its FedAvg weight), so one
            device cannot outweigh the fleet by claiming a huge count.
    """

    max_norm: float | None = None
    max_examples: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_norm is not None and not (self.max_norm > 0 and math.isfinite(self.max_norm)):
            raise ValueError(f"max_norm must be a positive finite number, got {self.max_norm}")
        if self.max_examples < 1:
            raise ValueError(f"max_examples must be at least 1, got {self.max_examples}")


@dataclass(frozen=True)
class Verdict:
    """Accepted (reason None) or rejected with a reason and one line saying what was wrong.

    Attributes:
        norm: the update's L2 norm when it was computed (finite updates), else None.
    """

    reason: RejectReason | None = None
    detail: str = ""
    norm: float | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def validate_update(
    update: Arrays, examples: float, spec: ModelSpec, limits: UpdateLimits
) -> Verdict:
    """Check an update's tensors (names, shapes, dtypes), values (finite), norm and weight.

    The first broken rule decides the verdict; its detail names the tensor and both values.
    """
    if not (math.isfinite(examples) and 0 < examples <= limits.max_examples):
        return Verdict(
            RejectReason.BAD_EXAMPLE_COUNT,
            f"example count {examples} is not in 1..{limits.max_examples}",
        )
    missing = sorted(set(spec.tensors) - set(update))
    if missing:
        return Verdict(RejectReason.MISSING_TENSOR, f"missing {_names(missing)}")
    extra = sorted(set(update) - set(spec.tensors))
    if extra:
        return Verdict(RejectReason.UNEXPECTED_TENSOR, f"unexpected {_names(extra)}")
    squares = 0.0
    for name in sorted(spec.tensors):
        want, array = spec.tensors[name], np.asarray(update[name])
        if tuple(array.shape) != want.shape:
            return Verdict(
                RejectReason.WRONG_SHAPE,
                f"{name} has shape {list(array.shape)}, the model's is {list(want.shape)}",
            )
        if array.dtype.name != want.dtype:
            detail = f"{name} is {array.dtype.name}, the model's is {want.dtype}"
            return Verdict(RejectReason.WRONG_DTYPE, detail)
        if not np.all(np.isfinite(array)):
            return Verdict(RejectReason.NOT_FINITE, f"{name} holds NaN or infinite values")
        flat = array.reshape(-1).astype(np.float64)
        squares += float(np.einsum("i,i->", flat, flat))  # np.dot of mixed dtypes is far slower
    norm = math.sqrt(squares)
    if limits.max_norm is not None and norm > limits.max_norm:
        return Verdict(
            RejectReason.NORM_TOO_LARGE,
            f"update norm {norm:.4g} exceeds the bound {limits.max_norm:.4g}",
            norm,
        )
    return Verdict(norm=norm)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


__all__ = [
    "Arrays",
    "ModelSpec",
    "RejectReason",
    "TensorSpec",
    "UpdateLimits",
    "Verdict",
    "validate_update",
]
