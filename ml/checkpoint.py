"""Model checkpoints: one safetensors file with what the model is in its metadata.

    save_checkpoint(path, model.state_dict(), architecture="fedota.bytelm",
                    config=config.to_dict(), variant="int4",
                    packed_int4=packed_int4_shapes(model))
    checkpoint = load_checkpoint(path)   # Checkpoint(architecture, config, variant, tensors, ...)

Metadata keys: `fedota.architecture`, `fedota.config` (JSON object), `fedota.variant` (fp32,
int8, int4 or mcu-int8). Packed int4 tensors are uint8 tensors whose names and logical shapes
travel in `fedota.packed_int4` / `fedota.packed_int4_shapes`, written and read by fedota.delta
(see fedota.delta.safetensors_io), so `fedota.delta` diffs and patches them as int4. Files are
written atomically (temp file, fsync, rename): a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedota.delta import PatchError, SafetensorsFile, Tensor, save

ARCHITECTURE_KEY = "fedota.architecture"
CONFIG_KEY = "fedota.config"
VARIANT_KEY = "fedota.variant"
CHECKPOINT_VARIANTS = ("fp32", "int8", "int4", "mcu-int8")

_TO_FILE = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_FILE = {name: dtype for dtype, name in _TO_FILE.items()}


class CheckpointError(Exception):
    """A checkpoint file is unreadable, lacks fedota metadata, or holds the wrong tensors."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. `packed_int4` maps packed uint8 tensors to their logical shapes."""

    architecture: str
    config: dict[str, Any]
    variant: str
    tensors: dict[str, torch.Tensor]
    packed_int4: dict[str, tuple[int, ...]] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    *,
    architecture: str,
    config: Mapping[str, Any],
    variant: str,
    packed_int4: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """Write `tensors` and the model's description atomically.

    `packed_int4` names uint8 tensors that hold packed int4 values (two per byte, low nibble
    first), with each one's logical shape.

    Raises:
        CheckpointError: an unknown variant, an empty architecture, a config that is not a
            JSON object, a dtype safetensors cannot hold, or a packed_int4 entry that names no
            uint8 tensor or whose shape does not fit its bytes.
        OSError: the file cannot be written.
    """
    if variant not in CHECKPOINT_VARIANTS:
        raise CheckpointError(f"variant must be one of {CHECKPOINT_VARIANTS}, got {variant!r}")
    if not architecture:
        raise CheckpointError("architecture must be a non-empty string")
    try:
        config_json = json.dumps(dict(config), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config is not JSON-serialisable: {exc}") from None
    packed = dict(packed_int4 or {})
    files = {}
    for name, tensor in tensors.items():
        files[name] = _to_file(name, tensor, packed.pop(name, None))
    if packed:
        raise CheckpointError(f"packed_int4 names tensors that are not given: {sorted(packed)}")
    metadata = {ARCHITECTURE_KEY: architecture, CONFIG_KEY: config_json, VARIANT_KEY: variant}
    try:
        save(path, files, metadata=metadata)
    except ValueError as exc:
        raise CheckpointError(f"cannot write checkpoint: {exc}") from None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`.

    Raises:
        CheckpointError: not a valid safetensors file, missing or invalid fedota metadata.
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    try:
        with SafetensorsFile(path) as handle:
            metadata, files = dict(handle.metadata), dict(handle)
    except PatchError as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file: {exc}") from None
    missing = [k for k in (ARCHITECTURE_KEY, CONFIG_KEY, VARIANT_KEY) if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    variant = metadata[VARIANT_KEY]
    if variant not in CHECKPOINT_VARIANTS:
        raise CheckpointError(
            f"{path}: variant {variant!r} is not one of {', '.join(CHECKPOINT_VARIANTS)}"
        )
    try:
        config = json.loads(metadata[CONFIG_KEY])
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: {CONFIG_KEY} is not a JSON object")
    if not metadata[ARCHITECTURE_KEY]:
        raise CheckpointError(f"{path}: {ARCHITECTURE_KEY} is empty")
    tensors: dict[str, torch.Tensor] = {}
    packed: dict[str, tuple[int, ...]] = {}
    for name, tensor in files.items():
        if tensor.dtype == "I4":
            packed[name] = tensor.shape
        tensors[name] = _from_file(tensor)
    return Checkpoint(metadata[ARCHITECTURE_KEY], config, variant, tensors, packed)


def _to_file(name: str, tensor: torch.Tensor, int4_shape: tuple[int, ...] | None) -> Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    dtype = _TO_FILE.get(tensor.dtype)
    if dtype is None:
        raise CheckpointError(f"{name}: dtype {tensor.dtype} cannot be stored in safetensors")
    data = tensor.detach().cpu().contiguous().reshape(-1)
    if tensor.dtype == torch.bfloat16:
        flat = data.view(torch.int16).numpy().view(np.uint16)
    elif tensor.dtype == torch.bool:
        flat = data.numpy().view(np.uint8)
    else:
        flat = data.numpy()
    if int4_shape is None:
        return Tensor(dtype, tuple(tensor.shape), flat)
    shape = tuple(int(d) for d in int4_shape)
    if tensor.dtype != torch.uint8 or (int(np.prod(shape)) + 1) // 2 != tensor.numel():
        raise CheckpointError(
            f"{name}: packed int4 needs a uint8 tensor of ceil(prod({list(shape)}) / 2) bytes, "
            f"got {tensor.dtype} of {tensor.numel()}"
        )
    return Tensor("I4", shape, flat)


def _from_file(tensor: Tensor) -> torch.Tensor:
    if tensor.dtype == "I4":
        shape = tensor.shape
        # Packed rows keep their leading dims: (..., K) logical -> (..., K / 2) bytes.
        stored = (*shape[:-1], shape[-1] // 2) if shape and shape[-1] % 2 == 0 else (-1,)
        return torch.from_numpy(tensor.data.copy()).reshape(stored)
    data = torch.from_numpy(tensor.data.copy())
    if tensor.dtype == "BF16":
        data = data.view(torch.int16).view(torch.bfloat16)
    return data.view(_FROM_FILE[tensor.dtype]).reshape(tensor.shape)


__all__ = [
    "ARCHITECTURE_KEY",
    "CHECKPOINT_VARIANTS",
    "CONFIG_KEY",
    "VARIANT_KEY",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]
