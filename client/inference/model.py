"""What the server serves: the narrow seam between the local API and the models in `fedota.ml`.

A `ServedModel` says what it can do (`capabilities`) and the server calls only those methods:
`predict` and `embed` from one batching thread each, `new_engine` once per model (the engine it
returns is then driven by one thread only, as `fedota.ml.lm.GenerationEngine` requires).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np


class Capability(StrEnum):
    PREDICT = "predict"
    EMBED = "embed"
    GENERATE = "generate"


@dataclass(frozen=True)
class ModelInfo:
    """Identity and shape of a served model.

    Attributes:
        version: the registry model version (content hash or release name).
        variant: fp32, int8, int4 or mcu-int8.
        architecture: e.g. "digits-mlp", "byte-lm".
        weight_bytes: bytes of weights the model holds in memory.
        input_size: features per Predict row, when the model classifies.
        labels: class names in index order; empty when the model names none.
    """

    version: str
    variant: str
    architecture: str
    weight_bytes: int
    input_size: int | None = None
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.version:
            raise ValueError("ModelInfo.version must not be empty")
        if self.weight_bytes < 0:
            raise ValueError(f"ModelInfo.weight_bytes must be >= 0, got {self.weight_bytes}")
        if self.input_size is not None and self.input_size <= 0:
            raise ValueError(f"ModelInfo.input_size must be positive, got {self.input_size}")


@dataclass(frozen=True)
class GenerationParams:
    """One generation request, field for field `fedota.ml.lm.GenerationRequest`."""

    prompt: bytes
    max_new_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    stop: bytes | None = None


@runtime_checkable
class TokenEventLike(Protocol):
    """One decoded token of one sequence (`fedota.ml.lm.TokenEvent`)."""

    @property
    def seq_id(self) -> int: ...
    @property
    def token(self) -> bytes: ...
    @property
    def finished(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


class GenerationEngine(Protocol):
    """A continuous-batching engine (`fedota.ml.lm.GenerationEngine`); single-threaded."""

    def submit(self, request: GenerationParams) -> int:
        """Queue a sequence and return its id; raises the engine's typed full/invalid errors."""
        ...

    def cancel(self, seq_id: int) -> None: ...

    def step(self) -> Sequence[TokenEventLike]:
        """Admit waiting sequences, then decode one token for every active one."""
        ...

    @property
    def active(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class ServedModel(Protocol):
    """A model the server can serve. Methods outside `capabilities` are never called."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, classes), for float32 rows of shape (n, input_size)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, shape (len(texts), dim)."""
        ...

    def new_engine(self) -> GenerationEngine:
        """A fresh generation engine over this model's weights."""
        ...

    def close(self) -> None:
        """Release what the model holds; called once, after its last request."""
        ...


__all__ = [
    "Capability",
    "GenerationEngine",
    "GenerationParams",
    "ModelInfo",
    "ServedModel",
    "TokenEventLike",
]
