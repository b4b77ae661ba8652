"""What can go wrong installing a model into a slot, in two families (as python-tuf keeps its own).

`UpdateRejected` and subclasses: the update is not what it must be (a patch for another base, a
result that does not hash to the signed target, a model that fails its health check). The device
keeps (or goes back to) the model it had, and reports the message as the failure reason.
`SlotError`: the state directory's models cannot be used as they are (unwritable, corrupt, or in
use by another process): a local fault for the operator. Caller misuse is a `RuntimeError`.
"""

from __future__ import annotations

from fedota.client.errors import ClientError, StateError


def _short(digest: str) -> str:
    return f"{digest[:16]}…" if digest else "(no model)"


class UpdateRejected(ClientError):
    """Base of every reason an update is refused or undone; `str()` is the reported reason."""


class WrongBase(UpdateRejected):
    """A patch is for another model than the one the device runs.

    Attributes:
        expected: the base content hash the patch (or its signed metadata) names.
        actual: the content hash of the device's active model ("" for none).
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the patch applies to model {_short(expected)}, the device runs {_short(actual)}"
        )
        self.expected = expected
        self.actual = actual


class PatchRejected(UpdateRejected):
    """The patch file is malformed, tampered, or disagrees with its signed metadata."""


class ModelFileInvalid(UpdateRejected):
    """The model file (downloaded artifact or patch result) is not a valid safetensors file."""


class ContentMismatch(UpdateRejected):
    """The installed model does not hash to the signed target's `content_sha256`.

    Attributes:
        expected: the signed content hash.
        actual: the content hash of what was written.
    """

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"the installed model hashes to {_short(actual)}, not the signed {_short(expected)}"
        )
        self.expected = expected
        self.actual = actual


class HealthCheckFailed(UpdateRejected):
    """The model does not load, or its answers to the probe inputs are out of bounds."""


class SlotError(StateError):
    """The model slots in the state directory cannot be read or written as they are."""


class SlotsBusy(SlotError):
    """Another process (a second daemon on the same state directory) holds the slots."""


__all__ = [
    "ContentMismatch",
    "HealthCheckFailed",
    "ModelFileInvalid",
    "PatchRejected",
    "SlotError",
    "SlotsBusy",
    "UpdateRejected",
    "WrongBase",
]
