"""A campaign's tensors in the blob store: the base model, each round's trainable arrays and
strategy state, and each round's merged model as an fp32 checkpoint.

The trainable arrays (LoRA adapters or unfrozen layers) are what devices train; they stay
relative to the campaign's base version, which every device holds in its active slot. Each
round's *version* is the base with them folded in (`merge_lora`), a plain fp32 checkpoint that
releases build variants from. Arrays and strategy state go to the blob store as safetensors
(no pickle), so a resumed campaign continues from exactly what the last completed round left.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from torch import nn

from fedota.delta import load as load_tensors
from fedota.delta import model_hash
from fedota.ml.architectures import build_model
from fedota.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedota.ml.lora import merge_lora
from fedota.server.registry.blob_files import blob_to_file
from fedota.storage.blobs import BlobStore

_STATE_SEPARATOR = "/"


@dataclass(frozen=True)
class BaseModel:
    """A version's fp32 model with its architecture and config (what checkpoints carry)."""

    module: nn.Module
    architecture: str
    config: dict[str, Any]


@dataclass(frozen=True)
class StoredCheckpoint:
    """A merged model written to the blob store."""

    blob_key: str
    size_bytes: int
    content_sha256: str
    parameter_count: int


def load_base_model(blobs: BlobStore, blob_key: str, work_dir: Path) -> BaseModel:
    """The fp32 model in the checkpoint blob `blob_key`.

    Raises:
        BlobNotFound, BlobCorrupted: the blob is missing or changed.
        CheckpointError: not an fp32 fedota checkpoint, or weights that do not fit.
        UnknownArchitecture, InvalidArchitectureConfig: see `build_model`.
    """
    with _temp_file(work_dir) as path:
        blob_to_file(blobs, blob_key, path)
        checkpoint = load_checkpoint(path)
    if checkpoint.variant != "fp32":
        raise CheckpointError(f"a campaign starts from fp32 weights, got {checkpoint.variant}")
    module = build_model(checkpoint.architecture, checkpoint.config)
    try:
        module.load_state_dict(checkpoint.tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights do not fit {checkpoint.architecture}: {exc}") from None
    return BaseModel(module.eval(), checkpoint.architecture, checkpoint.config)


def store_merged(
    blobs: BlobStore, model: nn.Module, base: BaseModel, work_dir: Path
) -> StoredCheckpoint:
    """Fold `model`'s adapters into fp32 layers and store the result as a checkpoint blob.

    Raises:
        CheckpointError, OSError: the checkpoint cannot be written.
        BlobTooLarge: it exceeds the blob store's cap.
    """
    merged = merge_lora(model)
    state = {name: tensor.detach().contiguous() for name, tensor in merged.state_dict().items()}
    with _temp_file(work_dir) as path:
        save_checkpoint(
            path, state, architecture=base.architecture, config=base.config, variant="fp32"
        )
        content = model_hash(load_tensors(path))
        with path.open("rb") as handle:
            info = blobs.put_file(handle)
    parameters = sum(t.numel() for t in state.values())
    return StoredCheckpoint(info.key, info.size, content, parameters)


def put_arrays(blobs: BlobStore, arrays: Mapping[str, np.ndarray]) -> str:
    """Store named arrays as one safetensors blob; its key."""
    data = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    return blobs.put_bytes(safetensors.numpy.save(data)).key


def get_arrays(blobs: BlobStore, key: str) -> dict[str, np.ndarray]:
    """Raises: BlobNotFound, BlobCorrupted; ValueError: not a safetensors blob."""
    try:
        return dict(safetensors.numpy.load(blobs.read_bytes(key)))
    except Exception as exc:  # safetensors raises its own SafetensorError
        if isinstance(exc, OSError | LookupError):
            raise
        raise ValueError(f"blob {key[:12]} is not a safetensors file: {exc}") from None


def put_strategy_state(blobs: BlobStore, state: Mapping[str, Any] | None) -> str | None:
    """Store a strategy's cross-round state (None, or {part: {name: array}}); its key."""
    if not state:
        return None
    flat = {
        f"{part}{_STATE_SEPARATOR}{name}": np.asarray(array)
        for part, arrays in state.items()
        for name, array in arrays.items()
    }
    return put_arrays(blobs, flat)


def get_strategy_state(blobs: BlobStore, key: str | None) -> dict[str, Any] | None:
    """The state `put_strategy_state` stored (None for none).

    Raises: as `get_arrays`.
    """
    if key is None:
        return None
    state: dict[str, dict[str, np.ndarray]] = {}
    for flat, array in get_arrays(blobs, key).items():
        part, _, name = flat.partition(_STATE_SEPARATOR)
        state.setdefault(part, {})[name] = array
    return state


class _temp_file:
    """A private temp file path in `directory`, removed on exit."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def __enter__(self) -> Path:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".campaign-", suffix=".safetensors", dir=self._directory)
        os.close(fd)
        self._path = Path(name)
        return self._path

    def __exit__(self, *_exc: object) -> None:
        self._path.unlink(missing_ok=True)


__all__ = [
    "BaseModel",
    "StoredCheckpoint",
    "get_arrays",
    "get_strategy_state",
    "load_base_model",
    "put_arrays",
    "put_strategy_state",
    "store_merged",
]
