"""From a checkpoint file to a `ServedModel`: the reference architectures of `fedota.ml`.

A checkpoint (`fedota.ml.checkpoint`) names its architecture, config and variant; fp32 weights
load into the architecture as they are, int8/int4 ones rebuild the quantized layers
(`fedota.ml.quant.load_quantized_state`), so the served model holds the weights at the
precision they were shipped in. The version is the model hash the registry uses (SHA-256 over
the canonical tensors), so `ModelInfo` names exactly what the updater verified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fedota.client.inference.model import Capability, GenerationEngine, ModelInfo, ServedModel
from fedota.delta import PatchError, model_hash
from fedota.delta import load as load_tensors
from fedota.ml import digits
from fedota.ml.architectures import InvalidArchitectureConfig, UnknownArchitecture, build_model
from fedota.ml.checkpoint import CheckpointError, load_checkpoint
from fedota.ml.quant import load_quantized_state, weight_bytes

# `fedota device serve --model builtin:minilm[:int8]`: the packaged sentence encoder.
BUILTIN_PREFIX = "builtin:"
MINILM_NAME = "minilm"


class ModelLoadError(Exception):
    """A model file cannot be served: unreadable, not a checkpoint, or an unknown architecture,
    variant or shape."""


def load_served_model(path: str | os.PathLike[str]) -> ServedModel:
    """The model in the checkpoint at `path`, ready to serve.

    Raises:
        ModelLoadError: the file is missing, unreadable or not a servable checkpoint.
    """
    try:
        checkpoint = load_checkpoint(path)
        version = model_hash(load_tensors(path))
    except (CheckpointError, PatchError) as error:
        raise ModelLoadError(str(error)) from None
    except OSError as error:
        raise ModelLoadError(f"{path}: {error.strerror or error}") from None
    if checkpoint.variant not in ("fp32", "int8", "int4"):
        raise ModelLoadError(f"{path}: variant {checkpoint.variant!r} is not served here")
    try:
        template = build_model(checkpoint.architecture, checkpoint.config)
    except (UnknownArchitecture, InvalidArchitectureConfig) as error:
        raise ModelLoadError(f"{path}: {error}") from None
    try:
        module = _load_weights(template, checkpoint.tensors, checkpoint.variant)
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        raise ModelLoadError(f"{path}: weights do not fit the architecture: {error}") from None
    info = ModelInfo(
        version=version,
        variant=checkpoint.variant,
        architecture=checkpoint.architecture,
        weight_bytes=weight_bytes(module),
        input_size=_input_size(checkpoint.architecture, checkpoint.config),
        labels=_labels(checkpoint.architecture, checkpoint.config),
    )
    if checkpoint.architecture == digits.ARCHITECTURE:
        return _Classifier(info, module)
    return _LanguageModel(info, module)


def load_builtin_model(spec: str) -> ServedModel:
    """A model that ships with an installed package: `minilm` or `minilm:int8|int4|fp32`
    (all-MiniLM-L6-v2 sentence embeddings, from the bench extra).

    Raises:
        ModelLoadError: an unknown name or variant, or the package is not installed.
    """
    from fedota.ml.minilm import MODEL_NAME, MiniLM, ModelUnavailable

    name, _, variant = spec.partition(":")
    variant = variant or "int8"
    if name != MINILM_NAME or variant not in ("fp32", "int8", "int4"):
        raise ModelLoadError(
            f"{BUILTIN_PREFIX}{spec}: the built-in models are {MINILM_NAME}[:fp32|int8|int4]"
        )
    try:
        model = MiniLM.load()
    except ModelUnavailable as error:
        raise ModelLoadError(str(error)) from None
    if variant != "fp32":
        model = model.quantized(variant)
    info = ModelInfo(
        version=f"{MODEL_NAME}:{variant}",
        variant=variant,
        architecture=MINILM_NAME,
        weight_bytes=model.weight_bytes,
    )
    return _Embedder(info, model)


def _load_weights(template: nn.Module, tensors: dict[str, torch.Tensor], variant: str) -> nn.Module:
    if variant == "fp32":
        template.load_state_dict(tensors, strict=True)
        return template.eval()
    return load_quantized_state(template, tensors)


def _input_size(architecture: str, config: dict[str, Any]) -> int | None:
    return int(config["inputs"]) if architecture == digits.ARCHITECTURE else None


def _labels(architecture: str, config: dict[str, Any]) -> tuple[str, ...]:
    if architecture != digits.ARCHITECTURE:
        return ()
    return tuple(str(label) for label in range(int(config["classes"])))


@dataclass
class _Classifier:
    """The digits classifier: Predict over rows of 64 pixel values (0..16)."""

    info: ModelInfo
    module: nn.Module

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.PREDICT})

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return digits.predict(self.module, batch)  # type: ignore[arg-type]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def new_engine(self) -> GenerationEngine:
        raise NotImplementedError

    def close(self) -> None:
        self.module = nn.Identity()


@dataclass
class _LanguageModel:
    """The byte-level LM: Generate through its continuous-batching engine."""

    info: ModelInfo
    module: nn.Module

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.GENERATE})

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def new_engine(self) -> GenerationEngine:
        from fedota.ml.lm import GenerationEngine as Engine

        return Engine(self.module)  # type: ignore[return-value]

    def close(self) -> None:
        self.module = nn.Identity()


@dataclass
class _Embedder:
    """A sentence encoder: Embed over texts, unit-length vectors."""

    info: ModelInfo
    model: Any

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.EMBED})

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: np.ndarray = self.model.embed(list(texts)).numpy()
        return vectors

    def new_engine(self) -> GenerationEngine:
        raise NotImplementedError

    def close(self) -> None:
        self.model = None


__all__ = ["BUILTIN_PREFIX", "ModelLoadError", "load_builtin_model", "load_served_model"]
