"""One loaded model ready to serve: request checks, its batchers and its generation thread.

`ModelSlot` checks every request against the model's shape and the configured limits before it
joins a batch (one bad row must not fail the batch it would share), then hands Predict rows and
Embed texts to a `Batcher` each and Generate requests to a `GenerationDriver`. Only the parts the
model's capabilities call for are started.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

import numpy as np

from fedota.client.inference.batching import Batcher
from fedota.client.inference.config import InferenceConfig
from fedota.client.inference.errors import InvalidInput, Stopping, Unsupported
from fedota.client.inference.generation import GenerationDriver, TokenStream
from fedota.client.inference.model import Capability, GenerationParams, ModelInfo, ServedModel

log = logging.getLogger(__name__)

_Part = TypeVar("_Part")


class ModelSlot:
    """Serves one model until closed. Thread-safe."""

    def __init__(
        self,
        model: ServedModel,
        config: InferenceConfig,
        translate: Callable[[BaseException], BaseException],
    ) -> None:
        """Start the threads the model's capabilities need.

        Raises:
            ValueError: the model's info or capabilities are malformed.
            Exception: whatever `model.new_engine()` raised.
        """
        info = model.info
        if not isinstance(info, ModelInfo):
            raise ValueError(f"model.info must be a ModelInfo, got {type(info).__name__}")
        try:
            capabilities = frozenset(Capability(c) for c in model.capabilities)
        except ValueError as exc:
            raise ValueError(f"model {info.version}: {exc}") from None
        if Capability.PREDICT in capabilities and info.input_size is None:
            raise ValueError(f"model {info.version} predicts but its info names no input_size")
        self.info = info
        self.capabilities = capabilities
        self._config = config
        self._model: ServedModel | None = model
        # The engine first: if it cannot be made, no thread has been started yet.
        engine = model.new_engine() if Capability.GENERATE in capabilities else None
        batching = {
            "max_batch": config.max_batch,
            "max_wait": config.max_wait,
            "max_queue": config.max_queue,
        }
        self._predictor: Batcher[np.ndarray, np.ndarray] | None = None
        self._embedder: Batcher[Sequence[str], np.ndarray] | None = None
        self._driver: GenerationDriver | None = None
        if Capability.PREDICT in capabilities:
            self._predictor = Batcher(f"{info.version} predict", self._predict_batch, **batching)
        if Capability.EMBED in capabilities:
            self._embedder = Batcher(f"{info.version} embed", self._embed_batch, **batching)
        if engine is not None:
            self._driver = GenerationDriver(
                info.version,
                engine,
                max_pending=config.max_generate_pending,
                translate=translate,
                admit_wait=config.max_wait,
            )

    def predict(self, features: Sequence[float]) -> Future[np.ndarray]:
        """Queue one row; the future gives its class probabilities.

        Raises:
            Unsupported: the model does not classify.
            InvalidInput: wrong number of features, or one is not finite.
            Overloaded: the queue is full.
        """
        batcher = self._require(self._predictor, Capability.PREDICT)
        row = np.asarray(features, dtype=np.float32)
        if row.ndim != 1 or row.size != self.info.input_size:
            raise InvalidInput(
                f"model {self.info.version} takes {self.info.input_size} features, got {row.size}"
            )
        bad = np.flatnonzero(~np.isfinite(row))
        if bad.size:
            raise InvalidInput(f"features must be finite; feature {bad[0]} is {row[bad[0]]}")
        return batcher.submit(row)

    def embed(self, texts: Sequence[str]) -> Future[np.ndarray]:
        """Queue texts; the future gives their vectors, shape (len(texts), dim).

        Raises:
            Unsupported: the model does not embed.
            InvalidInput: no texts, more than max_embed_texts, or a text over max_text_bytes.
            Overloaded: the queue is full.
        """
        batcher = self._require(self._embedder, Capability.EMBED)
        limit = self._config.max_embed_texts
        if not 1 <= len(texts) <= limit:
            raise InvalidInput(f"Embed takes 1 to {limit} texts, got {len(texts)}")
        for index, text in enumerate(texts):
            size = len(text.encode("utf-8"))
            if size > self._config.max_text_bytes:
                raise InvalidInput(
                    f"text {index} is {size} bytes of UTF-8, over the limit of "
                    f"{self._config.max_text_bytes}"
                )
        return batcher.submit(tuple(texts), size=len(texts))

    def generate(self, params: GenerationParams, timeout: float) -> TokenStream:
        """Start generating; tokens arrive on the returned stream.

        Raises:
            Unsupported: the model does not generate.
            InvalidInput: empty or too long prompt or stop, max_new_tokens or temperature out
                of range (or the engine refused the request).
            Overloaded: too many requests wait, or the engine is full.
            ModelFailed: the engine failed.
        """
        driver = self._require(self._driver, Capability.GENERATE)
        config = self._config
        if not params.prompt:
            raise InvalidInput("the prompt must not be empty")
        if len(params.prompt) > config.max_prompt_bytes:
            raise InvalidInput(
                f"the prompt is {len(params.prompt)} bytes, over the limit of "
                f"{config.max_prompt_bytes}"
            )
        if not 1 <= params.max_new_tokens <= config.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens must be 1 to {config.max_new_tokens}, got {params.max_new_tokens}"
            )
        if not (math.isfinite(params.temperature) and params.temperature >= 0):
            raise InvalidInput(
                f"temperature must be a finite number >= 0, got {params.temperature}"
            )
        if params.stop is not None and len(params.stop) > config.max_prompt_bytes:
            raise InvalidInput(
                f"the stop sequence is {len(params.stop)} bytes, over the limit of "
                f"{config.max_prompt_bytes}"
            )
        return driver.submit(params, timeout)

    def queued(self) -> dict[Capability, int]:
        """Requests waiting for a batch (Predict, Embed) or for the engine (Generate)."""
        parts = {
            Capability.PREDICT: self._predictor,
            Capability.EMBED: self._embedder,
            Capability.GENERATE: self._driver,
        }
        return {capability: p.queued for capability, p in parts.items() if p is not None}

    def close(self) -> None:
        """Stop the threads (waiting requests fail with `Stopping`) and close the model."""
        for part in (self._predictor, self._embedder, self._driver):
            if part is not None:
                part.close()
        model, self._model = self._model, None
        if model is not None:
            try:
                model.close()
            except Exception:
                log.exception("closing model %s failed", self.info.version)

    def join(self, timeout: float) -> bool:
        """Wait for the threads to end after `close()`; True when all have."""
        parts = [p for p in (self._predictor, self._embedder, self._driver) if p is not None]
        return all([part.join(timeout) for part in parts])

    def _require(self, part: _Part | None, capability: Capability) -> _Part:
        if part is None:
            offered = ", ".join(sorted(self.capabilities)) or "nothing"
            raise Unsupported(
                f"model {self.info.version} cannot {capability.value} (it offers: {offered})"
            )
        return part

    def _serving(self) -> ServedModel:
        model = self._model
        if model is None:
            raise Stopping(f"model {self.info.version} was released")
        return model

    def _predict_batch(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        probabilities = np.asarray(self._serving().predict(np.stack(rows)), dtype=np.float32)
        if probabilities.ndim != 2 or probabilities.shape[0] != len(rows):
            raise ValueError(f"predict returned shape {probabilities.shape} for {len(rows)} rows")
        return list(probabilities)

    def _embed_batch(self, requests: Sequence[Sequence[str]]) -> list[np.ndarray]:
        texts = [text for request in requests for text in request]
        vectors = np.asarray(self._serving().embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"embed returned shape {vectors.shape} for {len(texts)} texts")
        bounds = np.cumsum([len(request) for request in requests])[:-1]
        return np.split(vectors, bounds)


__all__ = ["ModelSlot"]
