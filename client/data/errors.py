"""What can go wrong in the local data loop, one type per failure a caller can meet.

`InvalidExample` is the submitting app's fault (the serving layer answers INVALID_ARGUMENT);
`StoreError` is the example database's (corrupt, foreign, newer schema, unwritable), and as a
kind of `StateError` the CLI already maps it to an exit code. Caller misuse (a closed store, an
unknown kind) is a plain `RuntimeError`/`ValueError`.
"""

from __future__ import annotations

from fedota.client.errors import ClientError, StateError


class InvalidExample(ClientError):
    """An example breaks a rule (shape, type or size limit); the message states rule and value.

    Attributes:
        field: the offending field: "label", "text", "features", "source" or "example".
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class StoreError(StateError):
    """The example store's file cannot be used: not SQLite, another program's, corrupt, or
    written by a newer version; or SQLite failed while reading or writing it."""


__all__ = ["InvalidExample", "StoreError"]
