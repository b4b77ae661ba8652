"""Targets to sign: a fedota artifact or patch with the exact length and SHA-256 of its bytes.

The SHA-256 is also the file's key in the blob store, so the served name under consistent
snapshots, `<dir>/<sha256>.<basename>`, leads straight to the blob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuf.api.metadata import TargetFile

from fedota.server.releases.errors import InvalidTarget
from fedota.update_targets import (
    ArtifactTarget,
    FedotaTarget,
    PatchTarget,
    TargetInfoError,
    parse_target,
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SERVED_NAME = re.compile(r"(?P<sha256>[0-9a-f]{64})\.(?P<name>[^/]+)")
# A signed length is a promise devices hold the server to; a petabyte is not one we make.
MAX_TARGET_LENGTH = 2**50


@dataclass(frozen=True)
class TargetSpec:
    """One target file as the targets role signs it.

    Raises (on construction):
        InvalidTarget: a length outside 0..2**50 or a SHA-256 that is not 64 lower-case hex digits.
    """

    info: FedotaTarget
    length: int
    sha256: str

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise InvalidTarget(f"{self.path}: length must be an integer, got {self.length!r}")
        if not 0 <= self.length <= MAX_TARGET_LENGTH:
            raise InvalidTarget(
                f"{self.path}: length must be in 0..{MAX_TARGET_LENGTH}, got {self.length}"
            )
        if not isinstance(self.sha256, str) or _SHA256.fullmatch(self.sha256) is None:
            raise InvalidTarget(
                f"{self.path}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}"
            )

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def served_path(self) -> str:
        """The file name under consistent snapshots: `<dir>/<sha256>.<basename>`."""
        return served_path(self.path, self.sha256)

    def target_file(self) -> TargetFile:
        """A new TargetFile carrying the length, hash and `custom` fields."""
        return TargetFile(
            self.length, {"sha256": self.sha256}, self.path, {"custom": self.info.custom()}
        )

    @classmethod
    def from_target_file(cls, target: TargetFile) -> TargetSpec:
        """Read back a signed TargetFile.

        Raises:
            InvalidTarget: it has no sha256, or its fedota fields break the contract.
        """
        sha256 = target.hashes.get("sha256")
        if sha256 is None:
            raise InvalidTarget(f"{target.path}: signed without a sha256 hash")
        try:
            info = parse_target(target.path, target.custom)
        except TargetInfoError as e:
            raise InvalidTarget(str(e)) from None
        return cls(info, target.length, sha256)


def artifact_target(
    family: str, version: int, variant: str, content_sha256: str, *, length: int, sha256: str
) -> TargetSpec:
    """The target of a full artifact (`artifacts/<family>/<version>/<variant>.safetensors`).

    Raises:
        InvalidTarget: a field breaks the contract of `fedota.update_targets`.
    """
    try:
        info = ArtifactTarget(family, version, variant, content_sha256)
    except TargetInfoError as e:
        raise InvalidTarget(str(e)) from None
    return TargetSpec(info, length, sha256)


def patch_target(
    base_content_sha256: str, target: ArtifactTarget, *, length: int, sha256: str
) -> TargetSpec:
    """The target of a patch from `base_content_sha256` to the artifact `target`.

    Raises:
        InvalidTarget: a field breaks the contract (e.g. base equal to the target's content).
    """
    try:
        info = PatchTarget(
            family=target.family,
            variant=target.variant,
            base_content_sha256=base_content_sha256,
            target_content_sha256=target.content_sha256,
            target_path=target.path,
        )
    except TargetInfoError as e:
        raise InvalidTarget(str(e)) from None
    return TargetSpec(info, length, sha256)


def served_path(path: str, sha256: str) -> str:
    """`<dir>/<sha256>.<basename>` for a target path (TUF consistent snapshots)."""
    directory, sep, name = path.rpartition("/")
    return f"{directory}{sep}{sha256}.{name}"


def parse_served_path(served: str) -> tuple[str, str]:
    """Split a served target name into (target path, sha256): the inverse of `served_path`.

    Raises:
        InvalidTarget: the last segment is not `<sha256>.<name>`.
    """
    directory, sep, name = served.rpartition("/")
    match = _SERVED_NAME.fullmatch(name)
    if match is None:
        raise InvalidTarget(f"{served!r} is not a served target name <dir>/<sha256>.<name>")
    return f"{directory}{sep}{match['name']}", match["sha256"]


__all__ = [
    "MAX_TARGET_LENGTH",
    "TargetSpec",
    "artifact_target",
    "parse_served_path",
    "patch_target",
    "served_path",
]
