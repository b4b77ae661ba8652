"""The small interface every aggregation strategy has: a round accumulator and a server step.

A strategy is a pure object (no grid, no storage), as Flower's strategies keep their maths in
free functions. Each round it hands out a fresh accumulator that takes validated updates one by
one (`add`) and gives their combination (`result`, a delta); the strategy's `step` then turns
the global trainable arrays and that delta into the next global arrays. State that lives across
rounds (FedAdam's moments) is passed in and returned, never kept on the strategy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from fedota.server.aggregation.validation import Arrays, ModelSpec


class AggregationError(Exception):
    """A round's updates cannot be combined as the strategy requires."""


class NotEnoughUpdates(AggregationError):
    """Too few accepted updates for the strategy (e.g. Krum needs n > 2f + 2).

    Attributes:
        needed: the least number of updates the strategy works with.
        got: how many were accepted.
    """

    def __init__(self, strategy: str, needed: int, got: int) -> None:
        super().__init__(f"{strategy} needs at least {needed} accepted updates, got {got}")
        self.needed = needed
        self.got = got


class RoundAccumulator(Protocol):
    """Combines one round's accepted updates.

    Attributes:
        capacity: the most updates it holds (robust strategies keep them all), or None for a
            streaming accumulator whose memory does not depend on how many updates it takes.
    """

    capacity: int | None

    @property
    def count(self) -> int:
        """How many updates were added."""
        ...

    @property
    def state_nbytes(self) -> int:
        """Bytes of array state held now (what the memory bound is about)."""
        ...

    def add(self, update: Arrays, weight: float) -> None:
        """Take one validated update (it is not modified or kept by reference).

        Raises:
            AggregationError: the accumulator is at capacity (the round checks first).
        """
        ...

    def result(self) -> dict[str, np.ndarray]:
        """The combined delta, as new float32 arrays.

        Raises:
            NotEnoughUpdates: fewer updates than the strategy needs.
        """
        ...


class Strategy(Protocol):
    """An aggregation strategy: `start_round` and `step`, both pure."""

    name: str

    def start_round(self, spec: ModelSpec) -> RoundAccumulator:
        """A fresh accumulator for one round's updates of `spec`'s tensors."""
        ...

    def step(
        self, global_arrays: Arrays, delta: Arrays, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        """The next global arrays from the current ones and the round's combined delta, and
        the strategy's new cross-round state (None for stateless strategies)."""
        ...


def apply_delta(global_arrays: Arrays, delta: Arrays, scale: float = 1.0) -> dict[str, np.ndarray]:
    """global + scale x delta, tensor by tensor, in the global arrays' dtypes (new arrays)."""
    return {
        name: (np.asarray(value) + scale * np.asarray(delta[name])).astype(np.asarray(value).dtype)
        for name, value in global_arrays.items()
    }


__all__ = [
    "AggregationError",
    "NotEnoughUpdates",
    "RoundAccumulator",
    "Strategy",
    "apply_delta",
]
