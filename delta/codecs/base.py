"""The codec seam: how one tensor's change is encoded into a payload and decoded back.

A codec is a pure object over arrays and bytes (no files, no sockets). The diff orchestrator
offers every applicable codec each tensor, keeps the smallest payload whose error is within the
tensor's budget, and records the codec's id in the patch entry; apply looks the id up in the
registry below and calls `decode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from fedota.delta.tensor import Tensor


@dataclass(frozen=True)
class RowChange:
    """A tensor's change row by row (rows of the first dimension; one row for a vector), as
    `_quant_kernels.scan` measures it: each row's ||target - base||^2 (float64) and, where
    measured, its largest |target - base|."""

    energy: np.ndarray
    peak: np.ndarray | None = None


@dataclass(frozen=True)
class Budget:
    """How far the encoded target may be from the requested one, for one tensor.

    Attributes:
        max_error_sq: squared L2 norm of (released - requested) allowed, in float32 values.
            0 means lossless: the released tensor must equal the requested one bit for bit.
        step: for lossy codecs, a fixed quantization step chosen globally by the orchestrator
            (`--max-rel-error`); None lets the codec pick the largest step within max_error_sq.
        change: what the planner already measured of the tensor, so that the lossy codec
            need not scan it again; given only where every value of both is finite and none
            subnormal. None: the codec scans.
    """

    max_error_sq: float = 0.0
    step: float | None = None
    change: RowChange | None = field(default=None, compare=False, repr=False)

    @property
    def lossless(self) -> bool:
        return self.max_error_sq == 0.0 and self.step is None


@dataclass(frozen=True)
class Encoded:
    """A payload and the exact tensor decoding it reproduces.

    Attributes:
        payload: the bytes stored in the patch entry.
        target: what `decode(base, spec, payload)` returns, bit for bit (the released tensor).
        error_sq: squared L2 norm of (target - requested target), float32 values; 0 if exact.
    """

    payload: bytes
    target: Tensor
    error_sq: float = 0.0


class Codec(Protocol):
    """One way to encode a tensor's change.

    `codec_id` is stored in the patch (one byte, never reused once released); `name` is what the
    CLI and `info` show. A codec may also set `releases_as_decoder = True` when `encode`
    computes Encoded.target with the very functions `decode` runs (the same compiled release);
    the diff then does not decode its payload a second time to check it.
    """

    codec_id: ClassVar[int]
    name: ClassVar[str]
    lossy: ClassVar[bool]

    def encode(self, base: Tensor | None, target: Tensor, budget: Budget) -> Encoded | None:
        """Encode `target` given `base` (None for an added tensor or a changed dtype/shape).

        Returns None when this codec does not apply (wrong dtype, no base, budget not met).
        Deterministic on one machine. A lossy encoder may use BLAS (an SVD), so two machines
        may choose different payloads; what must hold everywhere is that `decode` of a given
        payload returns `Encoded.target` bit for bit (decoders use no BLAS and no FMA).
        """
        ...

    def decode(
        self, base: Tensor | None, dtype: str, shape: tuple[int, ...], payload: bytes
    ) -> Tensor:
        """Rebuild the target tensor from `base` and `payload`.

        Raises:
            PatchFormatError: the payload is malformed for this codec (never an IndexError,
                MemoryError or a hang: every length read from the payload is checked first).
        """
        ...


_REGISTRY: dict[int, Codec] = {}


def register(codec: Codec) -> Codec:
    """Add a codec to the registry (at import of its module).

    Raises:
        ValueError: another codec already has this id.
    """
    existing = _REGISTRY.get(codec.codec_id)
    if existing is not None and type(existing) is not type(codec):
        raise ValueError(f"codec id {codec.codec_id} is taken by {existing.name}")
    _REGISTRY[codec.codec_id] = codec
    return codec


def by_id(codec_id: int) -> Codec | None:
    """The registered codec with this id, or None."""
    return _REGISTRY.get(codec_id)


def registered() -> list[Codec]:
    """Every registered codec, by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


__all__ = ["Budget", "Codec", "Encoded", "by_id", "register", "registered"]
