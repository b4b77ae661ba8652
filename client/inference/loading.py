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
from fedota.ml.checkpoint import CheckpointError, load_checkpoint
from fedota.ml.lm.config import ARCHITECTURE as LM_ARCHITECTURE
from fedota.ml.quant import load_quantized_state, weight_bytes


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
    build = _ARCHITECTURES.get(checkpoint.architecture)
    if build is None:
        raise ModelLoadError(
            f"{path}: architecture {checkpoint.architecture!r} is not one of "
            f"{', '.join(sorted(_ARCHITECTURES))}"
        )
    if checkpoint.variant not in ("fp32", "int8", "int4"):
        raise ModelLoadError(f"{path}: variant {checkpoint.variant!r} is not served here")
    try:
        template = build(checkpoint.config)
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


def _load_weights(template: nn.Module, tensors: dict[str, torch.Tensor], variant: str) -> nn.Module:
    if variant == "fp32":
        template.load_state_dict(tensors, strict=True)
        return template.eval()
    return load_quantized_state(template, tensors)


def _build_lm(config: dict[str, Any]) -> nn.Module:
    from fedota.ml.lm import ByteLM, LMConfig

    return ByteLM(LMConfig(**config))


_ARCHITECTURES = {digits.ARCHITECTURE: digits.build, LM_ARCHITECTURE: _build_lm}


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


__all__ = ["ModelLoadError", "load_served_model"]
