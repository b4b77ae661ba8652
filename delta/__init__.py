"""fedota.delta: differential tensor patches that are small, bit-exact and safe to parse.

    patch = diff(base, target, max_error="fp16")   # patch.target is the released model
    blob = patch.to_bytes()
    model = apply(base, blob)                       # == patch.target, bit for bit
    apply_file("base.safetensors", "v2.patch", "v2.safetensors")   # streaming, atomic

Models are mappings name -> Tensor (`load`/`save` for safetensors files). Every failure a patch
or a base can cause is a `PatchError` subclass.
"""

from fedota.delta.apply import apply, apply_file
from fedota.delta.diff import diff
from fedota.delta.errors import (
    BaseMismatch,
    ModelFormatError,
    PatchError,
    PatchFormatError,
    PatchIntegrityError,
    PatchTooLarge,
    PatchTruncated,
    TargetMismatch,
    UnsupportedTensor,
)
from fedota.delta.format import Entry, Op, Patch, PatchHeader, read_header
from fedota.delta.hashing import model_hash
from fedota.delta.limits import DEFAULT_LIMITS, Limits
from fedota.delta.safetensors_io import SafetensorsFile, load, save
from fedota.delta.tensor import Tensor

__all__ = [
    "DEFAULT_LIMITS",
    "BaseMismatch",
    "Entry",
    "Limits",
    "ModelFormatError",
    "Op",
    "Patch",
    "PatchError",
    "PatchFormatError",
    "PatchHeader",
    "PatchIntegrityError",
    "PatchTooLarge",
    "PatchTruncated",
    "SafetensorsFile",
    "TargetMismatch",
    "Tensor",
    "UnsupportedTensor",
    "apply",
    "apply_file",
    "diff",
    "load",
    "model_hash",
    "read_header",
    "save",
]
