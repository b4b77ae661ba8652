"""What can go wrong with a patch, in two families (as python-tuf keeps its errors).

`PatchError` and subclasses: the patch or the base is not what it must be (bad bytes, wrong base,
a hash that does not match). Caller misuse (a bad argument) is a plain `ValueError`/`TypeError`.
"""

from __future__ import annotations


class PatchError(Exception):
    """Base of every error about a patch's content or its fit to a base model."""


class PatchFormatError(PatchError):
    """The bytes are not a well-formed fedota patch (bad magic, version, length, field)."""


class PatchTruncated(PatchFormatError):
    """The patch ends before its declared content does."""


class PatchTooLarge(PatchFormatError):
    """A declared size exceeds the configured limit (refused before allocating)."""


class PatchIntegrityError(PatchError):
    """A payload's hash does not match the one the patch declares (tampered or corrupted)."""


class BaseMismatch(PatchError):
    """The base model is not the one the patch was made from.

    Attributes:
        expected: the base hash the patch names.
        actual: the hash of the base that was given.
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"wrong base model: the patch applies to {expected[:16]}…, this model is {actual[:16]}…"
        )
        self.expected = expected
        self.actual = actual


class TargetMismatch(PatchError):
    """The result of applying does not hash to the target the patch names."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the patched model hashes to {actual[:16]}…, not the target {expected[:16]}…"
        )
        self.expected = expected
        self.actual = actual


class ModelFormatError(PatchError):
    """A model file (safetensors) is malformed: bad header, offsets, dtype or size."""


class UnsupportedTensor(PatchError):
    """A dtype or codec this version of the library cannot handle."""


__all__ = [
    "BaseMismatch",
    "ModelFormatError",
    "PatchError",
    "PatchFormatError",
    "PatchIntegrityError",
    "PatchTooLarge",
    "PatchTruncated",
    "TargetMismatch",
    "UnsupportedTensor",
]
