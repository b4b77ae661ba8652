"""`apply` and the streaming `apply_file`: base + patch -> exactly the target, or an error.

Order of checks (the device keeps what it had unless all pass): the patch's index (its digest,
every bound), then the base's hash, then per tensor the payload's hash before its codec sees a
byte, and last the target's hash over what was decoded. `apply_file` writes into a temp file
next to the output and renames it only after the target hash matched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping

from fedota.delta.atomic import atomic_write
from fedota.delta.codecs.base import by_id
from fedota.delta.errors import (
    BaseMismatch,
    PatchError,
    PatchFormatError,
    PatchIntegrityError,
    PatchTruncated,
    TargetMismatch,
    UnsupportedTensor,
)
from fedota.delta.format import Entry, Op, Patch, PatchHeader, read_header
from fedota.delta.hashing import ModelHasher, model_hash
from fedota.delta.limits import DEFAULT_LIMITS, Limits
from fedota.delta.safetensors_io import (
    INT4_KEY,
    INT4_SHAPES_KEY,
    SafetensorsFile,
    SafetensorsWriter,
)
from fedota.delta.tensor import STORAGE, Tensor, storage_words

Progress = Callable[[int, int], None]


def apply(
    base: Mapping[str, Tensor],
    patch: Patch | bytes,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> dict[str, Tensor]:
    """The target model: `base` with `patch` applied, verified against the patch's target hash.

    Raises:
        PatchFormatError (PatchTruncated, PatchTooLarge): malformed patch bytes.
        PatchIntegrityError: a payload (or the index) does not match its hash.
        BaseMismatch: `base` is not the model the patch was made from.
        UnsupportedTensor: a codec this version does not know.
        TargetMismatch: the result does not hash to the patch's target.
    """
    if not isinstance(patch, Patch):
        patch = Patch.from_bytes(bytes(patch), limits=limits)
    _check_base(base, patch.header)
    hasher = ModelHasher()
    result: dict[str, Tensor] = {}
    total, done = _target_bytes(patch.header), 0
    for entry, payload in zip(patch.entries, patch.payloads, strict=True):
        if entry.op is Op.REMOVED:
            continue
        tensor = decode_entry(entry, base, payload)
        hasher.add(entry.name, tensor)
        result[entry.name] = tensor
        done += tensor.nbytes
        if progress is not None:
            progress(done, total)
    _check_target(patch.header, hasher)
    return result


def apply_file(
    base_path: str | os.PathLike[str],
    patch_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> str:
    """Apply a patch file to a safetensors base, writing the target atomically; its hash.

    Streams: peak memory is the mapped base plus one decoded tensor. The output carries the
    base file's metadata (e.g. transformers' `format`) and appears only once verified; on any
    error nothing is left at `out_path` (an existing file there is untouched) nor beside it.

    Raises:
        OSError: an input cannot be read or the output cannot be written.
        ModelFormatError: the base is not a valid safetensors file.
        PatchError subclasses: as `apply`.
    """
    with open(patch_path, "rb") as handle:
        header = read_header(handle, os.fstat(handle.fileno()).st_size, limits=limits)
        with SafetensorsFile(base_path, limits=limits) as base:
            _check_base(base, header)
            specs = [(e.name, e.dtype, e.shape) for e in header.entries if e.op is not Op.REMOVED]
            metadata = {
                key: value
                for key, value in base.metadata.items()
                if key not in (INT4_KEY, INT4_SHAPES_KEY)
            }
            with atomic_write(out_path) as out:
                try:
                    writer = SafetensorsWriter(out, specs, metadata=metadata)
                except ValueError as exc:  # e.g. a tensor named __metadata__
                    raise UnsupportedTensor(
                        f"the target cannot be a safetensors file: {exc}"
                    ) from None
                hasher = ModelHasher()
                total, done = _target_bytes(header), 0
                for entry in header.entries:
                    payload = handle.read(entry.payload_len)
                    if len(payload) != entry.payload_len:
                        raise PatchTruncated(f"{entry.name}: the patch ends inside its payload")
                    if entry.op is Op.REMOVED:
                        continue
                    tensor = decode_entry(entry, base, payload)
                    writer.write(entry.name, tensor)
                    hasher.add(entry.name, tensor)
                    done += tensor.nbytes
                    del tensor, payload  # one decoded tensor at a time
                    if progress is not None:
                        progress(done, total)
                writer.finish()
                _check_target(header, hasher)
    return header.target_hash


def decode_entry(entry: Entry, base: Mapping[str, Tensor], payload: bytes) -> Tensor:
    """One target tensor from its entry, its payload and the base (already checked).

    Raises:
        PatchIntegrityError: the payload does not match its hash.
        UnsupportedTensor: an unknown codec id.
        PatchFormatError: the codec refuses the payload.
    """
    if entry.op is Op.UNCHANGED:
        return base[entry.name]
    if hashlib.sha256(payload).digest() != entry.payload_sha256:
        raise PatchIntegrityError(f"{entry.name}: payload does not match its SHA-256")
    codec = by_id(entry.codec_id)
    if codec is None:
        raise UnsupportedTensor(f"{entry.name}: codec {entry.codec_id} is unknown to this version")
    old = base.get(entry.name) if entry.op is Op.CHANGED else None
    matched = (
        old if old is not None and (old.dtype, old.shape) == (entry.dtype, entry.shape) else None
    )
    try:
        tensor = codec.decode(matched, entry.dtype, entry.shape, payload)
    except PatchError:
        raise
    except Exception as exc:
        # Defence in depth: whatever a codec trips on in hostile bytes is the patch's fault.
        raise PatchFormatError(f"{entry.name}: {codec.name} payload is malformed: {exc}") from exc
    if (tensor.dtype, tensor.shape) != (entry.dtype, entry.shape):
        raise PatchFormatError(f"{entry.name}: {codec.name} decoded the wrong dtype or shape")
    return tensor


def _check_base(base: Mapping[str, Tensor], header: PatchHeader) -> None:
    """The base's hash first, then that the entries describe it (a crafted patch might not)."""
    actual = model_hash(base)
    if actual != header.base_hash:
        raise BaseMismatch(header.base_hash, actual)
    described = set()
    for entry in header.entries:
        if entry.op is Op.ADDED:
            if entry.name in base:
                raise PatchFormatError(f"{entry.name}: added, but the base has it")
            continue
        old = base.get(entry.name)
        if old is None:
            raise PatchFormatError(f"{entry.name}: {entry.op.name.lower()}, but not in the base")
        if entry.op is not Op.CHANGED and (old.dtype, old.shape) != (entry.dtype, entry.shape):
            raise PatchFormatError(f"{entry.name}: the entry's dtype or shape is not the base's")
        described.add(entry.name)
    if len(described) != len(base):
        raise PatchFormatError(f"the patch omits {len(base) - len(described)} base tensors")


def _check_target(header: PatchHeader, hasher: ModelHasher) -> None:
    actual = hasher.hexdigest()
    if actual != header.target_hash:
        raise TargetMismatch(header.target_hash, actual)


def _target_bytes(header: PatchHeader) -> int:
    return sum(
        storage_words(e.dtype, e.shape) * STORAGE[e.dtype].itemsize
        for e in header.entries
        if e.op is not Op.REMOVED
    )


__all__ = ["apply", "apply_file", "decode_entry"]
