"""A child's model: loaded the way the daemon loads it, and wrapped as a `ServedModel`.

Digits and LM variants come from their checkpoint files through
`fedota.client.inference.loading.load_served_model` (the daemon's own path: version hash,
quantized layers rebuilt from the file); `mcu-int8` from its flash export through
`fedota.ml.mcu.load`, served with the integer-only interpreter; MiniLM from the `bench` extra.

`BenchModel` serves the loaded weights with a configurable generation engine (continuous
batching over `max_batch` sequences, or one sequence at a time with the others waiting), and
its `close` keeps the weights, so the same model serves both modes one server after the other.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedota.client.inference import Capability, ModelInfo
from fedota.client.inference.loading import load_served_model
from fedota.ml import digits, mcu
from fedota.ml.lm import GenerationEngine, blocks_needed

KV_BLOCK = 16  # the engine's default block size


@dataclass
class Loaded:
    """One variant in memory: what it can do and the handles the measurements need."""

    kind: str  # "predict", "embed" or "generate"
    info: ModelInfo
    handle: Any  # the nn.Module, McuModel or MiniLM
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    embed: Callable[[Sequence[str]], np.ndarray] | None = None


class BenchModel:
    """A `ServedModel` over a `Loaded` variant.

    `model_cpu_s` sums the CPU time of the threads that ran the model (the batcher's calls,
    the generation engine's steps): the rest of the server process's CPU is serving overhead
    (gRPC, handler threads, queues).
    """

    def __init__(self, loaded: Loaded, *, engine: Callable[[], Any] | None = None) -> None:
        self.info = loaded.info
        self._loaded = loaded
        self._engine = engine
        self.capabilities = frozenset({Capability(loaded.kind)})
        self.model_cpu_s = 0.0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert self._loaded.predict is not None
        started = time.thread_time()
        try:
            return self._loaded.predict(batch)
        finally:
            self.model_cpu_s += time.thread_time() - started

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        assert self._loaded.embed is not None
        started = time.thread_time()
        try:
            return self._loaded.embed(texts)
        finally:
            self.model_cpu_s += time.thread_time() - started

    def new_engine(self) -> Any:
        assert self._engine is not None
        return _TimedEngine(self._engine(), self)

    def close(self) -> None:
        """Nothing to release: the child serves the same weights again in the other mode."""


class _TimedEngine:
    """The engine, with the CPU time of its steps (on the driver thread) added to the model's."""

    def __init__(self, engine: GenerationEngine, owner: BenchModel) -> None:
        self._engine = engine
        self._owner = owner

    def submit(self, request: Any) -> int:
        return self._engine.submit(request)

    def cancel(self, seq_id: int) -> None:
        self._engine.cancel(seq_id)

    def step(self) -> Any:
        started = time.thread_time()
        try:
            return self._engine.step()
        finally:
            self._owner.model_cpu_s += time.thread_time() - started

    @property
    def active(self) -> int:
        return self._engine.active

    @property
    def waiting(self) -> int:
        return self._engine.waiting


def engine_factory(
    loaded: Loaded, *, max_batch: int, waiting: int, sequence_tokens: int
) -> Callable[[], GenerationEngine]:
    """Engines over the loaded LM: `max_batch` sequences decoded together, `waiting` more
    queued, a KV pool sized for sequences of `sequence_tokens` positions."""
    module = loaded.handle
    per_sequence = blocks_needed(sequence_tokens, KV_BLOCK, module.config.window)

    def make() -> GenerationEngine:
        return GenerationEngine(
            module,
            max_batch=max_batch,
            max_waiting=waiting,
            kv_blocks=max_batch * per_sequence,
            block_size=KV_BLOCK,
        )

    return make


def load(model: str, variant: str, path: str | None) -> Loaded:
    """Load one variant of `model` ("digits", "lm" or "minilm").

    Raises:
        ModelLoadError, McuError, ModelUnavailable: the file or package cannot be loaded.
    """
    if model == "minilm":
        return _load_minilm(variant)
    assert path is not None
    if variant == "mcu-int8":
        return _load_mcu(Path(path))
    served = load_served_model(path)
    module = served.module  # type: ignore[attr-defined]
    if model == "digits":
        return Loaded("predict", served.info, module, predict=lambda b: digits.predict(module, b))
    return Loaded("generate", served.info, module)


def _load_mcu(path: Path) -> Loaded:
    blob = path.read_bytes()
    small = mcu.load(blob)

    def predict(batch: np.ndarray) -> np.ndarray:
        pixels = np.rint(batch).astype(np.int64)
        logits = small.dequantize_logits(mcu.run(small, mcu.quantize_input(small, pixels)))
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    info = ModelInfo(
        version=hashlib.sha256(blob).hexdigest()[:16],
        variant="mcu-int8",
        architecture=digits.ARCHITECTURE,
        weight_bytes=sum(layer.weights.nbytes + layer.bias.nbytes for layer in small.layers),
        input_size=small.input_dim,
        labels=tuple(str(i) for i in range(small.classes)),
    )
    return Loaded("predict", info, small, predict=predict)


def _load_minilm(variant: str) -> Loaded:
    from fedota.ml.minilm import MODEL_NAME, MiniLM

    model = MiniLM.load()
    if variant != "fp32":
        model = model.quantized(variant)  # the fp32 encoder is dropped with the name

    def embed(texts: Sequence[str]) -> np.ndarray:
        return model.embed(list(texts), batch_size=max(1, len(texts))).numpy()

    info = ModelInfo(
        version=f"all-minilm-l6-v2-{variant}",
        variant=variant,
        architecture=MODEL_NAME,
        weight_bytes=model.weight_bytes,
    )
    return Loaded("embed", info, model, embed=embed)


def module_of(loaded: Loaded) -> torch.nn.Module | None:
    """The torch module a variant runs (None for the integer-only mcu model)."""
    handle = loaded.handle
    if isinstance(handle, torch.nn.Module):
        return handle
    encoder = getattr(handle, "encoder", None)
    return encoder if isinstance(encoder, torch.nn.Module) else None


__all__ = ["KV_BLOCK", "BenchModel", "Loaded", "engine_factory", "load", "module_of"]
