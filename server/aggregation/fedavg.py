"""FedAvg and FedProx on the server: a streaming weighted mean of the round's deltas.

McMahan et al. 2017, Algorithm 1: the new model is the example-weighted mean of the clients'
models, i.e. the global model plus the weighted mean of their deltas. The sum is kept running
(float64, one array per tensor), so a round holds the same memory for 10 or 10,000 clients.
FedProx (Li et al. 2020) changes only the clients' objective (a proximal term mu/2 ||w - w_t||^2);
its server side is FedAvg's, and `proximal_mu` is what the campaign sends to the clients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedota.server.aggregation.base import NotEnoughUpdates, apply_delta
from fedota.server.aggregation.validation import Arrays, ModelSpec


class WeightedSum:
    """A running sum of weight x update per tensor and the sum of weights (streaming)."""

    capacity: int | None = None

    def __init__(self, spec: ModelSpec) -> None:
        self._sums = {name: np.zeros(t.shape, dtype=np.float64) for name, t in spec.tensors.items()}
        self._weight = 0.0
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def state_nbytes(self) -> int:
        return sum(s.nbytes for s in self._sums.values())

    def add(self, update: Arrays, weight: float) -> None:
        """Add weight x update to the running sums.

        Raises:
            ValueError: a weight that is not positive and finite (the round validates first).
        """
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"a FedAvg weight must be positive and finite, got {weight}")
        for name, total in self._sums.items():
            total += weight * np.asarray(update[name], dtype=np.float64)
        self._weight += weight
        self._count += 1

    def result(self) -> dict[str, np.ndarray]:
        """The weighted mean of the updates added.

        Raises:
            NotEnoughUpdates: none were added.
        """
        if self._count == 0:
            raise NotEnoughUpdates("fedavg", 1, 0)
        return {name: (s / self._weight).astype(np.float32) for name, s in self._sums.items()}


@dataclass(frozen=True)
class FedAvg:
    """Weighted mean of the deltas, applied with server learning rate `server_lr` (1: FedAvg)."""

    server_lr: float = 1.0
    name: ClassVar[str] = "fedavg"

    def __post_init__(self) -> None:
        if not (self.server_lr > 0 and math.isfinite(self.server_lr)):
            raise ValueError(f"server_lr must be positive, got {self.server_lr}")

    def start_round(self, spec: ModelSpec) -> WeightedSum:
        return WeightedSum(spec)

    def step(
        self, global_arrays: Arrays, delta: Arrays, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], None]:
        return apply_delta(global_arrays, delta, self.server_lr), None


@dataclass(frozen=True)
class FedProx(FedAvg):
    """FedAvg on the server; `proximal_mu` is the clients' proximal coefficient (>= 0)."""

    proximal_mu: float = 0.01
    name: ClassVar[str] = "fedprox"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.proximal_mu >= 0 and math.isfinite(self.proximal_mu)):
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")


__all__ = ["FedAvg", "FedProx", "WeightedSum"]
