"""Fixtures of the aggregation tests: a seeded generator and a small model's trainable tensors."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def global_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The round's starting trainable tensors (LoRA-adapter-sized)."""
    return {
        "layers.0.lora_a": rng.normal(size=(4, 64)).astype(np.float32),
        "layers.0.lora_b": np.zeros((32, 4), np.float32),
    }
