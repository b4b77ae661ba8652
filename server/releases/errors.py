"""What can go wrong with the coordinator's TUF repository and its signing keys.

Two families: the repository (`TufRepositoryError`: its stored state, a concurrent publisher, a
bad target) and the keys at rest (`SigningKeyError`: the coordinator secret, a sealed key). Each
message states the rule and the values involved. Caller misuse (a naive datetime, an unknown
role name) is a plain `ValueError`.
"""

from __future__ import annotations


class TufRepositoryError(Exception):
    """Base of the repository's errors."""


class RepositoryNotInitialized(TufRepositoryError):
    """No TUF metadata has been published yet: initialise the repository first."""


class RepositoryAlreadyInitialized(TufRepositoryError):
    """Initialising a repository that already has a root."""


class RepositoryCorrupt(TufRepositoryError):
    """The stored metadata or keys do not form a valid repository (a file that does not verify,
    versions that do not chain, a signing key the root does not list)."""


class ConcurrentPublish(TufRepositoryError):
    """Another publisher stored the same role version first; reload the state and try again."""

    def __init__(self, message: str, *, role: str = "", version: int = 0) -> None:
        super().__init__(message)
        self.role = role
        self.version = version


class InvalidTarget(TufRepositoryError, ValueError):
    """A target to sign breaks a rule (its path, length, hash or fedota fields)."""


class UnknownTarget(TufRepositoryError, KeyError):
    """Removing a target path that the current targets metadata does not list."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no signed target {path!r}")
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class KeyMismatch(TufRepositoryError):
    """A signer is not the key the root lists for its role (or a new key equals the old one)."""


class SigningKeyError(Exception):
    """Base of the errors about signing keys at rest."""


class CoordinatorSecretError(SigningKeyError):
    """The coordinator secret file is missing, readable by others, or not 32 bytes."""


class WrongCoordinatorSecret(SigningKeyError):
    """A sealed key was encrypted under another coordinator secret than the one loaded."""

    def __init__(self, message: str, *, keyid: str) -> None:
        super().__init__(message)
        self.keyid = keyid


class SealedKeyTampered(SigningKeyError):
    """A sealed key does not decrypt or does not match its public key: it was changed at rest."""

    def __init__(self, message: str, *, keyid: str) -> None:
        super().__init__(message)
        self.keyid = keyid


__all__ = [
    "ConcurrentPublish",
    "CoordinatorSecretError",
    "InvalidTarget",
    "KeyMismatch",
    "RepositoryAlreadyInitialized",
    "RepositoryCorrupt",
    "RepositoryNotInitialized",
    "SealedKeyTampered",
    "SigningKeyError",
    "TufRepositoryError",
    "UnknownTarget",
    "WrongCoordinatorSecret",
]
