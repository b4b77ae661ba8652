"""FedAdam: Adam on the server, over the round's weighted-mean delta (streaming, as FedAvg).

Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2: with the mean client delta
D_t, m_t = b1 m_{t-1} + (1 - b1) D_t, v_t = b2 v_{t-1} + (1 - b2) D_t^2 and
x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau). The moments are the strategy's cross-round state,
passed in and returned by `step` (the campaign persists them so a restart resumes exactly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fedota.server.aggregation.base import AggregationError
from fedota.server.aggregation.fedavg import WeightedSum
from fedota.server.aggregation.validation import Arrays, ModelSpec


@dataclass(frozen=True)
class FedAdam:
    """Server-side Adam; `state` is {"m": arrays, "v": arrays} (None before the first round)."""

    eta: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    name: ClassVar[str] = "fedadam"

    def __post_init__(self) -> None:
        if not (self.eta > 0 and math.isfinite(self.eta)) or not self.tau > 0:
            raise ValueError(f"eta and tau must be positive, got {self.eta} and {self.tau}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {self.beta1} and {self.beta2}")

    def start_round(self, spec: ModelSpec) -> WeightedSum:
        return WeightedSum(spec)

    def step(
        self, global_arrays: Arrays, delta: Arrays, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Raises: AggregationError: a state whose tensors differ from the global arrays'."""
        m_old = {} if state is None else dict(state["m"])
        v_old = {} if state is None else dict(state["v"])
        if state is not None and (set(m_old) != set(global_arrays) or set(v_old) != set(m_old)):
            raise AggregationError("FedAdam state does not hold the model's trainable tensors")
        new, m_new, v_new = {}, {}, {}
        for name, x in global_arrays.items():
            d = np.asarray(delta[name], dtype=np.float32)
            m = self.beta1 * m_old.get(name, np.zeros_like(d)) + (1 - self.beta1) * d
            v = self.beta2 * v_old.get(name, np.zeros_like(d)) + (1 - self.beta2) * d * d
            m_new[name], v_new[name] = m.astype(np.float32), v.astype(np.float32)
            step = self.eta * m_new[name] / (np.sqrt(v_new[name]) + self.tau)
            new[name] = (np.asarray(x) + step).astype(np.asarray(x).dtype)
        return new, {"m": m_new, "v": v_new}


__all__ = ["FedAdam"]
