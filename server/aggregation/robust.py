"""Robust aggregation for fleets with faulty or hostile devices: trimmed mean and (multi-)Krum.

Both need every update of a round at once (a coordinate's order statistics, the pairwise
distances), so their accumulator holds the round's updates: memory grows with the number of
updates, and is capped by `max_updates` (the round rejects updates past it as "round-full").
Budget: `max_updates` x the trainable tensors' float32 bytes (64 x a 1 MB LoRA adapter is
64 MB); the Krum distance matrix adds `max_updates`^2 float64s.

- Trimmed mean (Yin et al. 2018): per coordinate, drop the floor(beta x n) smallest and largest
  values and average the rest (unweighted). Tolerates up to floor(beta x n) hostile updates.
- Krum / Multi-Krum (Blanchard et al. 2017): score each update by the summed squared distance to
  its n - f - 2 nearest neighbours, keep the `select` lowest scores (1: Krum) and average them,
  weighted by examples. Needs n > 2f + 2 (the paper's condition for its guarantee).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedota.server.aggregation.base import AggregationError, NotEnoughUpdates, apply_delta
from fedota.server.aggregation.validation import Arrays, ModelSpec

DEFAULT_MAX_UPDATES = 64
# How a robust strategy combines the held updates and their weights into one delta.
Combine = Callable[[list[dict[str, np.ndarray]], list[float]], dict[str, np.ndarray]]


class BufferedUpdates:
    """Holds up to `capacity` updates (float32 copies) and their weights for one round."""

    def __init__(self, spec: ModelSpec, capacity: int, combine: Combine) -> None:
        self.capacity: int | None = capacity
        self._names = sorted(spec.tensors)
        self._updates: list[dict[str, np.ndarray]] = []
        self._weights: list[float] = []
        self._combine = combine

    @property
    def count(self) -> int:
        return len(self._updates)

    @property
    def state_nbytes(self) -> int:
        return sum(a.nbytes for update in self._updates for a in update.values())

    def add(self, update: Arrays, weight: float) -> None:
        """Keep a float32 copy of the update.

        Raises:
            AggregationError: already `capacity` updates held.
        """
        if self.capacity is not None and len(self._updates) >= self.capacity:
            raise AggregationError(f"the round already holds its {self.capacity} updates")
        self._updates.append({n: np.array(update[n], dtype=np.float32) for n in self._names})
        self._weights.append(float(weight))

    def result(self) -> dict[str, np.ndarray]:
        """Raises: NotEnoughUpdates: fewer updates than the strategy needs."""
        return self._combine(self._updates, self._weights)


def trimmed_mean(updates: Sequence[Arrays], beta: float) -> dict[str, np.ndarray]:
    """Coordinate-wise mean after dropping floor(beta x n) values at each end.

    Raises:
        NotEnoughUpdates: no updates, or so few that trimming leaves none.
        ValueError: beta outside [0, 0.5).
    """
    if not 0 <= beta < 0.5:
        raise ValueError(f"the trim fraction must lie in [0, 0.5), got {beta}")
    n = len(updates)
    cut = math.floor(beta * n)
    if n == 0 or n - 2 * cut < 1:
        raise NotEnoughUpdates("trimmed-mean", 1, n)
    out = {}
    for name in updates[0]:
        stacked = np.stack([np.asarray(u[name], dtype=np.float32) for u in updates])
        if cut:
            stacked = np.partition(stacked, (cut, n - cut - 1), axis=0)[cut : n - cut]
        out[name] = stacked.mean(axis=0, dtype=np.float64).astype(np.float32)
    return out


def krum_select(updates: Sequence[Arrays], byzantine: int, select: int) -> list[int]:
    """Indices of the `select` updates with the lowest Krum scores, best first.

    Raises:
        NotEnoughUpdates: n <= 2 x byzantine + 2.
        ValueError: select outside 1..n - byzantine, or byzantine < 0.
    """
    n = len(updates)
    if byzantine < 0:
        raise ValueError(f"the number of hostile updates must be >= 0, got {byzantine}")
    if n <= 2 * byzantine + 2:
        raise NotEnoughUpdates("krum", 2 * byzantine + 3, n)
    if not 1 <= select <= n - byzantine:
        raise ValueError(f"Krum selects 1..{n - byzantine} of {n} updates, not {select}")
    names = sorted(updates[0])
    # Pairwise squared distances accumulated tensor by tensor: no flattened (n, d) copy.
    distances = np.zeros((n, n), dtype=np.float64)
    for name in names:
        flat = np.stack([np.asarray(u[name], dtype=np.float64).reshape(-1) for u in updates])
        norms = np.einsum("ij,ij->i", flat, flat)
        distances += norms[:, None] + norms[None, :] - 2.0 * flat @ flat.T
    np.maximum(distances, 0.0, out=distances)
    neighbours = n - byzantine - 2
    scores = []
    for i in range(n):
        others = np.delete(distances[i], i)
        scores.append(float(np.sort(others)[:neighbours].sum()))
    return [int(i) for i in np.argsort(scores, kind="stable")[:select]]


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise trimmed mean of the deltas (beta trimmed at each end)."""

    beta: float = 0.1
    max_updates: int = DEFAULT_MAX_UPDATES
    name: ClassVar[str] = "trimmed-mean"

    def __post_init__(self) -> None:
        if not 0 <= self.beta < 0.5:
            raise ValueError(f"the trim fraction must lie in [0, 0.5), got {self.beta}")
        if self.max_updates < 1:
            raise ValueError(f"max_updates must be at least 1, got {self.max_updates}")

    def start_round(self, spec: ModelSpec) -> BufferedUpdates:
        return BufferedUpdates(spec, self.max_updates, lambda u, _w: trimmed_mean(u, self.beta))

    def step(
        self, global_arrays: Arrays, delta: Arrays, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], None]:
        return apply_delta(global_arrays, delta), None


@dataclass(frozen=True)
class Krum:
    """(Multi-)Krum over the deltas: `select` = 1 is Krum, more is Multi-Krum."""

    byzantine: int = 1
    select: int = 1
    max_updates: int = DEFAULT_MAX_UPDATES
    name: ClassVar[str] = "krum"

    def __post_init__(self) -> None:
        if self.byzantine < 0 or self.select < 1:
            raise ValueError(
                f"byzantine must be >= 0 and select >= 1, got {self.byzantine} and {self.select}"
            )
        if self.max_updates <= 2 * self.byzantine + 2:
            raise ValueError(
                f"max_updates {self.max_updates} leaves Krum no room for {self.byzantine} "
                "hostile updates (it needs more than 2f + 2)"
            )

    def start_round(self, spec: ModelSpec) -> BufferedUpdates:
        return BufferedUpdates(spec, self.max_updates, self._combine)

    def _combine(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> dict:
        select = min(self.select, len(updates) - self.byzantine)
        chosen = krum_select(updates, self.byzantine, select)
        total = sum(weights[i] for i in chosen)
        return {
            name: (
                sum(weights[i] * updates[i][name].astype(np.float64) for i in chosen) / total
            ).astype(np.float32)
            for name in updates[0]
        }

    def step(
        self, global_arrays: Arrays, delta: Arrays, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], None]:
        return apply_delta(global_arrays, delta), None


__all__ = [
    "DEFAULT_MAX_UPDATES",
    "BufferedUpdates",
    "Krum",
    "TrimmedMean",
    "krum_select",
    "trimmed_mean",
]
