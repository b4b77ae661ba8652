"""Honest updates for the aggregation tests."""

from __future__ import annotations

import numpy as np


def honest_update(
    rng: np.random.Generator, like: dict[str, np.ndarray], scale: float = 0.01
) -> dict[str, np.ndarray]:
    """A small random update with the shapes of `like` (float32)."""
    return {n: rng.normal(0, scale, size=a.shape).astype(np.float32) for n, a in like.items()}
