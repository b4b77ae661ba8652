"""Every cap the patch parser and decoders enforce, in one object with safe defaults.

A patch comes from the network; python-tuf's `UpdaterConfig` keeps its byte caps the same way.
Every count or length read from a patch is checked against these (and against the bytes that
remain) *before* anything is allocated, so a hostile patch costs a clear error, not memory.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Caps on what a patch (and a safetensors file) may declare.

    The defaults admit any model up to ~100 GB of weights with tensors of up to 2^32 elements
    (a 250k x 16k embedding fits) and refuse anything past that before allocating.

    Attributes:
        max_tensors: entries in one patch (tensors in one safetensors file).
        max_name_bytes: UTF-8 bytes of one tensor name.
        max_rank: dimensions of one tensor.
        max_elements: elements of one tensor (bounds what decoding one tensor allocates).
        max_payload: bytes of one tensor's payload.
        max_total: bytes of a whole patch (or safetensors file), header included.
        max_header: bytes of a safetensors file's JSON header.
    """

    max_tensors: int = 1 << 20
    max_name_bytes: int = 1024
    max_rank: int = 16
    max_elements: int = 1 << 32
    max_payload: int = 1 << 36
    max_total: int = 1 << 37
    max_header: int = 100 << 20

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"Limits.{name} must be a non-negative int, got {value!r}")


DEFAULT_LIMITS = Limits()

__all__ = ["DEFAULT_LIMITS", "Limits"]
